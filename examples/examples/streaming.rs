//! Streaming: a flow answers a question from the offline library and each
//! token of the answer is printed as the model streams it (the node `emit`s
//! each one), with each node's start and end, from the flow's event stream.
//! Offline, the script answers word by word; with `MINLLM_LLM_URL` set, a real
//! model streams its tokens (server-sent events).
//!
//! `cargo run -p minllm-examples --example streaming -- "how do bees find flowers?"`

use std::io::Write as _;

use minllm::events::{EventKind, emit};
use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
use minllm_examples::client::{Reply, Request};
use minllm_examples::llm;
use minllm_examples::model::Model;

/// Finds the passage that shares most words with the question.
struct Retrieve;

impl Node for Retrieve {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("question")?)
    }
    fn exec(&self, question: &String, _: &ExecContext) -> NodeResult<String> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
        let asked: Vec<String> = llm::words(question).filter(|w| w.len() > 3).collect();
        let mut best = (0, String::new());
        for entry in std::fs::read_dir(dir)? {
            for passage in std::fs::read_to_string(entry?.path())?.split("\n\n") {
                let score = llm::words(passage).filter(|w| asked.contains(w)).count();
                if score > best.0 {
                    best = (score, passage.to_owned());
                }
            }
        }
        Ok(best.1)
    }
    fn post(&self, store: &mut SharedStore, _: String, passage: String) -> NodeResult<()> {
        store.set("passage", passage);
        Ok(())
    }
}

/// Answers from the passage, token by token as the model streams them.
struct Answer {
    model: Model,
}

impl Node for Answer {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("passage")?)
    }
    fn exec(&self, passage: &String, _: &ExecContext) -> NodeResult<String> {
        let request = Request::prompt(format!("In one sentence, what does this say?\n\n{passage}"));
        Ok(self.model.stream(&request, |token| emit(token))?.content)
    }
    fn post(&self, store: &mut SharedStore, _: String, answer: String) -> NodeResult<()> {
        store.set("answer", answer);
        Ok(())
    }
}

/// The offline model: the passage's sentence that carries most of its keywords.
fn script(request: &Request) -> Reply {
    Reply::text(llm::summarize(request.last_user().split_once("\n\n").map_or("", |(_, p)| p)))
}

/// The flow, and a store that asks `question`.
fn ask(question: &str, model: Model) -> (Flow, SharedStore) {
    let mut flow = Flow::new("ask");
    let retrieve = flow.add("retrieve", Retrieve);
    let answer = flow.add("answer", Answer { model });
    flow.edge(retrieve >> answer);
    let store = SharedStore::new();
    store.set("question", question.to_owned());
    (flow, store)
}

fn main() -> Result<(), minllm::BoxError> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do bees find the richest flowers?".into());
    let (flow, mut store) = ask(&question, Model::from_env(script)?);
    println!("Q: {question}");
    flow.stream(&mut store, |events| {
        let mut mid_line = false;
        for event in events {
            match event.kind {
                EventKind::NodeStarted => println!("[{} started]", event.node),
                EventKind::Custom(token) => {
                    print!("{}", token.as_str().unwrap_or_default());
                    let _ = std::io::stdout().flush();
                    mid_line = true;
                }
                EventKind::NodeFinished { elapsed, .. } => {
                    if std::mem::take(&mut mid_line) {
                        println!();
                    }
                    println!("[{} finished in {elapsed:.0?}]", event.node);
                }
                _ => {}
            }
        }
    })?;
    let answer: String = store.try_get("answer").unwrap_or_default();
    println!("A: {answer}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_streams_token_by_token_between_its_node_events() {
        let (flow, mut store) = ask("How do bees find the richest flowers?", Model::scripted(script));
        let mut seen = Vec::new();
        flow.stream(&mut store, |events| {
            seen.extend(events.map(|e| match e.kind {
                EventKind::Custom(token) => format!("token {}", token.as_str().unwrap_or_default()),
                other => format!("{} {}", other.name(), e.node),
            }))
        })
        .unwrap();
        let answer: String = store.try_get("answer").unwrap();
        let tokens: Vec<&String> = seen.iter().filter(|l| l.starts_with("token ")).collect();
        assert!(tokens.len() > 5, "{seen:?}");
        let joined: String = tokens.iter().map(|t| &t["token ".len()..]).collect();
        assert_eq!(joined, answer);
        assert_eq!(seen[..3], ["node_started retrieve", "node_finished retrieve", "node_started answer"]);
        assert_eq!(seen.last().map(String::as_str), Some("node_finished answer"));
    }
}
