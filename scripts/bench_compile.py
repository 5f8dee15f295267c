#!/usr/bin/env python3
"""Compile time of a 50-node `flow!` against a crate with the same 50 nodes and no flow.

Usage: python3 scripts/bench_compile.py [runs]   (default 5 runs per crate)

Generates two crates under target/compile-bench/, builds their dependencies once,
then times `cargo build` of each crate alone (after touching its source), in
debug and release, and prints the medians and their ratio.
"""
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "compile-bench"
NODES = 50
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

NODE_DEFS = ["use minllm::{node, Action};", "",
             "#[derive(Default)]", "pub struct State { pub count: u64, pub laps: u64 }", "",
             "#[derive(Clone, Copy, Action)]", "pub enum Lap { Again, Done }", ""]
for i in range(NODES - 1):
    NODE_DEFS += [
        "#[derive(Default)]", f"pub struct N{i};", "#[node]", f"impl N{i} {{",
        "    fn prep(&self, s: &State) -> u64 { s.count }",
        f"    fn exec(&self, n: &u64) -> u64 {{ n.wrapping_mul(31).wrapping_add({i}) }}",
        "    fn post(&self, s: &mut State, n: u64) { s.count = n; }", "}", ""]
NODE_DEFS += [
    "#[derive(Default)]", f"pub struct N{NODES - 1};", "#[node]", f"impl N{NODES - 1} {{",
    "    fn prep(&self, s: &State) -> u64 { s.laps }",
    "    fn exec(&self, laps: &u64) -> Lap { if *laps < 3 { Lap::Again } else { Lap::Done } }",
    "    fn post(&self, s: &mut State, lap: Lap) -> Lap { s.laps += 1; lap }", "}", ""]

FLOW = ["minllm::flow! {", "    pub struct Big: State {"]
FLOW += [f"        node n{i}: N{i};" for i in range(NODES)]
FLOW += ["        start n0;", f"        max_steps {NODES * 10};"]
FLOW += ["        " + " >> ".join(f"n{i}" for i in range(NODES)) + ";",
         f"        n{NODES - 1} - Lap::Again >> n0;", f"        n{NODES - 1} - Lap::Done >> end;", "    }", "}"]


def make(name: str, with_flow: bool) -> pathlib.Path:
    crate = OUT / name
    (crate / "src").mkdir(parents=True, exist_ok=True)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
        f'[dependencies]\nminllm = {{ path = "{ROOT / "minllm"}" }}\n\n[workspace]\n')
    (crate / "src" / "lib.rs").write_text("\n".join(NODE_DEFS + (FLOW if with_flow else [])) + "\n")
    return crate


def build(crate: pathlib.Path, release: bool) -> float:
    args = ["cargo", "build", "--quiet"] + (["--release"] if release else [])
    env = {"CARGO_TARGET_DIR": str(OUT / "target"), **dict(__import__("os").environ)}
    (crate / "src" / "lib.rs").touch()
    start = time.perf_counter()
    subprocess.run(args, cwd=crate, env=env, check=True)
    return time.perf_counter() - start


crates = {"nodes only": make("nodes_only", False), "nodes + 50-node flow!": make("with_flow", True)}
for profile in ("debug", "release"):
    release = profile == "release"
    for crate in crates.values():
        build(crate, release)  # dependencies, once
    medians = {}
    for label, crate in crates.items():
        times = [build(crate, release) for _ in range(RUNS)]
        medians[label] = statistics.median(times)
    base = medians["nodes only"]
    print(f"\n{profile}: cargo build of the crate alone, median of {RUNS}")
    for label, t in medians.items():
        print(f"  {label:24} {t:6.2f} s   {t / base:5.2f}x")
