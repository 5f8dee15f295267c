"""Durable runs of Python flows: checkpoints, resume (after an error, and after a
process was killed), interrupt, history, branches, plain data only, streams."""

import asyncio
import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import minllm
from minllm import (
    AsyncFlow,
    AsyncNode,
    BatchNode,
    CheckpointError,
    Flow,
    FlowError,
    Interrupted,
    MemoryCheckpointer,
    Node,
    SqliteCheckpointer,
    emit,
    interrupt,
)


# Flows that end on an action without a successor warn, as the original does.
pytestmark = pytest.mark.filterwarnings("ignore:Flow ends")


@pytest.fixture(params=["memory", "sqlite"])
def checkpointer(request, tmp_path):
    if request.param == "memory":
        return MemoryCheckpointer()
    return SqliteCheckpointer(tmp_path / "runs.db")


class Work(Node):
    """Three paid calls, then "done"; fails in post while `fail_post` is set."""

    def __init__(self, calls, fail_post=0):
        super().__init__()
        self.calls, self.fail_post = calls, fail_post

    def prep(self, shared):
        return shared.get("count", 0)

    def exec(self, k):
        self.calls.append(k)
        emit(f"token {k}")
        return f"paid call {k}"

    def post(self, shared, k, line):
        shared.setdefault("log", []).append(line)
        if self.fail_post:
            raise ConnectionError("the database went away")
        shared["count"] = k + 1
        return "again" if shared["count"] < 3 else "done"


class Approve(Node):
    """Asks in exec and again in post."""

    def exec(self, _):
        return interrupt({"question": "publish?"})

    def post(self, shared, _, first):
        second = interrupt({"question": "sure?", "first": first})
        shared["approved"] = f"{first}/{second}"


def work_flow(calls, ask=False):
    work = Work(calls)
    work - "again" >> work
    if ask:
        work - "done" >> Approve()
    return Flow(start=work, max_steps=50)


def test_a_checkpointed_run_gives_the_same_result_and_a_checkpoint_per_node(checkpointer):
    calls = []
    shared = {}
    assert work_flow(calls).run(shared, checkpointer=checkpointer, run_id="r1") == "done"
    assert shared == {"count": 3, "log": ["paid call 0", "paid call 1", "paid call 2"]}
    history = checkpointer.history("r1")
    assert [c.status for c in history] == ["running", "running", "running", "finished"]
    assert [c.node for c in history[:3]] == ["Work", "Work", "Work"]
    assert [c.seq for c in history] == [1, 2, 3, 4]
    with pytest.raises(CheckpointError, match="resume it"):
        work_flow(calls).run({}, checkpointer=checkpointer, run_id="r1")
    # Resuming a finished run runs nothing and gives its store.
    assert work_flow(calls).resume("r1", checkpointer=checkpointer) == shared
    assert calls == [0, 1, 2]


def test_without_a_checkpointer_nothing_changes():
    calls = []
    shared = {}
    assert work_flow(calls).run(shared) == "done"
    assert shared["count"] == 3


def test_a_failed_run_resumes_without_paying_again_and_without_a_half_written_store(checkpointer):
    calls = []
    flow = work_flow(calls)
    flow.start_node.fail_post = 1
    shared = {}
    with pytest.raises(ConnectionError):
        flow.run(shared, checkpointer=checkpointer, run_id="r1")
    assert shared["log"] == ["paid call 0"], "the caller's store is as post left it"
    flow.start_node.fail_post = 0
    store = flow.resume("r1", checkpointer=checkpointer)
    assert store == {"count": 3, "log": ["paid call 0", "paid call 1", "paid call 2"]}
    assert calls == [0, 1, 2], "the recorded exec of the failed visit was not paid again"


