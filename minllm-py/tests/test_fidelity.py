"""Finer points of fidelity to the original: state in __dict__, copies and
pickling, overridable internals, fallbacks inside `except`, coroutine protocol."""

import asyncio
import copy
import pickle
import sys
import warnings

import pytest

import minllm
from minllm import AsyncNode, BatchNode, Flow, Node


class Plain(Node):
    def post(self, shared, p, e):
        shared.setdefault("trace", []).append(type(self).__name__)


class Other(Plain):
    pass


def test_state_lives_in_the_instance_dict():
    assert vars(Node()) == {"params": {}, "successors": {}, "max_retries": 1, "wait": 0}
    assert vars(Flow()) == {"params": {}, "successors": {}, "start_node": None, "max_steps": None}


def test_nodes_and_flows_pickle_and_deepcopy():
    a = Node(max_retries=3)
    a >> Node()
    flow = Flow(start=a)
    for clone in (copy.deepcopy(flow), pickle.loads(pickle.dumps(flow))):
        assert clone.start_node.max_retries == 3
        assert list(clone.start_node.successors) == ["default"]
        assert clone.start_node is not a


def test_copies_honour_getstate():
    class WithState(Node):
        def __getstate__(self):
            state = dict(self.__dict__)
            state["client"] = "fresh"
            return state

        def post(self, shared, p, e):
            shared["client"] = self.client

    node = WithState()
    node.client = "original"
    shared = {}
    Flow(start=node).run(shared)
    assert shared == {"client": "fresh"}


def test_an_overridden_get_next_node_is_used():
    class Router(Flow):
        def get_next_node(self, curr, action):
            return other if isinstance(curr, Plain) and not isinstance(curr, Other) else None

    other = Other()
    shared = {}
    Router(start=Plain()).run(shared)
    assert shared["trace"] == ["Plain", "Other"]


def test_fallback_runs_as_inside_except():
    seen = {}

    class Failing(Node):
        def exec(self, prep_res):
            raise ValueError("down")

        def exec_fallback(self, prep_res, exc):
            seen["exc_info"] = sys.exc_info()[1]
            raise RuntimeError("fallback failed too")

    with pytest.raises(RuntimeError) as info:
        Failing().run({})
    assert isinstance(seen["exc_info"], ValueError)
    assert isinstance(info.value.__context__, ValueError)


def test_batch_items_go_through_the_exec_method_chain():
    calls = []

    class Traced(Node):
        def _exec(self, prep_res):
            calls.append(prep_res)
            return super()._exec(prep_res)

    class Tens(BatchNode, Traced):
        def prep(self, shared):
            return [1, 2]

        def exec(self, item):
            return item * 10

        def post(self, shared, p, e):
            shared["out"] = e

    shared = {}
    Tens().run(shared)
    assert calls == [1, 2] and shared["out"] == [10, 20]


def test_retry_policy_is_read_as_it_changes():
    class Backoff(Node):
        def __init__(self):
            super().__init__(max_retries=5)

        def exec(self, prep_res):
            if self.cur_retry == 1:
                self.max_retries = 2
            raise ValueError(self.cur_retry)

        def exec_fallback(self, prep_res, exc):
            return f"gave up after {exc}"

        def post(self, shared, p, e):
            shared["result"] = e

    shared = {}
    Backoff().run(shared)
    assert shared["result"] == "gave up after 1"
    assert Node(wait=None).run({}) is None, "wait is only read after a failure"


def test_a_task_cancelled_before_it_starts_is_cancelled():
    ran = []

    class Work(AsyncNode):
        async def exec_async(self, prep_res):
            ran.append(1)

    async def main():
        task = asyncio.ensure_future(minllm.AsyncFlow(start=Work()).run_async({}))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ran == []


def test_awaiting_a_non_awaitable_is_a_type_error():
    class Sync(AsyncNode):
        def prep_async(self, shared):  # forgot `async`
            return {}

    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        asyncio.run(Sync().run_async({}))


def test_next_stores_any_action_key():
    a, b = Node(), Node()
    assert a.next(b, None) is b
    assert list(a.successors) == [None]


def test_star_import_gives_what_the_original_gives():
    namespace = {}
    exec("from minllm import *", namespace)
    for name in ("Node", "Flow", "AsyncFlow", "asyncio", "warnings", "copy", "time"):
        assert name in namespace, name


def test_warnings_come_from_one_place():
    a = Plain()
    a - "x" >> Node()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Flow(start=a).run({})
    assert w[0].filename.endswith("minllm/__init__.py"), w[0].filename
