#!/usr/bin/env python3
"""Wall time per transition of the async path against the sync one, as the
minimum of several runs of each variant (runs interleaved), which is steadier
than a mean on a shared machine. Each figure subtracts a run of one transition
(process start, runtime set-up). Build first:

    cargo bench -p minllm --bench async_path --no-run
    python3 scripts/bench_async.py [transitions] [runs]
"""
import glob
import os
import subprocess
import sys
import time

VARIANTS = [
    "flow_macro_sync",
    "flow_macro_async",
    "runtime_sync",
    "runtime_async",
    "runtime_async_quick_sync_nodes",
    # the floors: the same hooks called by hand, no flow around them
    "hand_sync",
    "hand_async",
    "hand_async_guarded",
]


def binary():
    here = os.path.dirname(os.path.abspath(__file__))
    found = [
        b
        for b in glob.glob(os.path.join(here, "..", "target", "release", "deps", "async_path-*"))
        if not b.endswith(".d")
    ]
    if not found:
        sys.exit("build it first: cargo bench -p minllm --bench async_path --no-run")
    return max(found, key=os.path.getmtime)


def run(path, variant, n):
    started = time.perf_counter()
    subprocess.run([path], env={**os.environ, "MINLLM_ASYNC": f"{variant}:{n}"}, check=True)
    return time.perf_counter() - started


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    path = binary()
    best = {}
    for _ in range(runs):
        for variant in VARIANTS:
            took = run(path, variant, n) - run(path, variant, 1)
            best[variant] = min(best.get(variant, float("inf")), took)
    for variant in VARIANTS:
        print(f"{variant:32s} {best[variant] / n * 1e9:8.2f} ns per transition (min of {runs})")
    print(
        f"flow! async / sync: {best['flow_macro_async'] / best['flow_macro_sync']:.1f}x; "
        f"runtime async / sync: {best['runtime_async'] / best['runtime_sync']:.2f}x"
    )
    print(
        f"by hand: async / sync {best['hand_async'] / best['hand_sync']:.1f}x, "
        f"guarded async / sync {best['hand_async_guarded'] / best['hand_sync']:.1f}x; "
        f"flow! async / guarded by hand: {best['flow_macro_async'] / best['hand_async_guarded']:.2f}x"
    )


if __name__ == "__main__":
    main()
