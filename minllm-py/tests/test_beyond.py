"""What minllm adds to the original: thread-parallel batches, per-item
cur_retry, step limits, validation, diagrams, SharedStore, Ctrl-C, GC."""

import _thread
import asyncio
import collections.abc
import gc
import sys
import threading
import time
import weakref

import pytest

from minllm import (
    AsyncFlow,
    AsyncNode,
    Flow,
    FlowError,
    Node,
    ParallelBatchFlow,
    ParallelBatchNode,
    SharedStore,
)


# How long a test waits for something that only fails to come when the code
# under test is wrong: far longer than any scheduling delay.
PATIENCE = 10.0


def wait_until(done):
    """Blocks the thread until `done()` holds, or PATIENCE passes."""
    deadline = time.monotonic() + PATIENCE
    while not done() and time.monotonic() < deadline:
        time.sleep(0.001)


class Gauge:
    """Counts what runs at once, on any thread. Whoever arrives before anyone
    has left waits until `target` were inside at once (or PATIENCE passes), so
    that a cap below the target shows as a peak below it and a missing cap as
    a peak above it."""

    def __init__(self, target):
        self.target, self.now, self.peak, self.left = target, 0, 0, 0
        self.lock = threading.Lock()

    def visit(self, hold=0.0):
        """Stays inside until the target was reached, then for `hold` seconds."""
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            first = self.left == 0
        if first:
            wait_until(lambda: self.peak >= self.target)
        time.sleep(hold)
        with self.lock:
            self.now -= 1
            self.left += 1


def test_parallel_batch_node_runs_blocking_execs_on_threads_in_order():
    class Blocking(ParallelBatchNode):
        def prep(self, shared):
            return list(range(16))

        def exec(self, item):
            # Long enough for a ninth item to come in, if it could; later items finish first.
            gauge.visit(hold=0.001 * (20 - item))
            return item * 2

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    gauge = Gauge(8)
    shared = {}
    Blocking(max_workers=8).run(shared)
    assert gauge.peak == 8, "8 items at once on 8 threads"
    assert shared["out"] == [i * 2 for i in range(16)]


def test_the_first_error_keeps_its_type_and_stops_new_items():
    started = []
    release = threading.Event()

    class Counting(ParallelBatchNode):
        def prep(self, shared):
            return list(range(100))

        def exec(self, item):
            started.append(item)
            if item == 0:
                raise ValueError("item 0 failed")
            if item == 1:
                release.wait(PATIENCE)  # in flight, on the other thread, until the run has raised

    try:
        with pytest.raises(ValueError, match="item 0 failed"):
            Counting(max_workers=2).run({})
        # Item 1 may have started beside item 0; no item after them.
        assert set(started) <= {0, 1}, started
    finally:
        release.set()


def test_cur_retry_is_per_item_on_threads():
    class Retrying(ParallelBatchNode):
        def prep(self, shared):
            return list(range(8))

        def exec(self, item):
            seen = self.cur_retry
            time.sleep(0.01 * (8 - item))
            assert self.cur_retry == seen, "another item changed my cur_retry"
            if item % 2 == 0 and seen == 0:
                raise ValueError("retry even items once")
            return (item, seen)

        def post(self, shared, p, e):
            shared["out"] = e

    shared = {}
    Retrying(max_retries=2, max_workers=8).run(shared)
    assert shared["out"] == [(i, 1 if i % 2 == 0 else 0) for i in range(8)]


def test_parallel_batch_flow_runs_inner_flows_on_threads():
    class Work(Node):
        def exec(self, prep_res):
            gauge.visit(hold=0.01)  # long enough for a ninth branch to come in, if it could
            return self.params["i"]

        def post(self, shared, p, e):
            shared.setdefault("done", []).append(e)

    class Fan(ParallelBatchFlow):
        def prep(self, shared):
            return [{"i": i} for i in range(16)]

    gauge = Gauge(8)
    shared = {}
    Fan(start=Work(), max_workers=8).run(shared)
    assert gauge.peak == 8, "8 branches at once on 8 threads"
    assert sorted(shared["done"]) == list(range(16))


class Loop(Node):
    def post(self, shared, p, e):
        shared["n"] = shared.get("n", 0) + 1
        return "again"


def test_max_steps_stops_a_loop_with_a_flow_error():
    a, b = Loop(), Loop()
    a - "again" >> b
    b - "again" >> a
    with pytest.raises(FlowError, match="step limit of 5 steps") as info:
        Flow(start=a, max_steps=5).run({})
    assert isinstance(info.value, RuntimeError)
    assert "Loop -> Loop" in str(info.value)


def test_max_steps_also_bounds_async_flows():
    class ALoop(AsyncNode):
        async def post_async(self, shared, p, e):
            return "again"

    a = ALoop()
    a - "again" >> a
    with pytest.raises(FlowError, match="step limit of 3"):
        asyncio.run(AsyncFlow(start=a, max_steps=3).run_async({}))


def test_validate_reports_cycles_without_a_limit_and_nothing_otherwise():
    class Decide(Node):
        pass

    class Search(Node):
        pass

    class Answer(Node):
        pass

    d, s, a = Decide(), Search(), Answer()
    d - "search" >> s >> d
    d - "answer" >> a
    problems = Flow(start=d).validate()
    assert problems == [
        "flow `Flow` has a cycle Decide -> Search -> Decide and no step limit; set one with `max_steps`"
    ]
    assert Flow(start=d, max_steps=10).validate() == []
    assert Flow().validate() == ["flow `Flow` has no start node"]


