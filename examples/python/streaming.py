"""Streaming: a flow answers a question from the offline library, and each word
of the answer is printed as the node produces it, with each node's start and
end, from the flow's event stream (``flow.stream``; ``stream_async`` for async
flows).

    python examples/python/streaming.py "How do bees find flowers?"
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from minllm import Flow, Node, emit

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
    def prep(self, shared: Shared) -> tuple[str, str]:
        return shared["question"], shared["passage"]

    def exec(self, prep_res: tuple[str, str]) -> str:
        question, passage = prep_res
        sentences = re.split(r"(?<=[.!?])\s+", passage.strip())
        answer = max(sentences, key=lambda s: len(words(s) & words(question)))
        for word in answer.split(" "):
            emit(word + " ")  # one token at a time, as a model streams them
            time.sleep(0.015)
        return answer

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        shared["answer"] = exec_res


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "How do bees find the richest flowers?"
    retrieve, answer = Retrieve(), Answer()
    retrieve >> answer
    flow = Flow(start=retrieve)
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
