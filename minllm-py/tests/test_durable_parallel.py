"""Durable and streamed runs of parallel batches: a parallel batch flow's runs go
node by node, each exec recorded, so that a resumed run pays no finished call
again; ``cur_retry`` stays each item's own; interrupt says why it cannot pause."""

import asyncio
import threading
from collections import Counter

import pytest

from minllm import (
    AsyncNode,
    AsyncParallelBatchFlow,
    Flow,
    MemoryCheckpointer,
    Node,
    ParallelBatchFlow,
    ParallelBatchNode,
    SqliteCheckpointer,
    emit,
    interrupt,
)

pytestmark = pytest.mark.filterwarnings("ignore:Flow ends")

LANGS = ["de", "es", "fr", "it", "nl", "pt"]


@pytest.fixture(params=["memory", "sqlite"])
def checkpointer(request, tmp_path):
    if request.param == "memory":
        return MemoryCheckpointer()
    return SqliteCheckpointer(tmp_path / "runs.db")


def translate_flow(calls, healed, is_async):
    """Per language: ``fetch`` (the paid call; ``fr`` fails until healed), then
    ``keep`` twice (a loop, so that the two visits are told apart)."""
    lock = threading.Lock()

    def call(line):
        with lock:
            calls.append(line)

    class Fetch(Node):
        def prep(self, shared):
            return self.params["lang"]

        def exec(self, lang):
            call(f"fetch {lang}")
            emit(lang)
            if lang == "fr" and not healed:
                raise ConnectionError("the model is down")
            return f"hello in {lang}"

        def post(self, shared, lang, text):
            shared[f"text {lang}"] = text

    class Keep(Node):
        def prep(self, shared):
            lang = self.params["lang"]
            return lang, len(shared.get(f"kept {lang}", []))

        def exec(self, prep_res):
            lang, kept = prep_res
            call(f"keep {lang} {kept}")
            return f"{lang} #{kept}"

        def post(self, shared, prep_res, line):
            kept = shared.setdefault(f"kept {prep_res[0]}", [])
            kept.append(line)
            return "again" if len(kept) < 2 else "done"

    class AsyncKeep(AsyncNode, Keep):
        async def prep_async(self, shared):
            return Keep.prep(self, shared)

        async def exec_async(self, prep_res):
            await asyncio.sleep(0)
            return Keep.exec(self, prep_res)

        async def post_async(self, shared, prep_res, line):
            return Keep.post(self, shared, prep_res, line)

    fetch, keep = Fetch(), AsyncKeep() if is_async else Keep()
    fetch >> keep
    keep - "again" >> keep
    base = AsyncParallelBatchFlow if is_async else ParallelBatchFlow

    class Languages(base):
        def prep(self, shared):
            return [{"lang": lang} for lang in LANGS]

        def post(self, shared, prep_res, exec_res):
            shared["done"] = len(prep_res)

        async def prep_async(self, shared):
            return self.prep(shared)

        async def post_async(self, shared, prep_res, exec_res):
            return self.post(shared, prep_res, exec_res)

    languages = Languages(start=fetch, max_steps=10)
    if not is_async:
        languages.max_workers = 3
    return Flow(start=languages) if not is_async else languages


@pytest.mark.parametrize("is_async", [False, True])
def test_a_parallel_batch_flow_resumed_after_a_failure_pays_no_finished_call_again(checkpointer, is_async):
    calls = []

    def run(flow, *args, **kwargs):
        if is_async:
            return asyncio.run(flow.resume_async(*args, **kwargs) if args else flow.run_async({}, **kwargs))
        return flow.resume(*args, **kwargs) if args else flow.run({}, **kwargs)

    with pytest.raises(ConnectionError):
        run(translate_flow(calls, False, is_async), checkpointer=checkpointer, run_id="p")
    before = Counter(calls)
    shared = run(translate_flow(calls, True, is_async), "p", checkpointer=checkpointer)
    for lang in LANGS:
        assert shared[f"text {lang}"] == f"hello in {lang}"
        assert shared[f"kept {lang}"] == [f"{lang} #0", f"{lang} #1"]
    assert shared["done"] == 6
    counts = Counter(calls)
    assert counts["fetch fr"] == 2
    expected = {f"fetch {lang}" for lang in LANGS} | {f"keep {lang} {k}" for lang in LANGS for k in (0, 1)}
    assert set(counts) == expected
    again = sum(counts.values()) - len(expected) - 1
    # The other items stop between nodes once one failed, their execs recorded,
    # and the run returns only then: nothing but the failed call runs again.
    assert again == 0, f"{again} calls ran again: {counts} (before {dict(before)})"