def test_interrupts_pause_and_answers_resume_in_order(checkpointer):
    calls = []
    flow = work_flow(calls, ask=True)
    with pytest.raises(Interrupted) as stop:
        flow.run({}, checkpointer=checkpointer, run_id="p1")
    assert stop.value.run_id == "p1"
    assert stop.value.value == {"question": "publish?"}
    assert stop.value.node == "Approve"
    with pytest.raises(Interrupted) as again:
        flow.resume("p1", checkpointer=checkpointer, answer="yes")
    assert again.value.value == {"question": "sure?", "first": "yes"}
    # Resumed without an answer, it asks the same again.
    with pytest.raises(Interrupted) as same:
        flow.resume("p1", checkpointer=checkpointer)
    assert same.value.value == again.value.value
    shared = flow.resume("p1", checkpointer=checkpointer, answer="very")
    assert shared["approved"] == "yes/very"
    assert calls == [0, 1, 2]
    with pytest.raises(CheckpointError, match="not paused"):
        flow.resume("p1", checkpointer=checkpointer, answer="again")


def test_interrupt_outside_a_checkpointed_run_says_so():
    with pytest.raises(RuntimeError, match="needs a checkpointed run"):
        Flow(start=Approve()).run({})


def test_interrupts_in_nested_async_flows(checkpointer):
    class Ask(AsyncNode):
        async def exec_async(self, _):
            return interrupt("ok?")

        async def post_async(self, shared, _, answer):
            shared["answer"] = answer

    inner = AsyncFlow(start=Ask())
    outer = AsyncFlow(start=inner)

    async def main():
        with pytest.raises(Interrupted) as stop:
            await outer.run_async({}, checkpointer=checkpointer, run_id="a1")
        assert stop.value.node == "AsyncFlow > Ask"
        return await outer.resume_async("a1", checkpointer=checkpointer, answer="fine")

    assert asyncio.run(main()) == {"answer": "fine"}


def test_history_and_a_branch_from_an_earlier_checkpoint(checkpointer):
    calls = []
    flow = work_flow(calls)
    flow.run({}, checkpointer=checkpointer, run_id="b1")
    second = checkpointer.history("b1")[1]
    shared = checkpointer.load("b1", second.seq)
    assert shared == {"count": 1, "log": ["paid call 0"]}
    shared["log"][0] = "a fixed line"
    out = flow.resume("b1", checkpointer=checkpointer, checkpoint=second.seq, shared=shared)
    assert out["log"] == ["a fixed line", "paid call 1", "paid call 2"]
    history = checkpointer.history("b1")
    assert history[4].parent == second.seq, "the branch follows the checkpoint it came from"


def test_values_that_are_not_plain_data_are_named_at_the_first_checkpoint(checkpointer):
    class Ticket:
        def __init__(self, n):
            self.n = n

    shared = {"ticket": Ticket(1), "fine": (1, b"\x00", {2: None})}
    with pytest.raises(TypeError, match=r"shared\['ticket'\] holds a .*Ticket.*register"):
        work_flow([]).run(shared, checkpointer=checkpointer, run_id="t1")
    minllm.register(Ticket, lambda t: {"n": t.n}, lambda d: Ticket(d["n"]), name="tests.Ticket")
    shared = {"ticket": Ticket(7), "fine": (1, b"\x00", {2: None})}
    work_flow([]).run(shared, checkpointer=checkpointer, run_id="t2")
    loaded = checkpointer.load("t2")
    assert loaded["ticket"].n == 7
    assert loaded["fine"] == (1, b"\x00", {2: None}), "tuples, bytes and non-str keys come back as they were"


def test_a_crafted_database_never_runs_code(tmp_path):
    path = tmp_path / "runs.db"
    cp = SqliteCheckpointer(path)
    work_flow([]).run({"count": 2}, checkpointer=cp, run_id="x")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = base64.b64encode(__import__("pickle").dumps(Evil())).decode()
    # Someone rewrites every checkpoint's store with a pickle that would
    # create a file when loaded.
    evil = json.dumps({"__p": payload}).encode().hex()
    db = sqlite3.connect(path)
    db.execute("UPDATE checkpoints SET fields = ?", (json.dumps({"count": evil}),))
    db.commit()
    db.close()
    with pytest.raises(CheckpointError, match="does not allow pickle"):
        SqliteCheckpointer(path).load("x")
    with pytest.raises(CheckpointError, match="does not allow pickle"):
        work_flow([]).resume("x", checkpointer=SqliteCheckpointer(path))
    assert not marker.exists()


