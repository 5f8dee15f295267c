"""The Python examples against a real API: the ``openai`` package talks to a fake
OpenAI-compatible server on loopback that this test starts (never the internet),
and the examples run unchanged with ``MINLLM_LLM_URL`` pointing at it. Needs the
``openai`` package (``scripts/test`` installs it in the venv)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

import rag
import streaming
import tools
from model import Model


class Fake(BaseHTTPRequestHandler):
    """Answers chat completions (plain and streamed) and embeddings; keeps the requests."""

    requests: list[tuple[str, dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Fake.requests.append((self.path, body))
        if self.path.endswith("/embeddings"):
            data = [{"object": "embedding", "index": i, "embedding": [1.0, float(i)]} for i in range(len(body["input"]))]
            self.reply({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        elif body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in ["Remote ", "tokens."]:
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            tool_called = any(m.get("role") == "tool" for m in body["messages"])
            if body.get("tools") and not tool_called:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\": \"6*7\"}"}}]}
            else:
                message = {"role": "assistant", "content": "A remote answer."}
            self.reply({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}})

    def reply(self, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MINLLM_LLM_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("MINLLM_LLM_MODEL", "fake-model")
    monkeypatch.setenv("MINLLM_LLM_KEY", "sk-test")
    Fake.requests.clear()
    yield
    server.shutdown()


def test_a_configured_model_is_the_openai_client(remote: None) -> None:
    model = Model.from_env(tools.script)
    assert not model.is_scripted and model.name == "fake-model"
    shared = tools.ask("What is 6*7?", model)
    assert shared["used"] == ["calculator"] and shared["answer"] == "A remote answer."
    path, body = Fake.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "fake-model"
    assert body["tools"][1]["function"]["name"] == "calculator"
    assert Fake.requests[1][1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


def test_remote_embeddings_and_streams(remote: None) -> None:
    shared = rag.ask("How do bees find flowers?", Model.from_env(rag.script))
    assert shared["answer"] == "A remote answer."
    assert any(path.endswith("/embeddings") for path, _ in Fake.requests)
    shared = {"question": "How do bees find flowers?"}
    events = list(streaming.build(Model.from_env(streaming.script)).stream(shared))
    assert [e.value for e in events if e.kind == "custom"] == ["Remote ", "tokens."]
    assert shared["answer"] == "Remote tokens."