def test_a_streamed_parallel_batch_flow_reports_each_items_nodes():
    calls = []
    events = list(translate_flow(calls, True, False).stream({}))
    started = sorted((e.flow, e.node) for e in events if e.kind == "node_started" and e.node != "Languages")
    assert started == sorted(
        [(f"Languages > [{i}]", "Fetch") for i in range(6)] + [(f"Languages > [{i}]", "Keep") for i in range(6) for _ in (0, 1)]
    )
    emitted = sorted((e.flow, e.value) for e in events if e.kind == "custom")
    assert emitted == sorted((f"Languages > [{i}]", lang) for i, lang in enumerate(LANGS))


def test_interrupt_inside_a_parallel_batch_flow_item_says_why_it_cannot_pause(checkpointer):
    class Ask(Node):
        def exec(self, _):
            return interrupt("publish?")

    class Items(ParallelBatchFlow):
        def prep(self, shared):
            return [{}, {}]

    with pytest.raises(RuntimeError, match="cannot pause inside the items of parallel batch flow 'Items'"):
        Flow(start=Items(start=Ask())).run({}, checkpointer=checkpointer, run_id="i")


def test_cur_retry_is_each_items_own_in_a_checkpointed_parallel_batch(checkpointer):
    from minllm import AsyncFlow, AsyncParallelBatchNode

    # Item 0 looks at its attempt before and after item 1 moved to its second.
    moved = threading.Event()

    class Flaky(ParallelBatchNode):
        def prep(self, shared):
            return [0, 1]

        def exec(self, i):
            before = self.cur_retry
            if i == 1:
                if before == 0:
                    raise ValueError("again")
                moved.set()
                return [before]
            assert moved.wait(timeout=10), "the items did not run at the same time"
            return [before, self.cur_retry]

        def post(self, shared, _, out):
            shared["attempts"] = out

    shared = {}
    Flow(start=Flaky(max_retries=2, max_workers=2)).run(shared, checkpointer=checkpointer, run_id="r")
    assert shared["attempts"] == [[0, 0], [1]]

    class AsyncFlaky(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return [0, 1]

        async def exec_async(self, i):
            before = self.cur_retry
            if i == 1:
                if before == 0:
                    raise ValueError("again")
                return [before]
            for _ in range(5):  # item 1 fails and tries again meanwhile
                await asyncio.sleep(0)
            return [before, self.cur_retry]

        async def post_async(self, shared, _, out):
            shared["attempts"] = out

    shared = {}
    asyncio.run(AsyncFlow(start=AsyncFlaky(max_retries=2)).run_async(shared, checkpointer=checkpointer, run_id="a"))
    assert shared["attempts"] == [[0, 0], [1]]


CHILD = '''
import os, signal, sys
from minllm import Flow, Node, ParallelBatchFlow, SqliteCheckpointer

db, mode, log = sys.argv[1], sys.argv[2], sys.argv[3]

def note(line):
    with open(log, "a") as f:
        f.write(line + "\\n")

class Square(Node):
    def prep(self, shared):
        return self.params["i"]
    def exec(self, i):
        note(f"start {i}")
        if i == 20 and not os.path.exists(log + ".killed"):
            open(log + ".killed", "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return i * i
    def post(self, shared, i, square):
        shared["squares"] = shared.get("squares", 0) + square

class Squares(ParallelBatchFlow):
    def prep(self, shared):
        return [{"i": i} for i in range(30)]

flow = Flow(start=Squares(start=Square(), max_workers=4))
cp = SqliteCheckpointer(db)
store = flow.run({}, checkpointer=cp, run_id="job") if mode == "run" else flow.resume("job", checkpointer=cp)
print(store["squares"])
'''


def test_a_parallel_batch_flow_killed_at_an_item_redoes_only_the_items_in_flight(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db, log = str(tmp_path / "runs.db"), str(tmp_path / "calls.log")

    def child(mode):
        return subprocess.run([sys.executable, str(script), db, mode, log], capture_output=True, text=True)

    first = child("run")
    assert first.returncode == -signal.SIGKILL, first.stderr
    done = child("resume")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == sum(i * i for i in range(30))
    starts = Counter(open(log).read().split("\n"))
    assert starts["start 20"] == 2
    # Only the items in flight on the 4 threads when the process died run again.
    assert sum(starts[f"start {i}"] for i in range(30)) <= 30 + 4, starts