def test_damaged_and_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x5a" * 8192)
    with pytest.raises(CheckpointError, match="cannot be used"):
        SqliteCheckpointer(garbage)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE orders (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(CheckpointError, match="not minllm checkpoints"):
        SqliteCheckpointer(foreign)


def test_a_batch_node_records_each_item(checkpointer):
    seen = []

    class Squares(BatchNode):
        def prep(self, shared):
            return list(range(5))

        def exec(self, i):
            seen.append(i)
            if i == 3 and not getattr(Squares, "healed", False):
                raise ValueError("flaky")
            return i * i

        def post(self, shared, _, out):
            shared["squares"] = out

    flow = Flow(start=Squares())
    with pytest.raises(ValueError):
        flow.run({}, checkpointer=checkpointer, run_id="s1")
    Squares.healed = True
    assert flow.resume("s1", checkpointer=checkpointer)["squares"] == [0, 1, 4, 9, 16]
    assert seen == [0, 1, 2, 3, 3, 4], "items 0-2 were recorded and not run again"


def test_streams_yield_events_as_they_happen(checkpointer):
    events = list(work_flow([]).stream({}))
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["node_started", "custom", "node_finished"]
    assert [e.value for e in events if e.kind == "custom"] == ["token 0", "token 1", "token 2"]
    assert [e.action for e in events if e.kind == "node_finished"] == ["again", "again", "done"]
    assert all(e.node == "Work" for e in events)
    # With checkpoints too.
    checkpointed = list(work_flow([]).stream({}, checkpointer=checkpointer, run_id="s"))
    assert len(checkpointed) == 9
    assert checkpointer.history("s")[-1].status == "finished"


def test_async_streams_and_errors_at_the_end():
    class Talk(AsyncNode):
        async def exec_async(self, _):
            for token in ["a", "b"]:
                emit(token)
                await asyncio.sleep(0)
            return "ab"

        async def post_async(self, shared, _, said):
            shared["said"] = said

    async def main():
        shared = {}
        values = [e.value async for e in AsyncFlow(start=Talk()).stream_async(shared) if e.kind == "custom"]
        return values, shared

    assert asyncio.run(main()) == (["a", "b"], {"said": "ab"})

    class Boom(Node):
        def exec(self, _):
            raise KeyError("boom")

    stream = Flow(start=Boom()).stream({})
    assert next(stream).kind == "node_started"
    with pytest.raises(KeyError):
        list(stream)


def test_the_step_limit_reads_as_the_engines(checkpointer):
    work = Work([])
    work - "again" >> work
    flow = Flow(start=work, max_steps=2)
    with pytest.raises(FlowError, match="exceeded its step limit of 2"):
        flow.run({}, checkpointer=checkpointer, run_id="l")


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from minllm import Flow, Node, SqliteCheckpointer, Interrupted, interrupt

    db, mode, kill_at, log = sys.argv[1:5]

    def note(line):
        with open(log, "a") as f:
            f.write(line + "\\n")

    class Work(Node):
        def prep(self, shared):
            return shared.get("count", 0)
        def exec(self, k):
            note(f"exec-start {k}")
            if kill_at == f"exec:{k}" and not os.path.exists(log + ".killed"):
                open(log + ".killed", "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            note(f"exec-end {k}")
            return k * 10
        def post(self, shared, k, value):
            if kill_at == f"between:{k}" and not os.path.exists(log + ".killed"):
                open(log + ".killed", "w").close()
                os._exit(9)
            shared.setdefault("values", []).append(value)
            shared["count"] = k + 1
            return "again" if k + 1 < 4 else "done"

    class Ask(Node):
        def exec(self, _):
            return interrupt("ship it?")
        def post(self, shared, _, answer):
            shared["answer"] = answer

    work = Work()
    work - "again" >> work
    work - "done" >> Ask()
    flow = Flow(start=work, max_steps=20)
    cp = SqliteCheckpointer(db)
    try:
        if mode == "run":
            flow.run({}, checkpointer=cp, run_id="job")
            store = None
        elif mode == "resume":
            store = flow.resume("job", checkpointer=cp)
        else:
            store = flow.resume("job", checkpointer=cp, answer=mode)
    except Interrupted as stop:
        print("paused", stop.value)
        sys.exit(3)
    print(store)
    """
)


@pytest.mark.parametrize("kill_at", ["exec:2", "between:2"])
def test_a_killed_process_is_resumed_by_another_without_paying_twice(tmp_path, kill_at):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db, log = str(tmp_path / "runs.db"), str(tmp_path / "calls.log")

    def child(mode):
        return subprocess.run([sys.executable, str(script), db, mode, kill_at, log], capture_output=True, text=True)

    first = child("run")
    assert first.returncode in (-signal.SIGKILL, 9), first.stderr
    paused = child("resume")
    assert paused.returncode == 3 and "ship it?" in paused.stdout, paused.stderr
    done = child("yes")
    assert done.returncode == 0, done.stderr
    assert "'values': [0, 10, 20, 30]" in done.stdout and "'answer': 'yes'" in done.stdout
    lines = open(log).read().split()
    calls = [lines[i + 1] for i in range(0, len(lines), 2) if lines[i] == "exec-end"]
    assert sorted(calls) == ["0", "1", "2", "3"], f"each finished exec ran once: {lines}"


def test_a_second_process_on_the_same_run_is_refused(tmp_path):
    cp = SqliteCheckpointer(tmp_path / "runs.db")
    with pytest.raises(Interrupted):
        work_flow([], ask=True).run({}, checkpointer=cp, run_id="busy")
    held = cp._cp.lock("busy")
    other = SqliteCheckpointer(tmp_path / "runs.db")
    with pytest.raises(CheckpointError, match="another process"):
        work_flow([], ask=True).resume("busy", checkpointer=other, answer="x")
    held.release()
    with pytest.raises(Interrupted):
        work_flow([], ask=True).resume("busy", checkpointer=other, answer="x")
    assert os.path.exists(tmp_path / "runs.db")


def test_a_batch_flow_resumes_at_the_item_that_failed(checkpointer):
    from minllm import BatchFlow

    seen = []

    class Translate(Node):
        def prep(self, shared):
            return self.params["lang"]

        def exec(self, lang):
            seen.append(lang)
            if lang == "fr" and not getattr(Translate, "healed", False):
                raise ConnectionError("the model is down")
            return f"hello in {lang}"

        def post(self, shared, lang, text):
            shared.setdefault("texts", []).append(text)

    class Languages(BatchFlow):
        def prep(self, shared):
            return [{"lang": lang} for lang in ["de", "es", "fr", "it"]]

        def post(self, shared, prep_res, exec_res):
            shared["done"] = len(prep_res)

    flow = Languages(start=Translate())
    with pytest.raises(ConnectionError):
        flow.run({}, checkpointer=checkpointer, run_id="b")
    assert [c.node for c in checkpointer.history("b")] == ["[0] > Translate", "[1] > Translate", "[2] > Translate"]
    Translate.healed = True
    shared = flow.resume("b", checkpointer=checkpointer)
    assert shared["texts"] == ["hello in de", "hello in es", "hello in fr", "hello in it"]
    assert shared["done"] == 4
    assert seen == ["de", "es", "fr", "fr", "it"], "the items before the failure did not run again"


def test_a_flow_subclass_keeps_its_own_prep_and_post_in_a_checkpointed_run(checkpointer):
    class Wrapped(Flow):
        def prep(self, shared):
            shared["before"] = True

        def post(self, shared, prep_res, exec_res):
            shared["after"] = exec_res
            return "wrapped"

    shared = {}
    last = Wrapped(start=work_flow([]).start_node).run(shared, checkpointer=checkpointer, run_id="w")
    assert last == "wrapped"
    assert shared["before"] is True and shared["after"] == "done"


def test_a_parallel_batch_records_each_item_and_streams_what_items_emit(checkpointer):
    import threading

    from minllm import ParallelBatchNode

    calls = []
    lock = threading.Lock()

    class Embed(ParallelBatchNode):
        def prep(self, shared):
            return list(range(10))

        def exec(self, i):
            with lock:
                calls.append(i)
            emit(f"item {i}")
            if i == 6 and not getattr(Embed, "healed", False):
                raise TimeoutError("slow model")
            return i * 2

        def post(self, shared, _, out):
            shared["vectors"] = out

    flow = Flow(start=Embed(max_workers=1))
    with pytest.raises(TimeoutError):
        flow.run({}, checkpointer=checkpointer, run_id="p")
    Embed.healed = True
    assert flow.resume("p", checkpointer=checkpointer)["vectors"] == [i * 2 for i in range(10)]
    assert sorted(calls) == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9], "only the failed item ran again"
    # A stream hears the items, from their threads.
    values = sorted(e.value for e in Flow(start=Embed(max_workers=4)).stream({}) if e.kind == "custom")
    assert values == sorted(f"item {i}" for i in range(10))


def test_a_batch_node_run_alone_takes_the_checkpoint_arguments(checkpointer):
    seen = []

    class Double(BatchNode):
        def prep(self, shared):
            return [1, 2, 3]

        def exec(self, x):
            seen.append(x)
            if x == 3 and not getattr(Double, "healed", False):
                raise ValueError("flaky")
            return 2 * x

        def post(self, shared, _, out):
            shared["out"] = out

    with pytest.raises(ValueError):
        Double().run({}, checkpointer=checkpointer, run_id="alone")
    Double.healed = True
    shared = Flow(start=Double()).resume("alone", checkpointer=checkpointer)
    assert shared["out"] == [2, 4, 6]
    assert seen == [1, 2, 3, 3]

    class Ask(AsyncNode):
        async def exec_async(self, _):
            return interrupt("ok?")

        async def post_async(self, shared, _, answer):
            shared["answer"] = answer

    async def main():
        with pytest.raises(Interrupted):
            await Ask().run_async({}, checkpointer=checkpointer, run_id="ask")
        return await AsyncFlow(start=Ask()).resume_async("ask", checkpointer=checkpointer, answer="yes")

    assert asyncio.run(main()) == {"answer": "yes"}


def test_a_sync_flow_streams_to_an_async_caller():
    async def main():
        shared = {}
        kinds = [e.kind async for e in work_flow([]).stream_async(shared)]
        return kinds, shared

    kinds, shared = asyncio.run(main())
    assert kinds.count("custom") == 3 and kinds[-1] == "node_finished"
    assert shared["count"] == 3


def test_a_flow_with_its_own_orch_runs_as_one_step(checkpointer):
    class Custom(Flow):
        def _orch(self, shared, params=None):
            shared["custom"] = True
            return "mine"

    outer = Flow(start=Custom(start=Work([])))
    shared = {}
    outer.run(shared, checkpointer=checkpointer, run_id="c")
    assert shared == {"custom": True}
    assert [c.node for c in checkpointer.history("c")][0] == "Custom"


def test_values_emitted_by_batch_items_say_which_item():
    from minllm import ParallelBatchNode

    class Shout(ParallelBatchNode):
        def prep(self, shared):
            return list(range(6))

        def exec(self, i):
            emit(i * 10)
            return i

    events = [e for e in Flow(start=Shout(max_workers=3)).stream({}) if e.kind == "custom"]
    assert sorted((e.item, e.value) for e in events) == [(i, i * 10) for i in range(6)]
