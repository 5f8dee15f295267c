//! The examples' model client against fake OpenAI-compatible servers on
//! loopback: answers, tool calls, JSON output, streams, embeddings, and
//! servers that answer too much, too slowly, not at all, or nonsense.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use minllm_examples::client::{Client, ClientError, Config, Format, Message, Request, Tool};
use serde_json::{Value, json};

/// What a fake server does with one connection, after reading the request.
type Answer = Box<dyn FnOnce(&mut TcpStream) + Send>;

/// The request a fake server got: its head (request line and headers) and body.
struct Got {
    head: String,
    body: Value,
}

/// A server on loopback that answers one connection per `answers` entry, in
/// order; joined, it returns the requests it got.
fn serve(answers: Vec<Answer>) -> (String, JoinHandle<Vec<Got>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            got.push(Got { head, body: serde_json::from_slice(&body).unwrap_or(Value::Null) });
            answer(&mut stream);
        }
        got
    });
    (url, handle)
}

/// An answer with `status` and a JSON body.
fn json_answer(status: u16, body: Value) -> Answer {
    Box::new(move |stream| {
        let text = body.to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    })
}

/// A streamed answer: one SSE event per `data` entry.
fn sse_answer(data: Vec<String>) -> Answer {
    Box::new(move |stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
        for d in data {
            let _ = write!(stream, "data: {d}\n\n");
            let _ = stream.flush();
        }
    })
}

fn client(url: &str, tune: impl FnOnce(&mut Config)) -> Client {
    let mut config = Config::new(url, "test-model").unwrap();
    config.connect_timeout = Duration::from_secs(2);
    config.timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    tune(&mut config);
    Client::new(config).unwrap()
}

fn completion(message: Value) -> Value {
    json!({
        "model": "test-model-2026",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    })
}

#[test]
fn a_chat_sends_the_conversation_and_reads_the_answer_and_its_usage() {
    let (url, server) = serve(vec![json_answer(200, completion(json!({"role": "assistant", "content": "forty-two"})))]);
    let client = client(&url, |c| c.api_key = Some("sk-test".into()));
    let request = Request::new(vec![Message::system("Be brief."), Message::user("What is the answer?")]);
    let reply = client.chat_blocking(&request).unwrap();
    assert_eq!(reply.content, "forty-two");
    assert_eq!(reply.model, "test-model-2026");
    assert_eq!((reply.usage.prompt_tokens, reply.usage.completion_tokens), (12, 3));
    let got = server.join().unwrap();
    assert!(got[0].head.starts_with("POST /v1/chat/completions HTTP/1.1"), "{}", got[0].head);
    assert!(got[0].head.to_ascii_lowercase().contains("authorization: bearer sk-test"), "{}", got[0].head);
    assert_eq!(got[0].body["model"], "test-model");
    assert_eq!(got[0].body["messages"][1], json!({"role": "user", "content": "What is the answer?"}));
}

#[test]
fn tools_and_json_output_go_into_the_request_and_tool_calls_come_back() {
    let call = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\":\"6*7\"}"}}
    ]});
    let (url, server) = serve(vec![
        json_answer(200, completion(call)),
        json_answer(200, completion(json!({"content": "{\"ok\":true}"}))),
    ]);
    let client = client(&url, |_| {});
    let calculator = Tool::new(
        "calculator",
        "Evaluates arithmetic",
        json!({"type": "object", "properties": {"expression": {"type": "string"}}}),
    );
    let reply = client.chat_blocking(&Request::prompt("6 times 7?").tools(vec![calculator])).unwrap();
    assert_eq!(reply.tool_calls.len(), 1);
    assert_eq!(reply.tool_calls[0].function.name, "calculator");
    assert_eq!(reply.tool_calls[0].args(), json!({"expression": "6*7"}));
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    let reply = client
        .chat_blocking(
            &Request::prompt("ok?").format(Format::Schema { name: "verdict".into(), schema: schema.clone() }),
        )
        .unwrap();
    assert_eq!(reply.content, "{\"ok\":true}");
    let got = server.join().unwrap();
    assert_eq!(got[0].body["tools"][0]["function"]["name"], "calculator");
    assert_eq!(got[0].body["tools"][0]["type"], "function");
    assert_eq!(got[1].body["response_format"]["type"], "json_schema");
    assert_eq!(got[1].body["response_format"]["json_schema"]["schema"], schema);
}

