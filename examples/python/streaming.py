"""Streaming: a flow answers a question from the offline library, and each token
of the answer is printed as the model streams it (the node emits each one), with each node's start and
end, from the flow's event stream (``flow.stream``; ``stream_async`` for async
flows).

    python examples/python/streaming.py "How do bees find flowers?"
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from minllm import Flow, Node, emit

from model import Model, Reply, Request, summarize

DATA = Path(__file__).resolve().parent.parent / "data"
Shared = dict[str, Any]


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z']+", text) if len(w) > 3}


class Retrieve(Node):
    def prep(self, shared: Shared) -> str:
        question: str = shared["question"]
        return question

    def exec(self, prep_res: str) -> str:
        asked = words(prep_res)
        passages = [p for path in sorted(DATA.glob("*.txt")) for p in path.read_text().split("\n\n")]
        return max(passages, key=lambda p: len(words(p) & asked))

    def post(self, shared: Shared, prep_res: str, exec_res: str) -> None:
        shared["passage"] = exec_res


class Answer(Node):
    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def prep(self, shared: Shared) -> str:
        passage: str = shared["passage"]
        return passage

    def exec(self, prep_res: str) -> str:
        asked = [{"role": "user", "content": f"In one sentence, what does this say?\n\n{prep_res}"}]
        return self.model.stream(asked, emit).content  # each token emitted as it comes

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        shared["answer"] = exec_res


def script(request: Request) -> Reply:
    """The offline model: the passage's key sentence, streamed word by word."""
    return Reply(summarize(request.last_user().split("\n\n", 1)[-1]))


def build(model: Model) -> Flow:
    retrieve, answer = Retrieve(), Answer(model)
    retrieve >> answer
    return Flow(start=retrieve)


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "How do bees find the richest flowers?"
    flow = build(Model.from_env(script))
    shared: Shared = {"question": question}
    print(f"Q: {question}")
    mid_line = False
    for event in flow.stream(shared):
        if event.kind == "node_started":
            print(f"[{event.node} started]")
        elif event.kind == "custom":
            print(event.value, end="", flush=True)
            mid_line = True
        elif event.kind == "node_finished":
            if mid_line:
                print()
                mid_line = False
            print(f"[{event.node} finished in {(event.elapsed or 0) * 1000:.0f} ms]")
    print(f"A: {shared['answer']}")


if __name__ == "__main__":
    main()
