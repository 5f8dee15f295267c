"""Behaviour of the original MinLLM/PocketFlow API: return values, warnings,
copies, params, retries, batches, nested flows, exceptions."""

import time
import traceback
import warnings

import pytest

from minllm import BaseNode, BatchFlow, BatchNode, Flow, Node, _ConditionalTransition


class Record(Node):
    """Appends its name to shared['trace'] and returns a fixed action."""

    def __init__(self, name, action=None):
        super().__init__()
        self.name, self.action = name, action

    def post(self, shared, prep_res, exec_res):
        shared.setdefault("trace", []).append(self.name)
        return self.action


def test_wiring_returns_the_target_node():
    a, b, c = Record("a"), Record("b"), Record("c")
    assert (a >> b) is b
    assert isinstance(a - "x", _ConditionalTransition)
    assert (a - "x" >> c) is c
    assert a.next(c, "y") is c
    flow = Flow()
    assert flow.start(a) is a and flow.start_node is a
    assert a.successors == {"default": b, "x": c, "y": c}
    x, y, z = Record("x"), Record("y"), Record("z")
    assert (x >> y >> z) is z and y.successors["default"] is z


def test_sub_needs_a_string():
    with pytest.raises(TypeError, match="Action must be a string"):
        Record("a") - 5


def test_overwriting_a_successor_warns_and_overwrites():
    a, b, c = Record("a"), Record("b"), Record("c")
    a >> b
    with pytest.warns(UserWarning, match="Overwriting successor for action 'default'"):
        a >> c
    assert a.successors["default"] is c


def test_flow_returns_the_last_action_and_follows_labels():
    a, b, c = Record("a", "right"), Record("b"), Record("c", "done")
    a - "left" >> b
    a - "right" >> c
    shared = {}
    assert Flow(start=a).run(shared) == "done"
    assert shared["trace"] == ["a", "c"]


def test_flow_ends_warning_text_and_category():
    a, b = Record("a", "other"), Record("b")
    a - "specific" >> b
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Flow(start=a).run({})
    assert len(w) == 1
    assert issubclass(w[0].category, UserWarning)
    assert str(w[0].message) == "Flow ends: 'other' not found in ['specific']"


def test_falsy_actions_mean_default_but_the_warning_shows_them():
    a, b = Record("a", None), Record("b")
    a - "specific" >> b
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Flow(start=a).run({})
    assert str(w[0].message) == "Flow ends: 'None' not found in ['specific']"
    for falsy in ("", 0, False, None):
        x, y = Record("x", falsy), Record("y")
        x >> y
        shared = {}
        Flow(start=x).run(shared)
        assert shared["trace"] == ["x", "y"]


def test_node_run_warns_when_it_has_successors():
    a = Record("a")
    a >> Record("b")
    with pytest.warns(UserWarning, match="Node won't run successors. Use Flow."):
        a.run({})


def test_nodes_are_copied_so_runs_leave_them_unchanged():
    class Counting(Node):
        def __init__(self):
            super().__init__()
            self.count = 0

        def exec(self, prep_res):
            self.count += 1
            self.seen = dict(self.params)

    node = Counting()
    node.set_params({"own": 1})
    flow = Flow(start=node)
    flow.set_params({"flow": 2})
    flow.run({})
    flow.run({})
    assert node.count == 0, "attribute writes land on the copy"
    assert not hasattr(node, "seen")
    assert node.params == {"own": 1}, "the original keeps its own params"


def test_one_params_dict_is_shared_along_a_pass():
    class Touch(Node):
        def prep(self, shared):
            self.params["touched"] = True

    class Look(Node):
        def prep(self, shared):
            shared["seen"] = dict(self.params)

    t = Touch()
    t >> Look()
    flow = Flow(start=t)
    flow.set_params({"k": 1})
    shared = {}
    flow.run(shared)
    assert shared["seen"] == {"k": 1, "touched": True}
    assert flow.params == {"k": 1}


def test_instance_attribute_overrides_a_hook():
    a, b = Record("a", "x"), Record("b")
    a - "x" >> b
    a.post = lambda *args: "elsewhere"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert Flow(start=a).run({}) == "elsewhere"
    assert len(w) == 1


class Flaky(Node):
    def __init__(self, failures, **kw):
        super().__init__(**kw)
        self.failures = failures

    def prep(self, shared):
        return shared

    def exec(self, shared):
        shared.setdefault("attempts", []).append(self.cur_retry)
        if self.cur_retry < self.failures:
            raise ValueError(f"attempt {self.cur_retry}")
        return "ok"

    def post(self, shared, prep_res, exec_res):
        shared["result"] = exec_res