#[test]
fn a_stream_hands_over_each_token_and_assembles_tool_calls() {
    let chunk = |delta: Value, finish: Value| {
        json!({"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
    };
    let (url, server) = serve(vec![
        sse_answer(vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).to_string(),
            "[DONE]".into(),
        ]),
        sse_answer(vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "search", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"bees\"}"}}]}), json!("tool_calls")),
            "[DONE]".into(),
        ]),
    ]);
    let client = client(&url, |_| {});
    let mut tokens = Vec::new();
    let reply = client.chat_stream_blocking(&Request::prompt("hi"), |t| tokens.push(t.to_owned())).unwrap();
    assert_eq!(tokens, ["Hel", "lo"]);
    assert_eq!(reply.content, "Hello");
    assert_eq!((reply.usage.prompt_tokens, reply.usage.completion_tokens), (5, 2));
    let reply = client.chat_stream_blocking(&Request::prompt("find"), |_| {}).unwrap();
    assert_eq!(reply.tool_calls[0].id, "call_9");
    assert_eq!(reply.tool_calls[0].args(), json!({"q": "bees"}));
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    let got = server.join().unwrap();
    assert_eq!(got[0].body["stream"], true);
}

#[test]
fn embeddings_come_back_in_the_order_of_the_texts() {
    let body = json!({"data": [
        {"index": 1, "embedding": [0.0, 1.0]},
        {"index": 0, "embedding": [1.0, 0.0]},
    ]});
    let (url, server) = serve(vec![json_answer(200, body)]);
    let vectors = client(&url, |c| c.embed_model = "embedder".into())
        .embed_blocking(&["first".to_owned(), "second".to_owned()])
        .unwrap();
    assert_eq!(vectors, [vec![1.0, 0.0], vec![0.0, 1.0]]);
    let got = server.join().unwrap();
    assert!(got[0].head.starts_with("POST /v1/embeddings"));
    assert_eq!(got[0].body, json!({"model": "embedder", "input": ["first", "second"]}));
}

#[test]
fn an_error_status_says_what_the_server_answered_in_a_bounded_excerpt() {
    let huge = "x".repeat(5 << 20);
    let (url, server) = serve(vec![
        json_answer(401, json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})),
        json_answer(500, json!({"detail": huge})),
    ]);
    let client = client(&url, |_| {});
    let err = client.chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert_eq!(err.to_string(), format!("{url}/chat/completions answered 401: Incorrect API key provided"));
    let err = client.chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert!(matches!(err, ClientError::Status { status: 500, .. }), "{err:?}");
    // A 5 MB error body is not a 5 MB message.
    assert!(err.to_string().len() < 500, "{} bytes", err.to_string().len());
    server.join().unwrap();
}

#[test]
fn a_declared_size_over_the_limit_is_refused_before_anything_is_read() {
    let answer: Answer = Box::new(|stream| {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{{"
        );
        std::thread::sleep(Duration::from_millis(500));
    });
    let (url, server) = serve(vec![answer]);
    let started = Instant::now();
    let err = client(&url, |_| {}).chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { limit, .. } if limit == 8 << 20), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.join().unwrap();
}

#[test]
fn a_body_larger_than_the_limit_stops_the_reading() {
    let answer: Answer = Box::new(|stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
        let block = vec![b' '; 64 << 10];
        for _ in 0..64 {
            if stream.write_all(&block).is_err() {
                break;
            }
        }
    });
    let (url, server) = serve(vec![answer]);
    let err = client(&url, |c| c.max_response_bytes = 100_000).chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { limit: 100_000, .. }), "{err:?}");
    server.join().unwrap();
}

