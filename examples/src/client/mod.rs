//! A client for OpenAI-compatible APIs (OpenAI, Ollama, llama.cpp, vLLM,
//! LM Studio, ...): chat with tools and JSON output, streamed tokens, and
//! embeddings, over http or https (reqwest with rustls).
//!
//! It is example code to copy into an app, not part of minllm: a node calls
//! it in `exec` like any other function. What it guards against: a server
//! that answers too much (response bodies are bounded; a declared size over
//! the bound is refused before anything is read), too slowly or not at all
//! (connect, idle and overall deadlines), settings that would make a bad
//! request (checked up front: no CR/LF in the URL, model or key), and error
//! bodies of any size (an error quotes a bounded excerpt of what the server
//! answered).
//!
//! Each call comes async (`chat`, `chat_stream`, `embed`) and blocking
//! (`chat_blocking`, ...: for the `exec` of a sync node; they run the call on
//! a small runtime of their own, so they work inside and outside tokio).

mod config;
mod wire;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

pub use config::Config;
pub use wire::{Format, FunctionCall, Message, Reply, Request, Role, Tool, ToolCall, Usage};

/// How much of an answer an error quotes.
const EXCERPT: usize = 300;

/// What went wrong with a call, with what the server answered when it
/// answered (a bounded excerpt).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The settings cannot make a good request; says which and why.
    Config(String),
    /// No connection to the endpoint, or it broke off.
    Connect {
        /// The endpoint.
        url: String,
        /// Why, as the transport says.
        reason: String,
    },
    /// No (whole) answer from the endpoint in time.
    Timeout {
        /// The endpoint.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The server answered with an error status.
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status (200 for an error sent inside a stream).
        status: u16,
        /// What it said (its `error.message`, or the body), bounded.
        excerpt: String,
    },
    /// The answer is larger than the client reads.
    TooLarge {
        /// The endpoint.
        url: String,
        /// The bound, in bytes.
        limit: usize,
    },
    /// The answer is not what the API answers.
    Malformed {
        /// The endpoint.
        url: String,
        /// What was wrong with it.
        what: String,
        /// What it was, bounded.
        excerpt: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Config(why) => write!(f, "the model client is misconfigured: {why}"),
            ClientError::Connect { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            ClientError::Timeout { url, after } => write!(f, "{url} did not answer within {after:?}"),
            ClientError::Status { url, status, excerpt } => write!(f, "{url} answered {status}: {excerpt}"),
            ClientError::TooLarge { url, limit } => {
                write!(f, "{url} answered more than {limit} bytes; the client stopped reading")
            }
            ClientError::Malformed { url, what, excerpt } => write!(f, "{url} answered {what}: {excerpt}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client for one API and model.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    config: Config,
}

impl Client {
    /// A client with `config` (checked again here).
    pub fn new(config: Config) -> Result<Client, ClientError> {
        config.check()?;
        // reqwest is built without a TLS crypto provider of its own: ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.idle_timeout)
            .user_agent(concat!("minllm-examples/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { http, config })
    }

    /// The client the environment asks for ([`Config::from_env`]), or `None`.
    pub fn from_env() -> Result<Option<Client>, ClientError> {
        Config::from_env()?.map(Client::new).transpose()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model's answer to `request`.
    pub async fn chat(&self, request: &Request) -> Result<Reply, ClientError> {
        let url = self.config.url("chat/completions");
        let body = self.call(&url, &request.body(&self.config.model, false), self.config.timeout).await?;
        let text = self.read(&url, body).await?;
        let value = parse(&url, &text)?;
        Reply::from_response(&value).map_err(|what| malformed(&url, what, &text))
    }

    /// The model's answer to `request`, streamed: `on_token` gets each piece of
    /// text as it comes; the whole reply (with its tool calls) is returned.
    pub async fn chat_stream(&self, request: &Request, mut on_token: impl FnMut(&str)) -> Result<Reply, ClientError> {
        let url = self.config.url("chat/completions");
        let response = self.call(&url, &request.body(&self.config.model, true), self.config.timeout * 10).await?;
        // Counted as it arrives: the stream stops at the size limit.
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, limit) = (std::sync::Arc::clone(&read), self.config.max_response_bytes);
        let bytes = response.bytes_stream().take_while(move |chunk| {
            let size = chunk.as_ref().map_or(0, |c| c.len());
            let total = counted.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size;
            std::future::ready(total <= limit)
        });
        let mut events = bytes.eventsource();
        let mut assembly = wire::Assembly::default();
        let mut done = false;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => {
                    self.transport(&url, &e, self.config.timeout * 10)
                }
                other => malformed(&url, "a broken event stream", &other.to_string()),
            })?;
            let data = event.data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk = parse(&url, data)?;
            if let Some(error) = chunk.get("error") {
                return Err(ClientError::Status { url, status: 200, excerpt: excerpt(&error.to_string()) });
            }
            let text = assembly.add(&chunk).map_err(|what| malformed(&url, what, data))?;
            if !text.is_empty() {
                on_token(&text);
            }
        }
        if read.load(std::sync::atomic::Ordering::Relaxed) > limit {
            return Err(ClientError::TooLarge { url, limit });
        }
        if !done {
            // The stream ended early: the server hung up.
            let reply = assembly.finish();
            if reply.content.len() + reply.tool_calls.len() > 0 && reply.finish_reason.is_some() {
                return Ok(reply);
            }
            return Err(ClientError::Malformed {
                url,
                what: "a stream that ended before [DONE] (or passed the size limit)".to_owned(),
                excerpt: excerpt(&reply.content),
            });
        }
        Ok(assembly.finish())
    }

    /// One embedding per text, in order, from the embedding model.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ClientError> {
        let url = self.config.url("embeddings");
        let body = json!({ "model": self.config.embed_model, "input": texts });
        let response = self.call(&url, &body, self.config.timeout).await?;
        let text = self.read(&url, response).await?;
        let value = parse(&url, &text)?;
        let data = value.get("data").and_then(Value::as_array).ok_or_else(|| malformed(&url, "no data", &text))?;
        let mut out = vec![Vec::new(); texts.len()];
        for (n, item) in data.iter().enumerate() {
            let index = item.get("index").and_then(Value::as_u64).map_or(n, |i| i as usize);
            let vector: Vec<f32> = item
                .get("embedding")
                .and_then(|e| serde_json::from_value(e.clone()).ok())
                .ok_or_else(|| malformed(&url, "an item without an embedding", &text))?;
            *out.get_mut(index).ok_or_else(|| malformed(&url, "an embedding index out of range", &text))? = vector;
        }
        if out.iter().any(Vec::is_empty) {
            return Err(malformed(&url, "fewer embeddings than texts", &text));
        }
        Ok(out)
    }

    /// [`chat`](Self::chat) for a sync caller.
    pub fn chat_blocking(&self, request: &Request) -> Result<Reply, ClientError> {
        let (client, request) = (self.clone(), request.clone());
        blocking(async move { client.chat(&request).await })
    }

    /// [`chat_stream`](Self::chat_stream) for a sync caller: `on_token` runs
    /// on the calling thread.
    pub fn chat_stream_blocking(
        &self,
        request: &Request,
        mut on_token: impl FnMut(&str),
    ) -> Result<Reply, ClientError> {
        let (client, request) = (self.clone(), request.clone());
        let (tokens, received) = std::sync::mpsc::channel::<String>();
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        runtime().spawn(async move {
            let reply = client.chat_stream(&request, |t| drop(tokens.send(t.to_owned()))).await;
            let _ = done.send(reply);
        });
        for token in received {
            on_token(&token);
        }
        finished.recv().unwrap_or_else(|_| Err(ClientError::Config("the client's runtime stopped".to_owned())))
    }

    /// [`embed`](Self::embed) for a sync caller.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ClientError> {
        let (client, texts) = (self.clone(), texts.to_vec());
        blocking(async move { client.embed(&texts).await })
    }

    /// Posts `body` to `url`; the response, when its status is a success.
    async fn call(&self, url: &str, body: &Value, deadline: Duration) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.post(url).json(body).timeout(deadline);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.transport(url, &e, deadline))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // An error body is read only up to a bound, and quoted in part.
        let text = match self.read_capped(url, response, 64 << 10).await {
            Ok(text) => text,
            Err(ClientError::TooLarge { .. }) => "(an error body too large to read)".to_owned(),
            Err(e) => return Err(e),
        };
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        Err(ClientError::Status { url: url.to_owned(), status: status.as_u16(), excerpt: excerpt(&message) })
    }

    /// The body, up to the configured limit.
    async fn read(&self, url: &str, response: reqwest::Response) -> Result<String, ClientError> {
        self.read_capped(url, response, self.config.max_response_bytes).await
    }

    async fn read_capped(&self, url: &str, response: reqwest::Response, limit: usize) -> Result<String, ClientError> {
        let too_large = || ClientError::TooLarge { url: url.to_owned(), limit };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.transport(url, &e, self.config.timeout))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| malformed(url, "a body that is not UTF-8", ""))
    }

    /// A transport error as the client reports it.
    fn transport(&self, url: &str, error: &reqwest::Error, deadline: Duration) -> ClientError {
        if error.is_timeout() {
            let after = if error.is_connect() { self.config.connect_timeout } else { deadline };
            return ClientError::Timeout { url: url.to_owned(), after };
        }
        ClientError::Connect { url: url.to_owned(), reason: excerpt(&source_chain(error)) }
    }
}

/// An error and its causes, as one line.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

/// The JSON of a response body.
fn parse(url: &str, text: &str) -> Result<Value, ClientError> {
    serde_json::from_str(text).map_err(|_| malformed(url, "something that is not JSON", text))
}

fn malformed(url: &str, what: &str, text: &str) -> ClientError {
    ClientError::Malformed { url: url.to_owned(), what: what.to_owned(), excerpt: excerpt(text) }
}

/// At most [`EXCERPT`] characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    match flat.char_indices().nth(EXCERPT) {
        Some((end, _)) => format!("{}... ({} bytes in all)", &flat[..end], text.len()),
        None => flat.to_owned(),
    }
}

/// The runtime the blocking calls run on: two threads, made on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("llm-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the model client's runtime: {e}"))
    })
}

/// Runs `call` on the client's runtime and waits for it on this thread.
fn blocking<T: Send + 'static>(
    call: impl Future<Output = Result<T, ClientError>> + Send + 'static,
) -> Result<T, ClientError> {
    let (done, finished) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = done.send(call.await);
    });
    finished.recv().unwrap_or_else(|_| Err(ClientError::Config("the client's runtime stopped".to_owned())))
}