def test_retries_count_and_cur_retry():
    shared = {}
    Flaky(2, max_retries=3).run(shared)
    assert shared == {"attempts": [0, 1, 2], "result": "ok"}


def test_retry_wait_comes_before_each_retry():
    times = []

    class Timed(Flaky):
        def exec(self, shared):
            began = time.monotonic()
            try:
                return super().exec(shared)
            finally:
                times.append((began, time.monotonic()))

    shared = {}
    Timed(2, max_retries=3, wait=0.05).run(shared)
    assert shared == {"attempts": [0, 1, 2], "result": "ok"}
    gaps = [after[0] - before[1] for before, after in zip(times, times[1:])]
    assert len(gaps) == 2 and all(gap >= 0.05 for gap in gaps), f"a retry came before the wait of 0.05 s: {gaps}"


def test_the_fallback_gets_the_last_exception_and_gives_the_result():
    class WithFallback(Flaky):
        def exec_fallback(self, prep_res, exc):
            return f"fallback after {exc}"

    shared = {}
    WithFallback(9, max_retries=2).run(shared)
    assert shared["result"] == "fallback after attempt 1"


def test_the_default_fallback_reraises_the_same_exception_with_its_traceback():
    shared = {}
    with pytest.raises(ValueError, match="attempt 1") as info:
        Flaky(9, max_retries=2).run(shared)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "exec" in frames, frames


def test_zero_retries_runs_nothing():
    shared = {}
    Flaky(0, max_retries=0).run(shared)
    assert shared == {"result": None}


def test_keyboard_interrupt_is_not_retried():
    class Interrupted(Node):
        calls = 0

        def exec(self, prep_res):
            Interrupted.calls += 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Interrupted(max_retries=5).run({})
    assert Interrupted.calls == 1


def test_batch_node_runs_exec_per_item_with_its_own_retries():
    class Double(BatchNode):
        def prep(self, shared):
            return shared["items"]

        def exec(self, item):
            if item == 2 and self.cur_retry == 0:
                raise ValueError("once")
            return item * 10

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared = {"items": [1, 2, 3]}
    Double(max_retries=2).run(shared)
    assert shared["out"] == [10, 20, 30]
    shared = {"items": None}
    Double().run(shared)
    assert shared["out"] == []


def test_nested_flows_propagate_their_last_action():
    inner_a, inner_b = Record("ia"), Record("ib", "inner_done")
    inner_a >> inner_b
    inner = Flow(start=inner_a)
    after = Record("after")
    inner - "inner_done" >> after
    shared = {}
    assert Flow(start=inner).run(shared) is None
    assert shared["trace"] == ["ia", "ib", "after"]


def test_batch_flow_merges_params_and_returns_none():
    class Seen(Node):
        def prep(self, shared):
            shared.setdefault("seen", []).append(dict(self.params))

    class PerFile(BatchFlow):
        def prep(self, shared):
            return [{"file": "a"}, {"file": "b", "lang": "fr"}]

    flow = PerFile(start=Seen())
    flow.set_params({"lang": "en"})
    shared = {}
    assert flow.run(shared) is None
    assert shared["seen"] == [{"lang": "en", "file": "a"}, {"lang": "fr", "file": "b"}]


def test_exceptions_keep_their_type_through_flows():
    class Boom(Node):
        def exec(self, prep_res):
            raise LookupError("no such thing")

    class Batch(BatchFlow):
        def prep(self, shared):
            return [{"i": 1}]

    with pytest.raises(LookupError, match="no such thing"):
        Flow(start=Boom()).run({})
    with pytest.raises(LookupError):
        Batch(start=Boom()).run({})


def test_flow_without_start_returns_none():
    assert Flow().run({}) is None


def test_subclasses_with_their_own_init_are_copied_without_calling_it():
    class Needs(Node):
        def __init__(self, number):
            super().__init__()
            self.number = number

        def exec(self, prep_res):
            return self.number

        def post(self, shared, p, e):
            shared["n"] = e

    shared = {}
    Flow(start=Needs(7)).run(shared)
    assert shared == {"n": 7}


def test_base_node_has_the_original_attributes():
    assert BaseNode().params == {} and BaseNode().successors == {}
    node = Node(3, 0.5)
    assert (node.max_retries, node.wait) == (3, 0.5)
    assert Flow().start_node is None
    with pytest.raises(AttributeError):
        Flow().max_retries
