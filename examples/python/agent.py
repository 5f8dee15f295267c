"""A research agent in Python on the minllm engine: `decide` searches the offline
library in examples/data until its notes cover the question, then `answer`
summarises them. The same program runs on PocketFlow with the import changed
(minus `max_steps` and `validate`, which minllm adds). Type-checks with
`mypy --strict`.

    python examples/python/agent.py "How do bees find flowers?"
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from minllm import Flow, Node

DATA = Path(__file__).resolve().parent.parent / "data"
Shared = dict[str, Any]
Passage = tuple[str, str]


def words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z']+", text)]


def relevance(question: str, passage: str) -> int:
    found = set(words(passage))
    return sum(1 for w in words(question) if len(w) > 3 and w in found)


def library() -> list[Passage]:
    return [
        (path.stem, part.strip())
        for path in sorted(DATA.glob("*.txt"))
        for part in path.read_text().split("\n\n")
        if part.strip()
    ]


class Decide(Node):
    def prep(self, shared: Shared) -> tuple[int, bool]:
        question: str = shared["question"]
        notes: list[Passage] = shared["notes"]
        covered = sum(relevance(question, p) for _, p in notes)
        unread = any(p not in notes and relevance(question, p[1]) > 0 for p in shared["library"])
        return covered, unread

    def exec(self, prep_res: tuple[int, bool]) -> str:
        covered, unread = prep_res
        return "search" if covered < 4 and unread else "answer"

    def post(self, shared: Shared, prep_res: tuple[int, bool], exec_res: str) -> str:
        print(f"decide: {exec_res}")
        return exec_res


class Search(Node):
    def prep(self, shared: Shared) -> tuple[str, list[Passage]]:
        notes: list[Passage] = shared["notes"]
        return shared["question"], [p for p in shared["library"] if p not in notes]

    def exec(self, prep_res: tuple[str, list[Passage]]) -> Passage | None:
        question, unread = prep_res
        ranked = sorted(unread, key=lambda p: relevance(question, p[1]), reverse=True)
        return ranked[0] if ranked and relevance(question, ranked[0][1]) > 0 else None

    def post(self, shared: Shared, prep_res: Any, exec_res: Passage | None) -> str:
        if exec_res is not None:
            print(f"search: read a passage of `{exec_res[0]}`")
            shared["notes"].append(exec_res)
        return "default"


class Answer(Node):
    def prep(self, shared: Shared) -> tuple[str, list[Passage]]:
        return shared["question"], shared["notes"]

    def exec(self, prep_res: tuple[str, list[Passage]]) -> str:
        question, notes = prep_res
        sentences = [s.strip() for _, p in notes for s in re.split(r"(?<=[.!?])\s+", p) if s.strip()]
        if not sentences:
            return "The library has nothing on that."
        return max(sentences, key=lambda s: (relevance(question, s), -len(s)))

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        shared["answer"] = exec_res


def build() -> Flow:
    decide, search, answer = Decide(), Search(), Answer()
    decide - "search" >> search >> decide
    decide - "answer" >> answer
    return Flow(start=decide, max_steps=20)


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "How do bees find the richest flowers?"
    flow = build()
    assert flow.validate() == [], flow.validate()
    shared: Shared = {"question": question, "library": library(), "notes": []}
    flow.run(shared)
    print(f"\nQ: {question}\nA: {shared['answer']}\n")
    print(flow.to_mermaid())


if __name__ == "__main__":
    main()
