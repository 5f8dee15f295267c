"""No input crashes, hangs or leaks: deep nesting, bad settings, copies of the
store, the step-limit report, threads deep in hooks.

Cases that crashed the interpreter run in a child process, so that a crash
fails the test (by its return code) instead of killing pytest."""

import _thread
import asyncio
import copy
import gc
import pickle
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

from minllm import (
    AsyncBatchFlow,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    BatchFlow,
    Flow,
    FlowError,
    Node,
    ParallelBatchFlow,
    ParallelBatchNode,
    SharedStore,
)

# ---- deep nesting --------------------------------------------------------

# Builds `f = Flow(start=f)` DEPTH times around a counting node and runs it
# under sys.setrecursionlimit(LIMIT); prints "ok N" or "RecursionError".
NESTING = textwrap.dedent(
    """
    import asyncio, sys
    import minllm as m

    KIND, DEPTH, LIMIT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.setrecursionlimit(LIMIT)

    class Leaf(m.Node):
        def post(self, shared, p, e):
            shared["n"] = shared.get("n", 0) + 1

    class AsyncLeaf(m.AsyncNode):
        async def post_async(self, shared, p, e):
            await asyncio.sleep(0)
            shared["n"] = shared.get("n", 0) + 1

    class OwnRun(m.Flow):
        def _run(self, shared):
            return super()._run(shared)

    class OwnOrch(m.Flow):
        def _orch(self, shared, params=None):
            return super()._orch(shared, params)

    class OwnRunAsync(m.AsyncFlow):
        async def _run_async(self, shared):
            return await super()._run_async(shared)

    class OwnOrchAsync(m.AsyncFlow):
        async def _orch_async(self, shared, params=None):
            return await super()._orch_async(shared, params)

    class Batch(m.BatchFlow):
        def prep(self, shared):
            return [{"i": 0}]

    class AsyncBatch(m.AsyncBatchFlow):
        async def prep_async(self, shared):
            return [{"i": 0}]

    flow_class, leaf = {
        "sync": (m.Flow, Leaf),
        "batch": (Batch, Leaf),
        "own_run": (OwnRun, Leaf),
        "own_orch": (OwnOrch, Leaf),
        "async": (m.AsyncFlow, AsyncLeaf),
        "async_batch": (AsyncBatch, AsyncLeaf),
        "own_run_async": (OwnRunAsync, AsyncLeaf),
        "own_orch_async": (OwnOrchAsync, AsyncLeaf),
    }[KIND]
    f = flow_class(start=leaf())
    for _ in range(DEPTH):
        f = flow_class(start=f)
    shared = {}
    try:
        if isinstance(f, m.AsyncFlow):
            asyncio.run(f.run_async(shared))
        else:
            f.run(shared)
    except RecursionError as e:
        print("RecursionError", e)
    else:
        print("ok", shared["n"])
    """
)


def nested_run(kind, depth, limit):
    """The child's last line of output; fails the test if the child crashed."""
    child = subprocess.run(
        [sys.executable, "-c", NESTING, kind, str(depth), str(limit)], capture_output=True, text=True
    )
    assert child.returncode == 0, f"{kind} at depth {depth} ended with {child.returncode}: {child.stderr[-2000:]}"
    return child.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", ["sync", "batch", "async", "async_batch"])
def test_flows_nested_far_past_the_old_crash_depth_run(kind):
    # The old engine crashed at about 4,400 levels (sync) and 2,150 (async).
    assert nested_run(kind, 30_000, 100_000) == "ok 1"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("limit", [1000, 5000])
