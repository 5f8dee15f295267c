"""Map-reduce over the text files in examples/data: a ParallelBatchNode
summarises every file at once on threads (each a blocking model call), then a
node reduces the summaries into a report. Offline, the scripted model picks
each text's key sentence; with ``MINLLM_LLM_URL`` set, a real model writes it.

    python examples/python/map_reduce.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from minllm import Flow, Node, ParallelBatchNode

from model import Model, Reply, Request, summarize

DATA = Path(__file__).resolve().parent.parent / "data"


def script(request: Request) -> Reply:
    """The offline model: the text's key sentence."""
    return Reply(summarize(request.last_user().split("\n\n", 1)[-1]))


class Load(Node):
    def exec(self, prep_res: Any) -> list[tuple[str, str]]:
        return [(p.stem, p.read_text()) for p in sorted(DATA.glob("*.txt"))]

    def post(self, shared: dict[str, Any], prep_res: Any, exec_res: list[tuple[str, str]]) -> None:
        shared["docs"] = exec_res


class Summarise(ParallelBatchNode):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5, max_workers=8)
        self.model = model

    def prep(self, shared: dict[str, Any]) -> list[tuple[str, str]]:
        docs: list[tuple[str, str]] = shared["docs"]
        return docs

    def exec(self, prep_res: tuple[str, str]) -> tuple[str, str]:
        name, text = prep_res
        return name, self.model.chat([{"role": "user", "content": f"Summarize in one sentence:\n\n{text}"}]).content

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


def map_reduce(model: Model) -> dict[str, Any]:
    load, summarise, report = Load(), Summarise(model), Report()
    load >> summarise >> report
    shared: dict[str, Any] = {}
    Flow(start=load).run(shared)
    return shared


def main() -> None:
    started = time.perf_counter()
    shared = map_reduce(Model.from_env(script))
    print(shared["report"])
    print(f"\n{len(shared['docs'])} files summarised in {time.perf_counter() - started:.2f} s, on threads")


if __name__ == "__main__":
    main()
