//! The model the examples talk to: a real one when the environment names an
//! API (see [`Config`](crate::client::Config)), else an offline script that
//! answers deterministically, so that every example runs with no key and no
//! network, in tests too.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;
use tracing::field::Empty;

use crate::client::{Client, ClientError, Reply, Request};
use crate::embed;

/// How an offline script answers a request.
pub type Script = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A chat model, real or scripted.
#[derive(Clone)]
pub enum Model {
    /// An OpenAI-compatible API.
    Remote(Client),
    /// An offline script, named for the spans and logs.
    Scripted(&'static str, Script),
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({})", self.name())
    }
}

/// How long a scripted answer takes: enough to behave like a remote call.
pub const SCRIPTED_LATENCY: Duration = Duration::from_millis(5);

impl Model {
    /// The API the environment names, or `script` when it names none.
    pub fn from_env(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Result<Model, ClientError> {
        Ok(match Client::from_env()? {
            Some(client) => Model::Remote(client),
            None => Model::scripted(script),
        })
    }

    /// The offline model that answers with `script`.
    pub fn scripted(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Model {
        Model::Scripted("offline-script", Arc::new(script))
    }

    /// The model's name (for spans and logs).
    pub fn name(&self) -> &str {
        match self {
            Model::Remote(client) => &client.config().model,
            Model::Scripted(name, _) => name,
        }
    }

    /// Whether the answers come from an offline script.
    pub fn is_scripted(&self) -> bool {
        matches!(self, Model::Scripted(..))
    }

    /// The answer to `request` (blocking: for a sync node's `exec`).
    pub fn chat(&self, request: &Request) -> Result<Reply, ClientError> {
        let span = self.span("chat");
        let reply = span.in_scope(|| match self {
            Model::Remote(client) => client.chat_blocking(request),
            Model::Scripted(name, script) => {
                std::thread::sleep(SCRIPTED_LATENCY);
                Ok(scripted(name, script, request))
            }
        });
        record(&span, reply)
    }

    /// The answer to `request`, for an async node.
    pub async fn chat_async(&self, request: &Request) -> Result<Reply, ClientError> {
        let span = self.span("chat");
        let reply = async {
            match self {
                Model::Remote(client) => client.chat(request).await,
                Model::Scripted(name, script) => {
                    tokio::time::sleep(SCRIPTED_LATENCY).await;
                    Ok(scripted(name, script, request))
                }
            }
        }
        .instrument(span.clone())
        .await;
        record(&span, reply)
    }

    /// The answer to `request`, each piece of text handed to `on_token` as it
    /// comes (a script's answer comes word by word).
    pub fn stream(&self, request: &Request, mut on_token: impl FnMut(&str)) -> Result<Reply, ClientError> {
        let span = self.span("chat");
        let reply = span.in_scope(|| match self {
            Model::Remote(client) => client.chat_stream_blocking(request, on_token),
            Model::Scripted(name, script) => {
                let reply = scripted(name, script, request);
                for word in reply.content.split_inclusive(' ') {
                    std::thread::sleep(SCRIPTED_LATENCY);
                    on_token(word);
                }
                Ok(reply)
            }
        });
        record(&span, reply)
    }

    /// The span of one call, named and with attributes as OpenTelemetry's
    /// semantic conventions for generative AI say (`chat gpt-4o-mini`,
    /// `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...).
    fn span(&self, operation: &str) -> tracing::Span {
        let provider = if self.is_scripted() { "offline" } else { "openai" };
        tracing::info_span!(
            target: "minllm_examples::model",
            "gen_ai",
            otel.name = %format!("{operation} {}", self.name()),
            otel.kind = "client",
            gen_ai.operation.name = operation,
            gen_ai.provider.name = provider,
            gen_ai.request.model = self.name(),
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
        )
    }

    /// One embedding per text: the API's embedding model, or offline the
    /// hashed word and word-pair counts of [`embed::hashed`], which rank
    /// passages by the words they share with a question.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ClientError> {
        match self {
            Model::Remote(client) => client.embed_blocking(texts),
            Model::Scripted(..) => Ok(texts.iter().map(|t| embed::hashed(t)).collect()),
        }
    }
}

/// A script's reply, with the model's name and rough token counts.
fn scripted(name: &str, script: &Script, request: &Request) -> Reply {
    let mut reply = script(request);
    if reply.model.is_empty() {
        name.clone_into(&mut reply.model);
    }
    if reply.usage.prompt_tokens == 0 {
        let prompt: usize = request.messages.iter().map(|m| m.text().split_whitespace().count()).sum();
        reply.usage.prompt_tokens = prompt as u64;
        reply.usage.completion_tokens = reply.content.split_whitespace().count() as u64;
    }
    reply
}

/// Records on the call's span what the answer says of itself.
fn record(span: &tracing::Span, reply: Result<Reply, ClientError>) -> Result<Reply, ClientError> {
    if let Ok(reply) = &reply {
        span.record("gen_ai.response.model", reply.model.as_str());
        span.record("gen_ai.usage.input_tokens", reply.usage.prompt_tokens);
        span.record("gen_ai.usage.output_tokens", reply.usage.completion_tokens);
    }
    reply
}
