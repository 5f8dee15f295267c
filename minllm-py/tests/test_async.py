"""Async nodes and flows: coroutines, concurrency, sync nodes inside async flows."""

import asyncio
import time
import warnings

import pytest

from minllm import (
    AsyncBatchFlow,
    AsyncBatchNode,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    Flow,
    Node,
)


class Sleepy(AsyncNode):
    def __init__(self, name, seconds=0.0, action=None):
        super().__init__()
        self.name, self.seconds, self.action = name, seconds, action

    async def exec_async(self, prep_res):
        await asyncio.sleep(self.seconds)
        return self.name

    async def post_async(self, shared, prep_res, exec_res):
        shared.setdefault("trace", []).append(exec_res)
        return self.action


def test_run_async_returns_a_coroutine_that_asyncio_run_accepts():
    coro = Sleepy("a").run_async({})
    assert asyncio.iscoroutine(coro)
    shared = {}
    asyncio.run(Sleepy("a").run_async(shared))
    assert shared == {"trace": ["a"]}
    coro.close()


def test_an_async_flow_follows_actions_and_returns_the_last():
    a, b, c = Sleepy("a", action="go"), Sleepy("b"), Sleepy("c", action="end")
    a - "go" >> b >> c
    shared = {}
    assert asyncio.run(AsyncFlow(start=a).run_async(shared)) == "end"
    assert shared["trace"] == ["a", "b", "c"]


def test_sync_nodes_run_inside_async_flows():
    class Sync(Node):
        def post(self, shared, p, e):
            shared.setdefault("trace", []).append("sync")

    s = Sync()
    s >> Sleepy("async")
    shared = {}
    asyncio.run(AsyncFlow(start=s).run_async(shared))
    assert shared["trace"] == ["sync", "async"]


def test_a_sync_run_of_an_async_node_raises():
    node = Sleepy("a")
    node >> Sleepy("b")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="Use run_async."):
            node.run({})
    assert [str(x.message) for x in w] == ["Node won't run successors. Use Flow."]
    with pytest.raises(RuntimeError, match="Use run_async."):
        Flow(start=Sleepy("a")).run({})


def test_run_async_warns_when_the_node_has_successors():
    node = Sleepy("a")
    node >> Sleepy("b")
    with pytest.warns(UserWarning, match="Node won't run successors. Use AsyncFlow."):
        asyncio.run(node.run_async({}))


def test_an_async_flow_of_sync_nodes_also_runs_with_run():
    class Sync(Node):
        def post(self, shared, p, e):
            shared["ran"] = True

    shared = {}
    AsyncFlow(start=Sync()).run(shared)
    assert shared == {"ran": True}


def test_async_retries_and_fallback():
    class Flaky(AsyncNode):
        async def exec_async(self, prep_res):
            raise ValueError("down")

        async def exec_fallback_async(self, prep_res, exc):
            return f"fallback: {exc}"

        async def post_async(self, shared, p, e):
            shared["result"] = e

    shared = {}
    start = time.perf_counter()
    asyncio.run(Flaky(max_retries=3, wait=0.05).run_async(shared))
    assert shared["result"] == "fallback: down"
    assert 0.09 < time.perf_counter() - start < 1.0


def test_async_exceptions_keep_their_type():
    class Boom(AsyncNode):
        async def exec_async(self, prep_res):
            raise KeyError("missing")

    with pytest.raises(KeyError):
        asyncio.run(AsyncFlow(start=Boom()).run_async({}))


class Items(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return shared["items"]

    async def exec_async(self, item):
        await asyncio.sleep(item)
        return (item, self.cur_retry)

    async def post_async(self, shared, p, e):
        shared["out"] = e


def test_parallel_batch_items_run_concurrently_in_order():
    shared = {"items": [0.1, 0.05, 0.1, 0.1, 0.05]}
    start = time.perf_counter()
    asyncio.run(Items().run_async(shared))
    took = time.perf_counter() - start
    assert took < 0.25, took
    assert [x for x, _ in shared["out"]] == shared["items"]


def test_cur_retry_is_per_item_when_items_run_concurrently():
    class Retrying(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(6))

        async def exec_async(self, item):
            seen = self.cur_retry
            await asyncio.sleep(0.01 * (6 - item))
            if self.cur_retry != seen:
                raise AssertionError("another item changed my cur_retry")
            if item % 2 == 0 and seen == 0:
                raise ValueError("retry even items once")
            return (item, seen)

        async def post_async(self, shared, p, e):
            shared["out"] = e

    shared = {}
    asyncio.run(Retrying(max_retries=2).run_async(shared))
    assert shared["out"] == [(0, 1), (1, 0), (2, 1), (3, 0), (4, 1), (5, 0)]


def test_sequential_async_batch_awaits_items_in_turn():
    class Seq(AsyncBatchNode):
        async def prep_async(self, shared):
            return [3, 1, 2]

        async def exec_async(self, item):
            await asyncio.sleep(0.01 * item)
            return item

        async def post_async(self, shared, p, e):
            shared["out"] = e

    shared = {}
    asyncio.run(Seq().run_async(shared))
    assert shared["out"] == [3, 1, 2]


class Tag(AsyncNode):
    async def prep_async(self, shared):
        return self.params["i"]

    async def exec_async(self, i):
        await asyncio.sleep(0.1)
        return i

    async def post_async(self, shared, p, e):
        shared.setdefault("done", []).append(e)


def test_async_parallel_batch_flow_runs_branches_concurrently():
    class Fan(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"i": i} for i in range(5)]

    shared = {}
    start = time.perf_counter()
    assert asyncio.run(Fan(start=Tag()).run_async(shared)) is None
    assert time.perf_counter() - start < 0.3
    assert sorted(shared["done"]) == [0, 1, 2, 3, 4]


def test_async_batch_flow_runs_branches_in_turn():
    class Seq(AsyncBatchFlow):
        async def prep_async(self, shared):
            return [{"i": i} for i in range(3)]

    shared = {}
    asyncio.run(Seq(start=Tag()).run_async(shared))
    assert shared["done"] == [0, 1, 2]


def test_nested_async_flows():
    inner = AsyncFlow(start=Sleepy("inner", action="inner_end"))
    after = Sleepy("after")
    inner - "inner_end" >> after
    shared = {}
    asyncio.run(AsyncFlow(start=inner).run_async(shared))
    assert shared["trace"] == ["inner", "after"]


def test_a_flow_can_be_cancelled():
    async def main():
        task = asyncio.ensure_future(AsyncFlow(start=Sleepy("slow", 5.0)).run_async({}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    start = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - start < 1.0
