"""Benchmarks of the Python package against the original PocketFlow, in one run.

Usage (from the repository root, after `scripts/test` made .venv):
    .venv/bin/pip install pocketflow==0.0.3
    (cd minllm-py && ../.venv/bin/maturin develop --release)
    .venv/bin/python minllm-py/bench/bench.py [--quick]

Prints each figure and its ratio to the original measured in the same run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import statistics
import sys
import time

import minllm
import pocketflow

QUICK = "--quick" in sys.argv


def loop_flow(lib, transitions: int):
    class Step(lib.Node):
        def prep(self, shared):
            return shared["left"]

        def exec(self, left):
            return left - 1

        def post(self, shared, prep_res, left):
            shared["left"] = left
            return "next" if left > 0 else "done"

    a, b, c = Step(), Step(), Step()
    a - "next" >> b
    b - "next" >> c
    c - "next" >> a
    return lib.Flow(start=a), {"left": transitions}


def async_loop_flow(lib, transitions: int):
    class Step(lib.AsyncNode):
        async def prep_async(self, shared):
            return shared["left"]

        async def exec_async(self, left):
            return left - 1

        async def post_async(self, shared, prep_res, left):
            shared["left"] = left
            return "next" if left > 0 else "done"

    a, b, c = Step(), Step(), Step()
    a - "next" >> b
    b - "next" >> c
    c - "next" >> a
    return lib.AsyncFlow(start=a), {"left": transitions}


def best_of(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def transitions_per_second(transitions: int, runs: int) -> None:
    print(f"\n3-node loop of identical Python nodes, {transitions} transitions (best of {runs})")
    results = {}
    for name, lib in (("pocketflow", pocketflow), ("minllm", minllm)):
        def sync_run():
            flow, shared = loop_flow(lib, transitions)
            flow.run(shared)
            assert shared["left"] == 0

        def async_run():
            flow, shared = async_loop_flow(lib, transitions)
            asyncio.run(flow.run_async(shared))
            assert shared["left"] == 0

        results[name] = (transitions / best_of(runs, sync_run), transitions / best_of(runs, async_run))
    base_sync, base_async = results["pocketflow"]
    for name, (sync_tps, async_tps) in results.items():
        print(
            f"  {name:10}  sync {sync_tps:12,.0f}/s ({sync_tps / base_sync:4.2f}x)"
            f"   async {async_tps:12,.0f}/s ({async_tps / base_async:4.2f}x)"
        )


def blocking_batch(items: int, seconds: float, workers: int) -> None:
    print(f"\n{items} items whose exec blocks {seconds * 1000:.0f} ms")

    class Slow:
        def prep(self, shared):
            return list(range(items))

        def exec(self, item):
            time.sleep(seconds)
            return item

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    class Original(Slow, pocketflow.BatchNode):
        pass

    class Parallel(Slow, minllm.ParallelBatchNode):
        pass

    shared: dict = {}
    base = best_of(1, lambda: Original().run(shared))
    assert shared["out"] == list(range(items))
    ours = best_of(3, lambda: Parallel(max_workers=workers).run(shared))
    assert shared["out"] == list(range(items))
    print(f"  pocketflow BatchNode                      {base:7.3f} s")
    print(f"  minllm ParallelBatchNode(max_workers={workers})  {ours:7.3f} s   {base / ours:5.1f}x faster")


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_flat(transitions: int) -> None:
    print(f"\nRSS across {transitions:,} transitions (minllm, sync loop)")
    flow, shared = loop_flow(minllm, 0)
    samples = []
    chunk = transitions // 10
    for _ in range(10):
        shared["left"] = chunk
        flow.run(shared)
        samples.append(rss_mib())
    print("  RSS after each 10%: " + ", ".join(f"{s:.1f}" for s in samples) + " MiB")
    print(f"  growth from the first tenth to the end: {samples[-1] - samples[0]:+.2f} MiB")


if __name__ == "__main__":
    # Objects alive from here on (modules, classes) are left out of collections,
    # for both libraries alike: full collections then cost what the run
    # allocates, not what the interpreter had loaded before.
    gc.collect()
    gc.freeze()
    transitions_per_second(20_000 if QUICK else 200_000, 3 if QUICK else 5)
    blocking_batch(64, 0.05, 16)
    rss_flat(100_000 if QUICK else 1_000_000)
