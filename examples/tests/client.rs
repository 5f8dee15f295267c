//! The examples' LLM client against a fake OpenAI-compatible server on loopback.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use minllm_examples::client::Client;

/// Serves one request with `response`; returns the request body it got.
fn serve_once(response: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

#[test]
fn asks_for_a_chat_completion_and_reads_the_answer() {
    let reply = r#"{"choices":[{"message":{"role":"assistant","content":"forty-two"}}]}"#;
    let (url, server) = serve_once(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    ));
    let client = Client::new(&url, "test-model").unwrap();
    assert_eq!(client.complete("What is the answer?").unwrap(), "forty-two");
    let request: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["messages"][0]["content"], "What is the answer?");
}

#[test]
fn reads_chunked_replies_and_reports_errors() {
    let reply = r#"{"choices":[{"message":{"content":"chunked ok"}}]}"#;
    let (head, tail) = reply.split_at(10);
    let (url, server) = serve_once(format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    ));
    assert_eq!(Client::new(&url, "m").unwrap().complete("hi").unwrap(), "chunked ok");
    server.join().unwrap();

    let (url, server) = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno model!".into());
    let err = Client::new(&url, "m").unwrap().complete("hi").unwrap_err().to_string();
    assert_eq!(err, "the LLM server answered 404: no model!");
    server.join().unwrap();

    let err = Client::new("https://api.example.com/v1", "m").unwrap_err().to_string();
    assert!(err.contains("must start with http://"), "{err}");
}
