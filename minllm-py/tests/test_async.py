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


# How long a test waits for something that only fails to come when the code
# under test is wrong: far longer than any scheduling delay.
PATIENCE = 10.0


async def wait_until(done):
    """Waits on the event loop until `done()` holds, or PATIENCE passes."""
    deadline = time.monotonic() + PATIENCE
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


class Gauge:
    """Counts what runs at once. Whoever arrives before anyone has left waits
    until `target` were inside at once (or PATIENCE passes), so that a cap below
    the target shows as a peak below it and a missing cap as a peak above it."""

    def __init__(self, target):
        self.target, self.now, self.peak, self.left = target, 0, 0, 0

    async def visit(self, hold=0.0):
        """Stays inside until the target was reached, then for `hold` seconds."""
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0)  # let the others in, if they run at the same time
        if self.left == 0:
            await wait_until(lambda: self.peak >= self.target)
        await asyncio.sleep(hold)
        self.now -= 1
        self.left += 1


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


def test_async_retries_wait_and_fall_back():
    attempts = []

    class Flaky(AsyncNode):
        async def exec_async(self, prep_res):
            attempts.append((self.cur_retry, time.monotonic()))
            raise ValueError("down")

        async def exec_fallback_async(self, prep_res, exc):
            return f"fallback: {exc}"

        async def post_async(self, shared, p, e):
            shared["result"] = e

    shared = {}
    asyncio.run(Flaky(max_retries=3, wait=0.05).run_async(shared))
    assert shared["result"] == "fallback: down"
    assert [n for n, _ in attempts] == [0, 1, 2]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:])]
    assert all(gap >= 0.05 for gap in gaps), f"a retry came before the wait of 0.05 s: {gaps}"


def test_async_exceptions_keep_their_type():
    class Boom(AsyncNode):
        async def exec_async(self, prep_res):
            raise KeyError("missing")

    with pytest.raises(KeyError):
        asyncio.run(AsyncFlow(start=Boom()).run_async({}))


class Items(AsyncParallelBatchNode):
    """Items 0 to count-1, each visiting the gauge; later items finish first,
    so the order of the results is the batch's doing."""

    def __init__(self, count, gauge):
        super().__init__()
        self.count, self.gauge = count, gauge

    async def prep_async(self, shared):
        return list(range(self.count))

    async def exec_async(self, item):
        await self.gauge.visit()
        for _ in range(self.count - item):
            await asyncio.sleep(0)
        return item * 10

    async def post_async(self, shared, p, e):
        shared["out"] = e


def test_parallel_batch_items_run_concurrently_in_order():
    node = Items(5, Gauge(5))
    shared = {}
    asyncio.run(node.run_async(shared))
    assert node.gauge.peak == 5, "the 5 items run at once"
    assert shared["out"] == [0, 10, 20, 30, 40]


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
    """Records its param `i` after a visit to the gauge."""

    def __init__(self, gauge, hold=0.0):
        super().__init__()
        self.gauge, self.hold = gauge, hold

    async def prep_async(self, shared):
        return self.params["i"]

    async def exec_async(self, i):
        await self.gauge.visit(self.hold)
        return i

    async def post_async(self, shared, p, e):
        shared.setdefault("done", []).append(e)


def test_async_parallel_batch_flow_runs_branches_concurrently():
    class Fan(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"i": i} for i in range(5)]

    gauge = Gauge(5)
    shared = {}
    assert asyncio.run(Fan(start=Tag(gauge)).run_async(shared)) is None
    assert gauge.peak == 5, "the 5 branches run at once"
    assert sorted(shared["done"]) == [0, 1, 2, 3, 4]


def test_async_batch_flow_runs_branches_in_turn():
    class Seq(AsyncBatchFlow):
        async def prep_async(self, shared):
            return [{"i": i} for i in range(3)]

    # Each branch holds long enough for the next to start beside it, if it could.
    gauge = Gauge(1)
    shared = {}
    asyncio.run(Seq(start=Tag(gauge, hold=0.02)).run_async(shared))
    assert shared["done"] == [0, 1, 2]
    assert gauge.peak == 1, "two branches ran at once"


def test_nested_async_flows():
    inner = AsyncFlow(start=Sleepy("inner", action="inner_end"))
    after = Sleepy("after")
    inner - "inner_end" >> after
    shared = {}
    asyncio.run(AsyncFlow(start=inner).run_async(shared))
    assert shared["trace"] == ["inner", "after"]


def test_a_flow_can_be_cancelled():
    seen = []

    class Endless(AsyncNode):
        async def exec_async(self, prep_res):
            seen.append("started")
            try:
                await asyncio.sleep(PATIENCE)  # ended early by the cancellation only
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            seen.append("finished")

    class After(AsyncNode):
        async def prep_async(self, shared):
            seen.append("after")

    endless = Endless()
    endless >> After()

    async def main():
        task = asyncio.ensure_future(AsyncFlow(start=endless).run_async({}))
        await wait_until(lambda: seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The node in flight got the cancellation before the flow ended, and nothing ran after it.
        assert seen == ["started", "cancelled"]

    asyncio.run(main())


def test_the_async_tests_pass_on_python_3_9s_await_path():
    """Python 3.9 has no `PyIter_Send`: the engine steps coroutines with their
    `send` method there. `MINLLM_PORTABLE_AWAIT` takes that path on this
    interpreter; this file's other tests must pass on it too."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MINLLM_PORTABLE_AWAIT="1")
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not python_3_9s"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert " passed" in child.stdout and "failed" not in child.stdout, child.stdout
