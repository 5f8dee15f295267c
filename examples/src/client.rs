//! A small client for OpenAI-compatible chat servers (Ollama, llama.cpp, vLLM,
//! LM Studio, ...), so the examples can use a real model when one is at hand.
//! Plain HTTP only, with the standard library: point it at a local server, or
//! at a local TLS-terminating proxy for a hosted one.
//!
//! Set `MINLLM_LLM_URL` (e.g. `http://localhost:11434/v1`), optionally
//! `MINLLM_LLM_MODEL` (default `llama3.2`) and `MINLLM_LLM_KEY`. Without
//! `MINLLM_LLM_URL`, [`Client::from_env`] gives `None` and the examples use
//! their offline stand-in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use minllm::BoxError;

/// A chat-completions client for one server and model.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    port: u16,
    path: String,
    model: String,
    key: Option<String>,
}

impl Client {
    /// The client the environment asks for, if any (see the module docs).
    pub fn from_env() -> Result<Option<Client>, BoxError> {
        let Ok(url) = std::env::var("MINLLM_LLM_URL") else { return Ok(None) };
        let model = std::env::var("MINLLM_LLM_MODEL").unwrap_or_else(|_| "llama3.2".into());
        let mut client = Client::new(&url, &model)?;
        client.key = std::env::var("MINLLM_LLM_KEY").ok();
        Ok(Some(client))
    }

    /// A client for the server at `base_url` (`http://host[:port][/prefix]`).
    pub fn new(base_url: &str, model: &str) -> Result<Client, BoxError> {
        let rest = base_url.strip_prefix("http://").ok_or_else(|| {
            format!("MINLLM_LLM_URL must start with http:// (got {base_url}); for https, run a local proxy")
        })?;
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| format!("bad port in {base_url}"))?),
            None => (authority.to_owned(), 80),
        };
        let prefix = prefix.trim_end_matches('/');
        let path =
            if prefix.is_empty() { "/chat/completions".to_owned() } else { format!("/{prefix}/chat/completions") };
        Ok(Client { host, port, path, model: model.to_owned(), key: None })
    }

    /// The model's answer to one user message.
    pub fn complete(&self, prompt: &str) -> Result<String, BoxError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        })
        .to_string();
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        let auth = self.key.as_ref().map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        write!(
            stream,
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
            self.path,
            self.host,
            self.port,
            body.len()
        )?;
        let (status, response) = read_response(stream)?;
        if status != 200 {
            return Err(format!("the LLM server answered {status}: {}", String::from_utf8_lossy(&response)).into());
        }
        let reply: serde_json::Value = serde_json::from_slice(&response)?;
        reply["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no choices[0].message.content in the reply: {reply}").into())
    }
}

/// The status and body of an HTTP/1.1 response (`Content-Length`, chunked, or
/// until the connection closes).
fn read_response(stream: TcpStream) -> Result<(u16, Vec<u8>), BoxError> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 =
        line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("a malformed HTTP status line")?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok((status, body))
}
