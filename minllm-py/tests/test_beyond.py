"""What minllm adds to the original: thread-parallel batches, per-item
cur_retry, step limits, validation, diagrams, SharedStore, Ctrl-C, GC."""

import _thread
import asyncio
import collections.abc
import gc
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


class Blocking(ParallelBatchNode):
    def prep(self, shared):
        return shared["items"]

    def exec(self, item):
        time.sleep(0.05)
        if item == shared_failure.get("item"):
            raise ValueError(f"item {item} failed")
        return item * 2

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


shared_failure: dict = {}


def test_parallel_batch_node_runs_blocking_execs_on_threads_in_order():
    shared_failure.clear()
    shared = {"items": list(range(16))}
    start = time.perf_counter()
    Blocking(max_workers=8).run(shared)
    took = time.perf_counter() - start
    assert shared["out"] == [i * 2 for i in range(16)]
    assert took < 0.4, f"16 x 50 ms on 8 threads took {took:.2f}s"


def test_the_first_error_keeps_its_type_and_stops_new_items():
    shared_failure["item"] = 3
    started = []

    class Counting(Blocking):
        def exec(self, item):
            started.append(item)
            return super().exec(item)

    try:
        with pytest.raises(ValueError, match="item 3 failed"):
            Counting(max_workers=2).run({"items": list(range(100))})
    finally:
        shared_failure.clear()
    time.sleep(0.2)  # let the workers finish the items they had started
    assert len(started) < 20, started


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
            time.sleep(0.05)
            return self.params["i"]

        def post(self, shared, p, e):
            shared.setdefault("done", []).append(e)

    class Fan(ParallelBatchFlow):
        def prep(self, shared):
            return [{"i": i} for i in range(8)]

    shared = {}
    start = time.perf_counter()
    Fan(start=Work(), max_workers=8).run(shared)
    assert time.perf_counter() - start < 0.3
    assert sorted(shared["done"]) == list(range(8))


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


def interrupt_after(seconds):
    threading.Timer(seconds, _thread.interrupt_main).start()


def test_ctrl_c_stops_a_parallel_batch_within_a_second():
    class Slow(ParallelBatchNode):
        def prep(self, shared):
            return list(range(8))

        def exec(self, item):
            time.sleep(3)

    interrupt_after(0.3)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        Slow(max_workers=4).run({})
    assert time.perf_counter() - start < 1.3


def test_ctrl_c_stops_a_long_running_flow():
    class Spin(Node):
        def post(self, shared, p, e):
            return "again"

    a = Spin()
    a - "again" >> a
    interrupt_after(0.3)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        Flow(start=a).run({})
    assert time.perf_counter() - start < 1.3


def test_ctrl_c_stops_a_retry_wait():
    class Down(Node):
        def exec(self, prep_res):
            raise ConnectionError("down")

    interrupt_after(0.2)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        Down(max_retries=3, wait=10).run({})
    assert time.perf_counter() - start < 1.2


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
