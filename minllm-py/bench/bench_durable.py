"""What a checkpoint costs per step: minllm's SqliteCheckpointer against
LangGraph's SqliteSaver on the same loop, in one run, plus each library's loop
without checkpoints.

Usage (from the repository root, after `scripts/test` made .venv):
    .venv/bin/pip install langgraph==1.2.24 langgraph-checkpoint-sqlite==3.1.2
    .venv/bin/python minllm-py/bench/bench_durable.py [steps]

The loop: one node that reads a counter from the state, adds one, writes it
back, and goes round again until the counter reaches `steps`. Each figure is
the best of 7 rounds that interleave the four variants; the ratios are
LangGraph's cost over minllm's, for what the checkpoint adds to a step and for
the whole checkpointed step.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from typing import Any, TypedDict

import minllm

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
ROUNDS = 7


def minllm_flow() -> minllm.Flow:
    class Count(minllm.Node):
        def prep(self, shared: dict[str, Any]) -> int:
            return shared["n"]

        def exec(self, n: int) -> int:
            return n + 1

        def post(self, shared: dict[str, Any], _: int, n: int) -> str:
            shared["n"] = n
            return "again" if n < STEPS else "done"

    count = Count()
    count - "again" >> count
    count - "done" >> minllm.Node()
    return minllm.Flow(start=count, max_steps=STEPS + 10)


class State(TypedDict):
    n: int


def langgraph_graph(checkpointer: Any) -> Any:
    from langgraph.graph import END, START, StateGraph

    def count(state: State) -> State:
        return {"n": state["n"] + 1}

    graph = StateGraph(State)
    graph.add_node("count", count)
    graph.add_edge(START, "count")
    graph.add_conditional_edges("count", lambda s: "count" if s["n"] < STEPS else END)
    return graph.compile(checkpointer=checkpointer)


def timed(f: Any) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def main() -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    flow = minllm_flow()
    tmp = tempfile.mkdtemp(prefix="minllm-bench-durable-")
    runs = iter(range(10**9))

    def minllm_plain() -> None:
        flow.run({"n": 0})

    def minllm_sqlite() -> None:
        path = os.path.join(tmp, f"minllm-{next(runs)}.db")
        flow.run({"n": 0}, checkpointer=minllm.SqliteCheckpointer(path), run_id="r")

    plain_graph = langgraph_graph(None)
    config = {"recursion_limit": STEPS + 10}

    def langgraph_plain() -> None:
        plain_graph.invoke({"n": 0}, config)

    def langgraph_sqlite() -> None:
        path = os.path.join(tmp, f"langgraph-{next(runs)}.db")
        connection = sqlite3.connect(path, check_same_thread=False)
        graph = langgraph_graph(SqliteSaver(connection))
        graph.invoke({"n": 0}, {**config, "configurable": {"thread_id": "r"}})
        connection.close()

    variants = [
        ("minllm, no checkpointer", minllm_plain),
        ("minllm, SqliteCheckpointer", minllm_sqlite),
        ("LangGraph, no checkpointer", langgraph_plain),
        ("LangGraph, SqliteSaver", langgraph_sqlite),
    ]
    # Rounds interleave the variants, so that a slow spell of the machine
    # does not land on one of them; each figure is its best round.
    per_step = {name: float("inf") for name, _ in variants}
    for _ in range(ROUNDS):
        for name, f in variants:
            per_step[name] = min(per_step[name], timed(f) / STEPS * 1e6)
    for name, _ in variants:
        print(f"{name:30s} {per_step[name]:9.1f} µs per step")
    ours = per_step["minllm, SqliteCheckpointer"] - per_step["minllm, no checkpointer"]
    theirs = per_step["LangGraph, SqliteSaver"] - per_step["LangGraph, no checkpointer"]
    print(f"checkpoint cost per step: minllm {ours:.1f} µs, LangGraph {theirs:.1f} µs: {theirs / ours:.1f}x")
    print(
        f"whole checkpointed step: minllm {per_step['minllm, SqliteCheckpointer']:.1f} µs, "
        f"LangGraph {per_step['LangGraph, SqliteSaver']:.1f} µs: "
        f"{per_step['LangGraph, SqliteSaver'] / per_step['minllm, SqliteCheckpointer']:.1f}x"
    )


if __name__ == "__main__":
    main()
