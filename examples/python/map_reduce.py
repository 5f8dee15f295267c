"""Map-reduce over the text files in examples/data, offline: a ParallelBatchNode
summarises every file at once on a thread pool (each "LLM call" blocks 50 ms,
as a real client would), then a node reduces the summaries into a report.

    python examples/python/map_reduce.py
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from minllm import Flow, Node, ParallelBatchNode

DATA = Path(__file__).resolve().parent.parent / "data"
STOP = {"that", "with", "this", "they", "their", "from", "into", "when", "which", "where", "than", "have", "more"}


def fake_llm_summary(text: str) -> str:
    """Stands in for a blocking LLM call: waits, then picks the key sentence."""
    time.sleep(0.05)
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text) if len(w) > 3 and w.lower() not in STOP]
    top = {w for w, _ in Counter(words).most_common(6)}
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return max(sentences, key=lambda s: (sum(w.lower() in top for w in re.findall(r"[A-Za-z]+", s)), -len(s)))


class Load(Node):
    def exec(self, prep_res: Any) -> list[tuple[str, str]]:
        return [(p.stem, p.read_text()) for p in sorted(DATA.glob("*.txt"))]

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[tuple[str, str]]) -> None:
        shared["docs"] = exec_res


class Summarise(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[tuple[str, str]]:
        docs: list[tuple[str, str]] = shared["docs"]
        return docs

    def exec(self, prep_res: tuple[str, str]) -> tuple[str, str]:
        name, text = prep_res
        return name, fake_llm_summary(text)

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[tuple[str, str]]) -> None:
        shared["summaries"] = exec_res


class Report(Node):
    def prep(self, shared: dict[str, Any]) -> list[tuple[str, str]]:
        summaries: list[tuple[str, str]] = shared["summaries"]
        return summaries

    def exec(self, prep_res: list[tuple[str, str]]) -> str:
        return "\n".join(f"{name}: {summary}" for name, summary in prep_res)

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: str) -> None:
        shared["report"] = exec_res


def main() -> None:
    load, summarise, report = Load(), Summarise(max_workers=8), Report()
    load >> summarise >> report
    shared: dict[str, Any] = {}
    started = time.perf_counter()
    Flow(start=load).run(shared)
    print(shared["report"])
    print(f"\n{len(shared['docs'])} files summarised in {time.perf_counter() - started:.2f} s (50 ms per call, on threads)")


if __name__ == "__main__":
    main()
