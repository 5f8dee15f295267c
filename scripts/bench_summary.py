#!/usr/bin/env python3
"""Prints criterion's results as a table with ratios against each group's baseline.

Usage: python3 scripts/bench_summary.py [target/criterion]
Run `cargo bench ...` first; this only reads target/criterion/*/*/new/estimates.json.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups: dict[str, dict[str, float]] = {}
for est in sorted(root.glob("**/new/estimates.json")):
    rel = est.parent.parent.relative_to(root).parts
    group, bench = rel[0], "/".join(rel[1:])
    groups.setdefault(group, {})[bench] = json.loads(est.read_text())["median"]["point_estimate"]

def fmt(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.1f} ns"

for group, benches in groups.items():
    print(f"\n{group}")
    base_name = next(iter(benches))
    base = benches[base_name]
    for name, ns in benches.items():
        print(f"  {name:45} {fmt(ns):>12}   {ns / base:6.2f}x of {base_name}")