def test_problems_say_their_kind_flow_and_node_and_read_as_their_message():
    import pickle

    from minllm import Problem

    class Decide(Node):
        pass

    class Orphan(Node):
        pass

    d = Decide()
    d - "again" >> d
    outer = Flow(start=Flow(start=d))
    [cycle] = outer.validate()
    assert isinstance(cycle, Problem) and isinstance(cycle, str)
    assert (cycle.kind, cycle.flow, cycle.node) == ("unbounded_cycle", "Flow > Flow", "Decide")
    assert str(cycle) == "flow `Flow > Flow` has a cycle Decide -> Decide and no step limit; set one with `max_steps`"
    assert "cycle" in cycle and cycle.startswith("flow `Flow > Flow`")
    assert pickle.loads(pickle.dumps(cycle)).kind == "unbounded_cycle"
    assert "kind='unbounded_cycle'" in repr(cycle)

    [setting] = Flow(start=Orphan(), max_steps=5).validate() or [None]  # a valid flow: nothing
    assert setting is None
    flow = Flow(start=Orphan())
    flow.max_steps = -1  # set after the constructor, which would refuse it
    [bad] = flow.validate()
    assert (bad.kind, bad.flow, bad.node) == ("bad_setting", "Flow", None)
    assert [p.kind for p in Flow().validate()] == ["no_start"]


def test_to_mermaid_shows_class_names_and_actions():
    class Decide(Node):
        pass

    class Answer(Node):
        pass

    d, a = Decide(), Answer()
    d - 'say "hi"' >> a
    inner = Flow(start=Answer())
    a >> inner
    chart = Flow(start=d).to_mermaid()
    assert chart.startswith("flowchart TD\n")
    assert 'n0["Decide"]' in chart
    assert 'n0 -->|"say #quot;hi#quot;"| n1' in chart
    assert 'subgraph n2 ["Flow"]' in chart


def test_shared_store_is_a_mapping_usable_as_shared():
    store = SharedStore({"a": 1}, b=2)
    assert isinstance(store, collections.abc.MutableMapping)
    store["c"] = 3
    store.set("d", 4)
    assert store["a"] == 1 and store.get("zz") is None and store.get("zz", 5) == 5
    assert "c" in store and len(store) == 4
    assert sorted(store.keys()) == ["a", "b", "c", "d"] and sorted(store) == ["a", "b", "c", "d"]
    assert {**store} == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert store.pop("d") == 4 and store.setdefault("e", []) == []
    del store["e"]
    with pytest.raises(KeyError):
        store["nope"]
    assert store == {"a": 1, "b": 2, "c": 3}

    class Count(Node):
        def post(self, shared, p, e):
            shared["count"] = shared.get("count", 0) + 1

    Flow(start=Count()).run(store)
    assert store["count"] == 1


def test_ctrl_c_stops_a_parallel_batch_without_waiting_for_its_items():
    started, finished = [], []
    release = threading.Event()
    lock = threading.Lock()

    class Slow(ParallelBatchNode):
        def prep(self, shared):
            return list(range(8))

        def exec(self, item):
            with lock:
                started.append(item)
                if len(started) == 4:
                    _thread.interrupt_main()  # Ctrl-C, with 4 items in flight
            release.wait(PATIENCE)  # until the run has stopped
            finished.append(item)

    try:
        with pytest.raises(KeyboardInterrupt):
            Slow(max_workers=4).run({})
        assert finished == [], "the run waited for items in flight"
    finally:
        release.set()
    wait_until(lambda: len(finished) == len(started))
    assert sorted(started) == [0, 1, 2, 3], "items started after Ctrl-C"


def test_ctrl_c_stops_a_long_running_flow():
    steps = []

    class Spin(Node):
        def post(self, shared, p, e):
            steps.append(1)
            if len(steps) == 1000:
                _thread.interrupt_main()  # Ctrl-C, in the middle of the run
            return "again"

    a = Spin()
    a - "again" >> a
    with pytest.raises(KeyboardInterrupt):
        Flow(start=a, max_steps=1_000_000).run({})
    assert len(steps) == 1000, "steps ran after Ctrl-C"


def test_ctrl_c_stops_a_retry_wait():
    attempts = []

    class Down(Node):
        def exec(self, prep_res):
            attempts.append(self.cur_retry)
            raise ConnectionError("down")

        def exec_fallback(self, prep_res, exc):
            attempts.append("fallback")
            raise exc

    main = threading.get_ident()

    def ctrl_c_in_the_wait():
        # Once the first attempt has failed and left `exec`, the main thread waits.
        wait_until(lambda: attempts and sys._current_frames()[main].f_code is not Down.exec.__code__)
        _thread.interrupt_main()

    threading.Thread(target=ctrl_c_in_the_wait).start()
    node = Down(max_retries=3, wait=PATIENCE)
    with pytest.raises(KeyboardInterrupt):
        node.run({})
    # Had the wait not stopped, the second attempt would have begun (cur_retry 1)
    # before the interrupt surfaced.
    assert (attempts, node.cur_retry) == ([0], 0)


def test_cyclic_graphs_are_garbage_collected():
    gc.collect()

    class Step(Node):
        pass

    a, b = Step(), Step()
    a - "go" >> b
    b - "back" >> a
    flow = Flow(start=a)
    flow.params["self"] = flow
    refs = [weakref.ref(x) for x in (a, b, flow)]
    del a, b, flow
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
