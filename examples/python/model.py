"""The model the Python examples talk to: the ``openai`` package against any
OpenAI-compatible API when ``MINLLM_LLM_URL`` is set (with ``MINLLM_LLM_MODEL``,
``MINLLM_LLM_KEY``, ``MINLLM_EMBED_MODEL``), else an offline script that answers
deterministically, so that every example runs with no key and no network.

Messages and tools are the API's own dicts (``{"role": "user", "content": ...}``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

Message = dict[str, Any]
LATENCY = 0.005  # how long a scripted answer takes


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    def args(self) -> dict[str, Any]:
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Request:
    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # structured output

    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m["role"] == "user":
                return str(m.get("content") or "")
        return ""


@dataclass
class Reply:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str = ""

    @staticmethod
    def call(name: str, arguments: dict[str, Any]) -> Reply:
        return Reply(tool_calls=[ToolCall(f"call_{name}", name, json.dumps(arguments))])

    def message(self) -> Message:
        message: Message = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [c.message() for c in self.tool_calls]
        return message


Script = Callable[[Request], Reply]


class Model:
    """A chat model, real (``openai``) or scripted."""

    def __init__(self, script: Script | None = None, client: Any = None, name: str = "offline-script",
                 embed_model: str = "") -> None:
        self.script, self.client, self.name, self.embed_model = script, client, name, embed_model

    @staticmethod
    def from_env(script: Script) -> Model:
        url = os.environ.get("MINLLM_LLM_URL")
        if not url:
            return Model(script)
        openai = importlib.import_module("openai")  # only needed with a real model
        client = openai.OpenAI(base_url=url, api_key=os.environ.get("MINLLM_LLM_KEY") or "none", timeout=120)
        return Model(None, client, os.environ.get("MINLLM_LLM_MODEL", "gpt-4o-mini"),
                     os.environ.get("MINLLM_EMBED_MODEL", "text-embedding-3-small"))

    @property
    def is_scripted(self) -> bool:
        return self.client is None

    def _args(self, request: Request) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.name, "messages": request.messages}
        if request.tools:
            args["tools"] = request.tools
        if request.schema is not None:
            args["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": request.schema, "strict": True}}
        return args

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             schema: dict[str, Any] | None = None) -> Reply:
        request = Request(messages, tools or [], schema)
        if self.script is not None:
            time.sleep(LATENCY)
            return self._scripted(request)
        choice = self.client.chat.completions.create(**self._args(request)).choices[0].message
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in choice.tool_calls or []]
        return Reply(choice.content or "", calls, self.name)

    async def chat_async(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
                         schema: dict[str, Any] | None = None) -> Reply:
        if self.script is not None:
            await asyncio.sleep(LATENCY)
            return self._scripted(Request(messages, tools or [], schema))
        return await asyncio.to_thread(self.chat, messages, tools, schema)

    def stream(self, messages: list[Message], on_token: Callable[[str], None]) -> Reply:
        """The answer, each piece handed to ``on_token`` as it comes."""
        if self.script is not None:
            reply = self._scripted(Request(messages))
            for word in re.findall(r"\S+\s*", reply.content):
                time.sleep(LATENCY)
                on_token(word)
            return reply
        text = []
        for chunk in self.client.chat.completions.create(model=self.name, messages=messages, stream=True):
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece:
                on_token(piece)
                text.append(piece)
        return Reply("".join(text), [], self.name)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """The API's embeddings, or offline the hashed word counts of :func:`hashed`."""
        if self.script is not None:
            return [hashed(t) for t in texts]
        data = self.client.embeddings.create(model=self.embed_model, input=texts).data
        return [list(d.embedding) for d in sorted(data, key=lambda d: d.index)]

    def _scripted(self, request: Request) -> Reply:
        assert self.script is not None
        reply = self.script(request)
        reply.model = reply.model or self.name
        return reply


# ---- offline helpers: text rules that stand in for a model ----

STOP = {"that", "with", "this", "they", "their", "from", "into", "when", "which", "where", "than", "have", "more",
        "also", "each", "every", "many", "much", "because", "there", "them", "would", "within", "while", "through"}


def words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z']+", text)]


def keywords(text: str, n: int) -> list[str]:
    counts = Counter(w for w in words(text) if len(w) > 3 and w not in STOP)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def summarize(text: str) -> str:
    """The sentence that carries most of the text's keywords."""
    top = set(keywords(text, 8))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if not sentences:
        return ""
    return max(sentences, key=lambda s: (sum(w in top for w in words(s)), -len(s)))


DIMENSIONS = 512


def _bucket(token: str) -> int:
    h = 0xCBF29CE484222325
    for b in token.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % DIMENSIONS


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) > 3:
            return word[: -len(suffix)]
    return word


def hashed(text: str) -> list[float]:
    """Counts of the text's words and word pairs hashed into fixed dimensions,
    damped and normalised: the cosine of two texts grows with what they share."""
    ws = [_stem(w) for w in words(text) if len(w) > 2 and w not in STOP and w not in {"the", "and", "for", "are"}]
    v = [0.0] * DIMENSIONS
    for w in ws:
        v[_bucket(w)] += 1.0
    for a, b in zip(ws, ws[1:]):
        v[_bucket(f"{a} {b}")] += 0.5
    v = [1 + math.log(c) if c > 0 else 0.0 for c in v]
    norm = math.sqrt(sum(c * c for c in v))
    return [c / norm for c in v] if norm else v


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
