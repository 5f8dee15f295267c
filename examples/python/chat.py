"""Chat: a conversation loop with memory. ``Read`` takes the user's next line
(from stdin), ``Respond`` sends the whole conversation to the model and adds its
answer; the flow loops until the user says ``bye`` or the input ends.

    python examples/python/chat.py        (type lines; ``bye`` or Ctrl-D ends)
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterator

from minllm import Flow, Node

from model import Model, Reply, Request

Shared = dict[str, Any]


class Read(Node):
    def __init__(self, lines: Iterator[str]) -> None:
        super().__init__()
        self.lines = lines

    def exec(self, prep_res: Any) -> str | None:
        return next((line.strip() for line in self.lines if line.strip()), None)

    def post(self, shared: Shared, prep_res: Any, exec_res: str | None) -> str:
        if exec_res is None or exec_res.lower() == "bye":
            return "bye"
        shared["messages"].append({"role": "user", "content": exec_res})
        return "say"


class Respond(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> list[dict[str, Any]]:
        return list(shared["messages"])

    def exec(self, prep_res: list[dict[str, Any]]) -> str:
        system = {"role": "system", "content": "You are a friendly assistant. Answer in one or two sentences."}
        return self.model.chat([system, *prep_res]).content

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        print(f"bot> {exec_res}")
        shared["messages"].append({"role": "assistant", "content": exec_res})


class Bye(Node):
    def exec(self, prep_res: Any) -> None:
        print("bot> Goodbye!")


def script(request: Request) -> Reply:
    """The offline model: remembers a name it was told, echoes the rest."""
    said = request.last_user().rstrip("?!.")
    heard = [str(m["content"]) for m in request.messages if m["role"] == "user"]
    name = next((m.group(1) for t in reversed(heard) if (m := re.search(r"my name is (\w+)", t, re.I))), None)
    lower = said.lower()
    if "my name is" in lower:
        return Reply(f"Nice to meet you, {name}!")
    if "my name" in lower:
        return Reply(f"Your name is {name}." if name else "You have not told me your name yet.")
    if set(lower.split()) & {"hello", "hi", "hey"}:
        return Reply("Hello! What would you like to talk about?")
    return Reply(f'You said "{said}". That is message {len(heard)} of our conversation.')


def chat(lines: Iterator[str], model: Model) -> list[dict[str, Any]]:
    read, respond = Read(lines), Respond(model)
    read - "say" >> respond >> read
    read - "bye" >> Bye()
    shared: Shared = {"messages": []}
    Flow(start=read, max_steps=100_000).run(shared)
    messages: list[dict[str, Any]] = shared["messages"]
    return messages


if __name__ == "__main__":
    model = Model.from_env(script)
    print(f"chatting with {model.name} (type `bye` to end)", file=sys.stderr)
    print(f"{len(chat(iter(sys.stdin), model))} messages", file=sys.stderr)