/// A server that sends its head, then a byte every 100 ms, until the client hangs up.
fn trickle() -> Answer {
    Box::new(|stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if stream.write_all(b" ").and_then(|()| stream.flush()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn a_trickling_or_silent_server_meets_the_deadline() {
    let silent: Answer = Box::new(|_| std::thread::sleep(Duration::from_secs(3)));
    let (url, server) = serve(vec![trickle(), silent]);
    let client = client(&url, |c| {
        c.timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_millis(500);
    });
    for _ in 0..2 {
        let started = Instant::now();
        let err = client.chat_blocking(&Request::prompt("hi")).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(err.to_string().contains("did not answer within"), "{err}");
    }
    server.join().unwrap();
}

#[test]
fn nonsense_and_streams_cut_short_are_malformed_answers() {
    let cut: Answer = Box::new(|stream| {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {{\"choices\":[{{\"delta\":{{\"content\":\"Hal\"}}}}]}}\n\n"
        );
    });
    let (url, server) = serve(vec![
        Box::new(|stream: &mut TcpStream| {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!");
        }),
        json_answer(200, json!({"choices": []})),
        cut,
    ]);
    let client = client(&url, |_| {});
    let err = client.chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert_eq!(err.to_string(), format!("{url}/chat/completions answered something that is not JSON: not json!"));
    let err = client.chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert!(err.to_string().contains("answered no choices[0]"), "{err}");
    let err = client.chat_stream_blocking(&Request::prompt("hi"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("a stream that ended before [DONE]"), "{err}");
    server.join().unwrap();
}

#[test]
fn settings_that_would_make_a_bad_request_are_refused_up_front() {
    for (url, model, expected) in [
        ("http://127.0.0.1:1/v1\r\nX-Injected: 1", "m", "the base URL contains a control character"),
        ("ftp://example.com/v1", "m", "must start with http:// or https://"),
        ("http:///v1", "m", "has no valid host"),
        ("http://127.0.0.1:1/v1", "gpt\nX-Evil: 1", "the model contains a control character"),
        ("http://127.0.0.1:1/v1", " ", "the model is empty"),
    ] {
        let err = Config::new(url, model).unwrap_err().to_string();
        assert!(err.contains(expected), "{url:?} {model:?}: {err}");
    }
    let mut config = Config::new("http://127.0.0.1:1/v1", "m").unwrap();
    config.api_key = Some("sk-secret\r\nX-Injected: 1".into());
    let err = Client::new(config).unwrap_err().to_string();
    assert!(err.contains("the API key (MINLLM_LLM_KEY) is empty or contains"), "{err}");
    assert!(!err.contains("sk-secret"), "the key is never shown: {err}");
}

#[test]
fn a_refused_connection_names_the_endpoint() {
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = client(&url, |_| {}).chat_blocking(&Request::prompt("hi")).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot connect to {url}/chat/completions")), "{err}");
}

#[test]
fn blocking_calls_work_inside_an_async_runtime_too() {
    let (url, server) = serve(vec![json_answer(200, completion(json!({"content": "from inside"})))]);
    let client = client(&url, |_| {});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A sync node's exec run in place by an async run.
    let reply = runtime.block_on(async { client.chat_blocking(&Request::prompt("hi")) }).unwrap();
    assert_eq!(reply.content, "from inside");
    server.join().unwrap();
}

#[test]
fn an_https_url_speaks_tls() {
    // A loopback server that answers in plain HTTP: the client's TLS
    // handshake fails on it, which shows the https path is TLS (rustls with
    // the platform's roots), without reaching the internet.
    let (url, server) = serve(vec![json_answer(200, completion(json!({"content": "plain"})))]);
    let https = url.replacen("http://", "https://", 1);
    let probe = std::thread::spawn(move || client(&https, |_| {}).chat_blocking(&Request::prompt("hi")));
    // The server reads what the client sends (a TLS hello, not HTTP) and answers.
    let err = probe.join().unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("cannot connect to {}", url.replacen("http://", "https://", 1))),
        "{err}"
    );
    assert!(err.to_string().contains("tls"), "{err}");
    drop(server);
}
