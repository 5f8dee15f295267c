//! Where the client goes and how long it waits: from the environment or set
//! by hand, checked before any request is made.

use std::time::Duration;

use super::ClientError;

/// The settings of a [`Client`](super::Client).
///
/// From the environment ([`Config::from_env`]):
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `MINLLM_LLM_URL` | base URL of an OpenAI-compatible API (`https://api.openai.com/v1`, `http://localhost:11434/v1`) | none: the examples run offline |
/// | `MINLLM_LLM_MODEL` | chat model | `gpt-4o-mini` |
/// | `MINLLM_EMBED_MODEL` | embedding model | `text-embedding-3-small` |
/// | `MINLLM_LLM_KEY` | API key, sent as `Authorization: Bearer` | none |
/// | `MINLLM_LLM_TIMEOUT_SECS` | deadline of a whole answer (a stream's: 10 times it) | 120 |
#[derive(Clone)]
pub struct Config {
    /// The base URL, without a trailing `/` (`.../v1`).
    pub base_url: String,
    /// The chat model.
    pub model: String,
    /// The embedding model.
    pub embed_model: String,
    /// The API key, if the server wants one.
    pub api_key: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a whole answer may take (a streamed one: ten times this).
    pub timeout: Duration,
    /// How long a stream may stay silent.
    pub idle_timeout: Duration,
    /// The largest response body read (a larger one is an error, and is not read).
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("embed_model", &self.embed_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A checked configuration for the API at `base_url` and chat model `model`,
    /// with the default deadlines and limits.
    pub fn new(base_url: &str, model: &str) -> Result<Config, ClientError> {
        let config = Config {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            embed_model: "text-embedding-3-small".to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_response_bytes: 8 << 20,
        };
        config.check()?;
        Ok(config)
    }

    /// The configuration the environment asks for (see the type's docs), or
    /// `None` when `MINLLM_LLM_URL` is not set: then the examples run offline.
    pub fn from_env() -> Result<Option<Config>, ClientError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(url) = var("MINLLM_LLM_URL") else { return Ok(None) };
        let model = var("MINLLM_LLM_MODEL").unwrap_or_else(|| "gpt-4o-mini".to_owned());
        let mut config = Config::new(&url, &model)?;
        if let Some(model) = var("MINLLM_EMBED_MODEL") {
            config.embed_model = model;
        }
        config.api_key = var("MINLLM_LLM_KEY");
        if let Some(secs) = var("MINLLM_LLM_TIMEOUT_SECS") {
            let secs: u64 = secs.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ClientError::Config(format!(
                    "MINLLM_LLM_TIMEOUT_SECS must be a whole number of seconds above 0, not {secs:?}"
                ))
            })?;
            config.timeout = Duration::from_secs(secs);
        }
        config.check()?;
        Ok(Some(config))
    }

    /// Refuses what would make a bad request: a URL that is not http(s) or has
    /// no host, and control characters (a CR/LF would add request headers) in
    /// the URL, the model names or the key.
    pub fn check(&self) -> Result<(), ClientError> {
        let bad = |what: &str, why: &str| Err(ClientError::Config(format!("{what} {why}")));
        for (what, value) in
            [("the base URL", &self.base_url), ("the model", &self.model), ("the embedding model", &self.embed_model)]
        {
            if value.chars().any(char::is_control) {
                return bad(what, &format!("contains a control character (CR, LF, ...): {value:?}"));
            }
        }
        if self.model.trim().is_empty() {
            return bad("the model", "is empty");
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || key.chars().any(|c| c.is_control() || c == ' '))
        {
            // The key itself is never shown.
            return bad(
                "the API key (MINLLM_LLM_KEY)",
                "is empty or contains spaces or control characters (CR, LF, ...)",
            );
        }
        let Some(rest) = self.base_url.strip_prefix("https://").or_else(|| self.base_url.strip_prefix("http://"))
        else {
            return bad("the base URL", &format!("must start with http:// or https://, not {:?}", self.base_url));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains('@') || host.contains(' ') {
            return bad("the base URL", &format!("has no valid host: {:?}", self.base_url));
        }
        if reqwest::Url::parse(&self.base_url).is_err() {
            return bad("the base URL", &format!("is not a URL: {:?}", self.base_url));
        }
        if self.max_response_bytes == 0 || self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("the limits", "must be above zero");
        }
        Ok(())
    }

    /// The URL of an endpoint (`chat/completions`, `embeddings`).
    pub(crate) fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base_url)
    }
}