def test_nesting_counts_against_the_recursion_limit_as_in_the_original(kind, limit):
    # The original takes two Python frames per level (`_run` and `_orch`), so
    # it runs about (limit - 10) / 2 levels and raises RecursionError past that.
    assert nested_run(kind, (limit - 40) // 2, limit) == "ok 1"
    assert nested_run(kind, (limit + 10) // 2, limit).startswith("RecursionError")


@pytest.mark.parametrize("kind", ["sync", "batch", "async", "async_batch"])
def test_nesting_past_the_limit_raises_recursion_error_not_a_crash(kind):
    out = nested_run(kind, 50_000, 1000)
    assert out.startswith("RecursionError maximum recursion depth exceeded"), out


@pytest.mark.parametrize("kind", ["own_run", "own_orch", "own_run_async", "own_orch_async"])
def test_overridden_internals_recurse_natively_and_stop_before_the_stack_ends(kind):
    # Even with no recursion limit to speak of, the native stack is guarded.
    out = nested_run(kind, 60_000, 10_000_000)
    assert out.startswith("RecursionError maximum recursion depth exceeded"), out
    assert nested_run(kind, 200, 1000) == "ok 1"


def test_a_recursion_error_leaves_nothing_behind_for_the_next_run():
    script = textwrap.dedent(
        """
        import sys
        import minllm as m
        sys.setrecursionlimit(1000)

        def nest(depth):
            f = m.Flow(start=m.Node())
            for _ in range(depth):
                f = m.Flow(start=f)
            return f

        for _ in range(3):
            try:
                nest(5000).run({})
            except RecursionError:
                pass
            else:
                raise SystemExit("5000 levels ran under a limit of 1000")
        nest(400).run({})
        print("ok")
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (child.returncode, child.stdout.strip()) == (0, "ok"), child.stderr[-2000:]


def test_concurrent_async_runs_do_not_add_up_their_nesting():
    # Two runs nested 300 deep interleave on one thread; each alone is within
    # the limit of 1000 (as in the original, where each task has its own stack).
    script = textwrap.dedent(
        """
        import asyncio, sys
        import minllm as m
        sys.setrecursionlimit(1000)

        class Leaf(m.AsyncNode):
            async def exec_async(self, prep_res):
                for _ in range(5):
                    await asyncio.sleep(0)

            async def post_async(self, shared, p, e):
                shared["n"] = shared.get("n", 0) + 1

        def nest(depth):
            f = m.AsyncFlow(start=Leaf())
            for _ in range(depth):
                f = m.AsyncFlow(start=f)
            return f

        async def main():
            shared = {}
            await asyncio.gather(nest(300).run_async(shared), nest(300).run_async(shared))
            print("ok", shared["n"])

        asyncio.run(main())
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (child.returncode, child.stdout.strip()) == (0, "ok 2"), child.stderr[-2000:]


class Step(Node):
    def prep(self, shared):
        shared["trace"].append(("prep", type(self).__name__, dict(self.params)))

    def post(self, shared, p, e):
        return self.params.get("act")


class A(Step):
    pass


class B(Step):
    pass


def test_nested_flows_run_in_place_as_the_original_runs_them():
    trace = []

    class Inner(BatchFlow):
        def prep(self, shared):
            trace.append(("inner prep", dict(self.params)))
            return [{"k": 1}, {"k": 2, "act": "x"}]

        def post(self, shared, prep_res, exec_res):
            trace.append(("inner post", prep_res, exec_res))
            return "done"

    class Mid(Flow):
        def prep(self, shared):
            trace.append(("mid prep", dict(self.params)))
            return "mid"

        def post(self, shared, prep_res, exec_res):
            trace.append(("mid post", prep_res, exec_res))
            return exec_res

    class Watching(Flow):
        def get_next_node(self, curr, action):
            trace.append(("next", type(curr).__name__, action))
            return super().get_next_node(curr, action)

    inner = Inner(start=A())
    inner - "done" >> B()
    outer = Flow(start=Watching(start=Mid(start=inner)))
    outer.params = {"top": 1}
    shared = {"trace": trace}
    assert outer.run(shared) is None
    assert trace == [
        ("mid prep", {"top": 1}),
        ("inner prep", {"top": 1}),
        ("prep", "A", {"top": 1, "k": 1}),
        ("prep", "A", {"top": 1, "k": 2, "act": "x"}),
        ("inner post", [{"k": 1}, {"k": 2, "act": "x"}], None),
        ("prep", "B", {"top": 1}),
        ("mid post", "mid", None),
        ("next", "Mid", None),
    ]


def test_nested_async_flows_run_in_place_as_the_original_runs_them():
    trace = []

    class Leaf(AsyncNode):
        async def prep_async(self, shared):
            trace.append(("prep", dict(self.params)))

    class Inner(AsyncBatchFlow):
        async def prep_async(self, shared):
            return [{"k": 1}, {"k": 2}]

        async def post_async(self, shared, prep_res, exec_res):
            trace.append(("inner post", prep_res, exec_res))
            return "fin"

    class Mid(AsyncFlow):
        async def post_async(self, shared, prep_res, exec_res):
            trace.append(("mid post", exec_res))
            return "mid done"

    inner = Inner(start=Leaf())
    inner - "fin" >> Flow(start=A())  # a sync flow inside, run by the sync engine
    outer = AsyncFlow(start=Mid(start=inner))
    outer.params = {"top": 2}
    assert asyncio.run(outer.run_async({"trace": trace})) == "mid done"
    assert trace == [
        ("prep", {"top": 2, "k": 1}),
        ("prep", {"top": 2, "k": 2}),
        ("inner post", [{"k": 1}, {"k": 2}], None),
        ("prep", "A", {"top": 2}),
        ("mid post", None),
    ]


@pytest.mark.filterwarnings("ignore:Flow ends")
def test_each_nested_pass_counts_its_own_steps():
    class Thrice(Node):
        def post(self, shared, p, e):
            shared["n"] = shared.get("n", 0) + 1
            return "again" if shared["n"] % 3 else None

    def inner():
        loop = Thrice()
        loop - "again" >> loop
        return Flow(start=loop, max_steps=3)

    first = inner()
    first >> inner()
    shared = {}
    Flow(start=first, max_steps=2).run(shared)
    assert shared["n"] == 6
    first = inner()
    first >> inner()
    with pytest.raises(FlowError) as info:
        Flow(start=first, max_steps=1).run({})
    assert str(info.value) == "flow `Flow` exceeded its step limit of 1 steps; last steps: Flow"


# ---- validate() and to_mermaid() -----------------------------------------


class Ask(Node):
    pass


class Answer(Node):
    pass


def test_validate_reports_what_is_not_a_node_by_its_repr():
    ask = Ask()
    ask >> Answer()
    ask - "five" >> 5
    ask - "none" >> None
    assert Flow(start=ask).validate() == [
        "flow `Flow`: the successor of `Ask` for action `five` is `5`, and `5` is not a node",
        "flow `Flow`: the successor of `Ask` for action `none` is `None`, and `None` is not a node",
    ]
    assert Flow(start="x").validate() == ["flow `Flow`: its start is `'x'`, and `'x'` is not a node"]
    assert Flow().validate() == ["flow `Flow` has no start node"]


def test_to_mermaid_draws_every_edge_including_those_to_what_is_not_a_node():
    ask = Ask()
    ask >> Answer()
    ask - "five" >> 5
    chart = Flow(start=ask).to_mermaid()
    assert 'n0 --> n1' in chart
    assert 'n0 -.->|"five"| x0["5: not a node"]' in chart


def test_validate_reports_a_flow_that_contains_itself():
    loop = Flow()
    loop.start(loop)
    assert loop.validate() == [
        "flow `Flow`: node `Flow` is the flow `Flow`, which contains it; a flow that contains itself never ends"
    ]
    outer = Flow(start=Ask())
    inner = Flow(start=outer)
    outer.start_node >> inner
    problems = outer.validate()
    assert problems == [
        "flow `Flow > Flow`: node `Flow` is the flow `Flow`, which contains it; a flow that contains itself never ends"
    ]
    assert "drawn once" in outer.to_mermaid()


def test_a_flow_used_twice_is_built_and_drawn_once():
    shared = Flow(start=Ask())
    shared.start_node >> Answer()
    first, second = Flow(start=shared), Flow(start=shared)
    first >> second
    outer = Flow(start=first)
    chart = outer.to_mermaid()
    assert chart.count('["Ask"]') == 1 and chart.count('["Answer"]') == 1
    assert outer.validate() == []


def test_validate_reports_settings_a_run_would_refuse():
    flow = Flow(start=ParallelBatchNode())
    flow.max_steps = "x"
    flow.start_node.max_workers = 0
    assert flow.validate() == [
        "flow `Flow`: Flow.max_steps must be an int or None (no limit), not str: 'x'",
        "flow `Flow`: node `ParallelBatchNode`: ParallelBatchNode.max_workers must be 1 or more, "
        "or None (one thread per item, up to 32), not 0",
    ]


def test_validate_reports_async_nodes_that_a_sync_run_would_refuse():
    class Fetch(AsyncNode):
        pass

    refused = (
        'an async node in a flow run synchronously raises "Use run_async."; '
        "it needs an AsyncFlow, nested only in AsyncFlows"
    )
    assert Flow(start=Fetch()).validate() == [f"flow `Flow`: node `Fetch`: {refused}"]
    # A sync flow runs a nested AsyncFlow with `_run`, so its async nodes fail too.
    assert AsyncFlow(start=Flow(start=AsyncFlow(start=Fetch()))).validate() == [
        f"flow `AsyncFlow > Flow > AsyncFlow`: node `Fetch`: {refused}"
    ]
    assert AsyncFlow(start=AsyncFlow(start=Fetch())).validate() == []
    with pytest.raises(RuntimeError, match="Use run_async."):
        Flow(start=Fetch()).run({})


def test_validate_reports_a_max_retries_a_run_would_refuse():
    node = Node()
    node.max_retries = "3"
    assert Flow(start=node).validate() == [
        "flow `Flow`: node `Node`: max_retries: 'str' object cannot be interpreted as an integer"
    ]
    with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
        Flow(start=node).run({})


DEEP_GRAPH = textwrap.dedent(
    """
    import sys
    import minllm as m

    depth = int(sys.argv[1])
    f = m.Flow(start=m.Node())
    for _ in range(depth):
        f = m.Flow(start=f)
    print(f.validate(), len(f.to_mermaid()))
    """
)


def test_validate_and_to_mermaid_walk_deep_nesting_without_recursion():
    # At the default recursion limit; they crashed at a few hundred levels.
    sizes = []
    for depth in (2500, 5000):
        child = subprocess.run([sys.executable, "-c", DEEP_GRAPH, str(depth)], capture_output=True, text=True)
        assert child.returncode == 0, child.stderr[-2000:]
        problems, size = child.stdout.split()
        assert problems == "[]"
        sizes.append(int(size))
    # Linear: twice the depth, about twice the chart (it grew with the square).
    assert sizes[1] < 2.2 * sizes[0]
    assert sizes[1] < 2_000_000


# ---- settings ------------------------------------------------------------


@pytest.mark.parametrize("cls", [Flow, BatchFlow, ParallelBatchFlow, AsyncFlow, AsyncParallelBatchFlow])
@pytest.mark.parametrize(
    "value, error, says",
    [
        (-1, ValueError, "max_steps must be 0 or more, or None (no limit), not -1"),
        ("x", TypeError, "max_steps must be an int or None (no limit), not str: 'x'"),
        (2.5, TypeError, "max_steps must be an int or None (no limit), not float: 2.5"),
        (True, TypeError, "max_steps must be an int or None (no limit), not bool: True"),
    ],
)
def test_a_bad_max_steps_is_refused_by_the_constructor(cls, value, error, says):
    with pytest.raises(error) as info:
        cls(start=Node(), max_steps=value)
    assert str(info.value) == f"{cls.__name__}.{says}"


@pytest.mark.parametrize("cls", [ParallelBatchNode, ParallelBatchFlow])
@pytest.mark.parametrize(
    "value, error, says",
    [
        (0, ValueError, "max_workers must be 1 or more, or None (one thread per item, up to 32), not 0"),
        (-3, ValueError, "max_workers must be 1 or more, or None (one thread per item, up to 32), not -3"),
        ("4", TypeError, "max_workers must be an int or None (one thread per item, up to 32), not str: '4'"),
        (False, TypeError, "max_workers must be an int or None (one thread per item, up to 32), not bool: False"),
    ],
)
def test_a_bad_max_workers_is_refused_by_the_constructor(cls, value, error, says):
    with pytest.raises(error) as info:
        cls(max_workers=value)
    assert str(info.value) == f"{cls.__name__}.{says}"


def test_good_settings_are_kept_as_given():
    assert Flow(max_steps=None).max_steps is None
    assert Flow(max_steps=0).max_steps == 0
    assert Flow(max_steps=10**30).max_steps == 10**30
    assert ParallelBatchNode(max_workers=3).max_workers == 3
    assert ParallelBatchFlow(max_workers=None).max_workers is None


class Items(ParallelBatchNode):
    def prep(self, shared):
        return [1, 2, 3]

    def exec(self, item):
        return item * 2

    def post(self, shared, p, e):
        shared["out"] = e


@pytest.mark.parametrize("value, error", [(-1, ValueError), (0, ValueError), ("x", TypeError), (1.0, TypeError)])
def test_settings_set_later_are_checked_when_the_run_reads_them(value, error):
    flow = Flow(start=Node())
    flow.max_steps = value if value != 0 else -5
    with pytest.raises(error, match=r"^Flow\.max_steps must be"):
        flow.run({})
    aflow = AsyncFlow(start=Node())
    aflow.max_steps = value if value != 0 else -5
    with pytest.raises(error, match=r"^AsyncFlow\.max_steps must be"):
        asyncio.run(aflow.run_async({}))
    node = Items()
    node.max_workers = value
    with pytest.raises(error, match=r"^Items\.max_workers must be"):
        node.run({})


def test_huge_settings_mean_no_limit_not_an_overflow():
    flow = Flow(start=Node())
    flow.max_steps = 2**70
    flow.run({})
    node = Items()
    node.max_workers = 2**70
    shared = {}
    node.run(shared)
    assert shared["out"] == [2, 4, 6]
    retried = Node(max_retries=2**70)  # as `range(2**70)` in the original
    assert retried.run({}) is None


# ---- SharedStore copies --------------------------------------------------


def test_shared_store_pickles_and_copies_as_a_dict_does():
    inner = [1, 2]
    store = SharedStore({"a": inner, "b": "x"})
    shallow, deep, pickled = copy.copy(store), copy.deepcopy(store), pickle.loads(pickle.dumps(store))
    for clone in (shallow, deep, pickled, store.copy()):
        assert type(clone) is SharedStore and clone is not store
        assert clone == store == {"a": [1, 2], "b": "x"}
    assert shallow["a"] is inner and store.copy()["a"] is inner
    assert deep["a"] is not inner and pickled["a"] is not inner
    shallow["c"] = 3
    assert "c" not in store
    assert shallow.popitem() == ("c", 3) and shallow == store  # the whole MutableMapping API


def test_a_shared_store_that_contains_itself_copies_pickles_and_is_collected():
    store = SharedStore(a=1)
    store["self"] = store
    deep = copy.deepcopy(store)
    assert deep["self"] is deep and deep["a"] == 1
    pickled = pickle.loads(pickle.dumps(store))
    assert pickled["self"] is pickled
    assert copy.copy(store)["self"] is store

    class Marker:
        pass

    marker = Marker()
    store["marker"] = marker
    ref = weakref.ref(marker)
    del store, marker, deep, pickled
    gc.collect()
    assert ref() is None


# ---- the step-limit report -----------------------------------------------


class Ping(Node):
    def post(self, shared, p, e):
        return "go"


class Pong(Ping):
    pass


def ping_pong():
    ping, pong = Ping(), Pong()
    ping - "go" >> pong
    pong - "go" >> ping
    return ping


@pytest.mark.parametrize(
    "limit, steps",
    [
        (0, "no step ran"),
        (1, "last steps: Ping"),
        (3, "last steps: Ping -> Pong -> Ping"),
        (8, "last steps: Ping -> Pong -> Ping -> Pong -> Ping -> Pong -> Ping -> Pong"),
        (9, "last steps: ... -> Pong -> Ping -> Pong -> Ping -> Pong -> Ping -> Pong -> Ping"),
    ],
)
def test_the_step_limit_error_lists_exactly_the_steps_that_ran(limit, steps):
    with pytest.raises(FlowError) as info:
        Flow(start=ping_pong(), max_steps=limit).run({})
    assert str(info.value) == f"flow `Flow` exceeded its step limit of {limit} steps; {steps}"


@pytest.mark.parametrize("limit", [0, 1, 3, 9])
def test_async_step_limit_errors_list_exactly_the_steps_that_ran(limit):
    class Again(AsyncNode):
        async def post_async(self, shared, p, e):
            return "go"

    again = Again()
    again - "go" >> again
    with pytest.raises(FlowError) as info:
        asyncio.run(AsyncFlow(start=again, max_steps=limit).run_async({}))
    steps = "no step ran" if limit == 0 else "last steps: " + ("... -> " if limit > 8 else "")
    steps += " -> ".join(["Again"] * min(limit, 8))
    assert str(info.value) == f"flow `AsyncFlow` exceeded its step limit of {limit} steps; {steps}"


# ---- threads -------------------------------------------------------------


def test_hooks_get_the_stack_of_a_python_thread_on_worker_threads():
    # Recursion through a C call (sorted's key) uses the native stack: 1000
    # levels fit a Python thread's stack, and must fit a worker's too.
    script = textwrap.dedent(
        """
        import sys, threading
        import minllm as m
        sys.setrecursionlimit(100_000)

        def deep(n):
            return 0 if n == 0 else sorted([n], key=lambda v: deep(v - 1))[0]

        out = []
        thread = threading.Thread(target=lambda: out.append(deep(1000)))
        thread.start()
        thread.join()

        class Deep(m.ParallelBatchNode):
            def prep(self, shared):
                return [1000, 1000]

            def exec(self, n):
                return deep(n)

            def post(self, shared, p, e):
                out.extend(e)

        Deep(max_workers=2).run({})
        print(out)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (child.returncode, child.stdout.strip()) == (0, "[1000, 1000, 1000]"), child.stderr[-2000:]


def test_a_failure_in_a_parallel_batch_on_a_worker_thread_wins_at_once():
    # The inner batch waits on a worker thread (not the main one): the failure
    # must end that wait while the other item is still running.
    release = threading.Event()
    finished = []

    class Items(ParallelBatchNode):
        def prep(self, shared):
            return ["fail", "slow"]

        def exec(self, item):
            if item == "fail":
                raise ValueError("item failed")
            release.wait(timeout=30)
            finished.append(item)

    class Fan(ParallelBatchFlow):
        def prep(self, shared):
            return [{"branch": 0}]

    try:
        with pytest.raises(ValueError, match="item failed"):
            Fan(start=Items(max_workers=2), max_workers=1).run({})
        assert finished == []
    finally:
        release.set()


def test_other_threads_get_the_gil_while_a_flow_of_builtin_nodes_loops():
    # Built-in hooks run no bytecode, so only the engine can hand the GIL over:
    # the timer thread must get to run and interrupt the main thread.
    a = Node()
    a >> a
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        # Bounded, so that a starved timer fails the test instead of hanging it.
        Flow(start=a, max_steps=20_000_000).run({})
    timer.join()
