//! Tracing over OpenTelemetry: the run's spans (the flow, each node, each
//! model call) go to an OpenTelemetry tracer through `tracing-opentelemetry`.
//! The model calls carry the semantic conventions for generative AI: named
//! `chat <model>`, with `gen_ai.request.model`, `gen_ai.response.model`,
//! `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://localhost:4318` for a
//! local collector, Jaeger or Grafana), the spans are exported over OTLP
//! (HTTP); without it they are kept in memory and printed as a tree.
//!
//! `cargo run -p minllm-examples --example otel`

use minllm::{BoxError, flow, node};
use minllm_examples::client::{Reply, Request};
use minllm_examples::model::Model;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Default)]
struct Note {
    topic: String,
    draft: String,
    title: String,
}

struct Draft {
    model: Model,
}

#[node]
impl Draft {
    fn prep(&self, note: &Note) -> String {
        note.topic.clone()
    }
    fn exec(&self, topic: &str) -> Result<String, BoxError> {
        Ok(self.model.chat(&Request::prompt(format!("Write two sentences about {topic}.")))?.content)
    }
    fn post(&self, note: &mut Note, draft: String) {
        note.draft = draft;
    }
}

struct Title {
    model: Model,
}

#[node]
impl Title {
    fn prep(&self, note: &Note) -> String {
        note.draft.clone()
    }
    fn exec(&self, draft: &str) -> Result<String, BoxError> {
        Ok(self.model.chat(&Request::prompt(format!("A title of three words for: {draft}")))?.content)
    }
    fn post(&self, note: &mut Note, title: String) {
        note.title = title;
    }
}

flow! {
    struct Write: Note {
        node draft: Draft = _;
        node title: Title = _;
        start draft;
        draft >> title;
    }
}

fn script(request: &Request) -> Reply {
    let asked = request.last_user();
    if asked.starts_with("A title") {
        return Reply::text("Lights Over Water");
    }
    Reply::text("Lighthouses warn ships of rocks. Most of them now run on their own.")
}

/// Runs the flow with its spans going to `provider`.
fn write(provider: &SdkTracerProvider, model: Model) -> Result<Note, minllm::Error> {
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("minllm-examples"));
    let subscriber = tracing_subscriber::registry().with(layer);
    let flow = Write::new(Draft { model: model.clone() }, Title { model });
    let mut note = Note { topic: "lighthouses".into(), ..Note::default() };
    tracing::subscriber::with_default(subscriber, || flow.run(&mut note))?;
    Ok(note)
}

/// A span's attribute, as text.
fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn main() -> Result<(), BoxError> {
    let model = Model::from_env(script)?;
    if std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok() {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
        let note = write(&provider, model)?;
        provider.shutdown()?;
        println!("{}: exported the spans over OTLP", note.title);
        return Ok(());
    }
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let note = write(&provider, model)?;
    provider.force_flush()?;
    println!("{}\n", note.title);
    let spans = exporter.get_finished_spans()?;
    let depth = |span: &SpanData| {
        let mut depth = 0;
        let mut parent = span.parent_span_id;
        while let Some(p) = spans.iter().find(|s| s.span_context.span_id() == parent) {
            depth += 1;
            parent = p.parent_span_id;
        }
        depth
    };
    let mut ordered: Vec<&SpanData> = spans.iter().collect();
    ordered.sort_by_key(|s| s.start_time);
    for span in ordered {
        let mut line = format!("{}{}", "  ".repeat(depth(span)), span.name);
        for key in [
            "flow",
            "node",
            "action",
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
        ] {
            if let Some(value) = attribute(span, key) {
                line.push_str(&format!(" {key}={value}"));
            }
        }
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_its_nodes_and_each_model_call_are_spans_with_gen_ai_attributes() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let note = write(&provider, Model::scripted(script)).unwrap();
        assert_eq!(note.title, "Lights Over Water");
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
        let (flows, nodes, calls) = (named("flow"), named("node"), named("chat offline-script"));
        assert_eq!(
            (flows.len(), nodes.len(), calls.len()),
            (1, 2, 2),
            "{:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        assert_eq!(attribute(flows[0], "flow").as_deref(), Some("Write"));
        let node_names: Vec<String> = nodes.iter().filter_map(|s| attribute(s, "node")).collect();
        assert_eq!(node_names, ["draft", "title"]);
        for (call, node) in calls.iter().zip(&nodes) {
            // Each call sits in its node, each node in the flow.
            assert_eq!(call.parent_span_id, node.span_context.span_id());
            assert_eq!(node.parent_span_id, flows[0].span_context.span_id());
            assert_eq!(call.span_kind, opentelemetry::trace::SpanKind::Client);
            assert_eq!(attribute(call, "gen_ai.operation.name").as_deref(), Some("chat"));
            assert_eq!(attribute(call, "gen_ai.request.model").as_deref(), Some("offline-script"));
            assert_eq!(attribute(call, "gen_ai.response.model").as_deref(), Some("offline-script"));
            let input: u64 = attribute(call, "gen_ai.usage.input_tokens").unwrap().parse().unwrap();
            let output: u64 = attribute(call, "gen_ai.usage.output_tokens").unwrap().parse().unwrap();
            assert!(input > 0 && output > 0, "{input} {output}");
        }
        assert_eq!(attribute(calls[1], "gen_ai.usage.output_tokens").as_deref(), Some("3"));
    }
}
