"""The journal contract of journaled runs (``_journal.py``, what
``minllm.restate`` serves), on a journal in memory: each ``exec`` one step, in
the same order and under the same name on every replay; a replay reads back
every finished step and runs only the one in flight; a question is answered
through the journal and ``exec`` runs again as a new step. No server here:
test_restate.py runs the same on Restate.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
from typing import Any, TypeVar

import pytest

from minllm import (
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchNode,
    BatchFlow,
    BatchNode,
    Flow,
    Node,
    ParallelBatchFlow,
    ParallelBatchNode,
    emit,
    interrupt,
)
from minllm._driver import _drive, _Run
from minllm._journal import ExecFailed, Journal, fanned_out_nodes, item_step
from minllm._plain import _Codec


class Crash(BaseException):
    """The worker dies: nothing of the step in flight is journaled."""


class Paused(Exception):
    def __init__(self, name: str, question: Any) -> None:
        super().__init__(name, question)
        self.name, self.question = name, question


class Memory(Journal):
    """A journal in memory. ``records`` (position -> (name, bytes)) outlive a
    run; a run given them replays: a step at a recorded position returns its
    bytes (its name must be the same), a later one runs. ``answers`` by pause
    name; a pause with none ends the run with :class:`Paused`."""

    def __init__(self, records: dict[int, tuple[str, Any]], answers: dict[str, Any] | None = None) -> None:
        self.records, self.answers, self.codec = records, answers or {}, _Codec(False)
        self.at = 0
        self.names: list[str] = []

    def take(self, name: str) -> tuple[int, Any]:
        at, self.at = self.at, self.at + 1
        self.names.append(name)
        found = self.records.get(at)
        if found is not None:
            assert found[0] == name, f"step {at} was {found[0]!r}, now {name!r}"
        return at, found

    def step(self, name: str, action: Any) -> Any:
        at, found = self.take(name)

        async def result() -> bytes:
            if found is not None:
                data: bytes = found[1]
                return data
            if inspect.iscoroutinefunction(action):
                data = await action()
            else:
                data = await asyncio.get_running_loop().run_in_executor(None, action)
            self.records[at] = (name, data)
            return data

        return asyncio.ensure_future(result())

    async def ask(self, name: str, question: Any) -> Any:
        at, found = self.take(name)
        if found is not None:
            return found[1]
        if name not in self.answers:
            raise Paused(name, question)
        self.records[at] = (name, self.answers[name])
        return self.answers[name]


def run(flow: Any, shared: dict[str, Any], journal: Memory) -> dict[str, Any]:
    walk = _Run(None, "run-1", None, type(flow).__name__)
    walk.journal, walk.codec = journal, journal.codec
    asyncio.run(_drive(flow, shared, walk, []))
    return shared


# ---- a flow of every kind of piece ----

CALLS: list[str] = []
CRASH_AT: list[str] = []


T = TypeVar("T")


def paid(what: str, result: T) -> T:
    CALLS.append(what)
    if what in CRASH_AT:
        CRASH_AT.remove(what)
        raise Crash()
    return result


class Work(Node):
    def prep(self, shared: dict[str, Any]) -> int:
        return int(shared.get("count", 0))

    def exec(self, k: int) -> tuple[int, str]:
        return paid(f"work {k}", (k, f"call {k}"))

    def post(self, shared: dict[str, Any], k: int, result: tuple[int, str]) -> str:
        assert isinstance(result, tuple)  # the journal keeps its type
        shared.setdefault("log", []).append(result[1])
        shared["count"] = k + 1
        return "again" if shared["count"] < 3 else "done"


class Step(Node):
    def prep(self, shared: dict[str, Any]) -> str:
        return str(self.params["lang"])

    def exec(self, lang: str) -> str:
        return paid(f"step {lang}", lang.upper())

    def post(self, shared: dict[str, Any], lang: str, result: str) -> None:
        shared.setdefault("langs", []).append(result)


class PerLang(BatchFlow):
    def prep(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        return [{"lang": "en"}, {"lang": "fr"}]


class Tag(BatchNode):
    def prep(self, shared: dict[str, Any]) -> list[str]:
        return list(shared["log"])

    def exec(self, line: str) -> str:
        return paid(f"tag {line}", f"#{line}")

    def post(self, shared: dict[str, Any], lines: list[str], tags: list[str]) -> None:
        shared["tags"] = tags


class Shout(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[str]:
        return list(shared["log"])

    def exec(self, line: str) -> str:
        return paid(f"shout {line}", line.upper())

    def post(self, shared: dict[str, Any], lines: list[str], loud: list[str]) -> None:
        shared["loud"] = loud


class Fetch(Node):
    def exec(self, _: Any) -> str:
        return paid(f"fetch {self.params['page']}", str(self.params["page"]))

    def post(self, shared: dict[str, Any], _: Any, page: str) -> None:
        shared.setdefault("pages", []).append(page)


class Pages(ParallelBatchFlow):
    def prep(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        return [{"page": "a"}, {"page": "b"}]


def every_piece() -> Flow:
    work, tag, shout = Work(), Tag(), Shout()
    work - "again" >> work
    work - "done" >> PerLang(start=Step()) >> tag >> shout >> Pages(start=Fetch())
    return Flow(start=work)


EXPECTED = {
    "count": 3,
    "log": ["call 0", "call 1", "call 2"],
    "langs": ["EN", "FR"],
    "tags": ["#call 0", "#call 1", "#call 2"],
    "loud": ["CALL 0", "CALL 1", "CALL 2"],
    "pages": ["a", "b"],
}


@pytest.fixture(autouse=True)
def fresh() -> None:
    CALLS.clear()
    CRASH_AT.clear()


def test_each_exec_is_one_step_named_after_where_it_runs() -> None:
    journal = Memory({})
    assert run(every_piece(), {}, journal) == EXPECTED
    assert journal.names == [
        "Work#1", "Work#2", "Work#3",
        "PerLang#4 > [0]#0 > Step#1", "PerLang#4 > [1]#0 > Step#1",
        "Tag#5[0]", "Tag#5[1]", "Tag#5[2]",
        "Shout#6[0]", "Shout#6[1]", "Shout#6[2]",
        "Pages#7 > [0]#0 > Fetch#1", "Pages#7 > [1]#0 > Fetch#1",
    ]
    assert sorted(CALLS) == sorted(
        ["work 0", "work 1", "work 2", "step en", "step fr"]
        + [f"{what} call {k}" for what in ("tag", "shout") for k in range(3)]
        + ["fetch a", "fetch b"]
    )


@pytest.mark.parametrize("crash", ["work 1", "step fr", "tag call 1", "shout call 2", "fetch b"])
def test_a_replay_reads_finished_steps_back_and_runs_only_the_one_in_flight(crash: str) -> None:
    records: dict[int, tuple[str, Any]] = {}
    CRASH_AT.append(crash)
    with pytest.raises(Crash):
        run(every_piece(), {}, Memory(records))
    ran = list(CALLS)
    CALLS.clear()
    # A new worker replays the run on the store it was started with.
    assert run(every_piece(), {}, Memory(records)) == EXPECTED
    assert crash in CALLS, CALLS
    assert not (set(ran) - {crash}) & set(CALLS), f"ran again: {(set(ran) - {crash}) & set(CALLS)}"
    # A third replay runs nothing.
    CALLS.clear()
    assert run(every_piece(), {}, Memory(records)) == EXPECTED
    assert CALLS == []


class Ask(Node):
    def prep(self, shared: dict[str, Any]) -> str:
        return str(shared["draft"])

    def exec(self, draft: str) -> str:
        CALLS.append("ask")
        first = interrupt(f"publish {draft}?")
        second = interrupt(f"really, {first}?")
        return f"{first}/{second}"

    def post(self, shared: dict[str, Any], draft: str, answer: str) -> None:
        shared["answer"] = answer


def test_a_question_is_answered_through_the_journal_and_exec_runs_again_as_a_new_step() -> None:
    records: dict[int, tuple[str, Any]] = {}
    with pytest.raises(Paused) as paused:
        run(Flow(start=Ask()), {"draft": "d"}, Memory(records))
    assert (paused.value.name, paused.value.question) == ("Ask#1 question 1", "publish d?")
    with pytest.raises(Paused) as paused:
        run(Flow(start=Ask()), {"draft": "d"}, Memory(records, {"Ask#1 question 1": "yes"}))
    assert (paused.value.name, paused.value.question) == ("Ask#1 question 2", "really, yes?")
    journal = Memory(records, {"Ask#1 question 2": "sure"})
    assert run(Flow(start=Ask()), {"draft": "d"}, journal) == {"draft": "d", "answer": "yes/sure"}
    assert journal.names == [
        "Ask#1", "Ask#1 question 1", "Ask#1 (answered 1)", "Ask#1 question 2", "Ask#1 (answered 2)",
    ]
    assert CALLS == ["ask"] * 3  # asked, asked again, finished


def test_the_items_of_a_batch_node_ask_one_after_the_other() -> None:
    class Check(BatchNode):
        def prep(self, shared: dict[str, Any]) -> list[str]:
            return ["a", "b"]

        def exec(self, item: str) -> str:
            return f"{item}={interrupt(f'ok {item}?')}"

        def post(self, shared: dict[str, Any], items: list[str], answers: list[str]) -> None:
            shared["answers"] = answers

    answers = {"Check#1[0] question 1": "yes", "Check#1[1] question 1": "no"}
    assert run(Flow(start=Check()), {}, Memory({}, answers)) == {"answers": ["a=yes", "b=no"]}


def test_interrupt_outside_exec_or_in_parallel_items_says_why_it_cannot_pause() -> None:
    class AskInPost(Node):
        def post(self, shared: dict[str, Any], _: Any, __: Any) -> None:
            interrupt("sure?")

    with pytest.raises(RuntimeError, match="interrupt\\(\\) in node 'AskInPost' outside its exec"):
        run(Flow(start=AskInPost()), {}, Memory({}))

    class AskInItems(ParallelBatchNode):
        def prep(self, shared: dict[str, Any]) -> list[int]:
            return [1, 2]

        def exec(self, item: int) -> Any:
            return interrupt("sure?")

    with pytest.raises(ExecFailed, match="cannot pause inside the items of parallel batch node 'AskInItems'"):
        run(Flow(start=AskInItems()), {}, Memory({}))


def test_an_exec_that_fails_after_its_retries_is_journaled_and_fails_the_run_on_every_replay() -> None:
    class Flaky(BatchNode):
        def prep(self, shared: dict[str, Any]) -> list[int]:
            return [0, 1]

        def exec(self, item: int) -> int:
            CALLS.append(f"flaky {item}")
            if item == 1:
                raise ValueError("bad item")
            return item

    message = "exec of node `Flaky` in flow `Flow` failed (item 1) after 2 attempts: ValueError: bad item"
    records: dict[int, tuple[str, Any]] = {}
    for _ in range(2):
        with pytest.raises(ExecFailed) as failed:
            run(Flow(start=Flaky(max_retries=2)), {}, Memory(records))
        assert str(failed.value) == message
    assert CALLS == ["flaky 0", "flaky 1", "flaky 1"]  # the replay ran nothing


def test_an_async_flow_journals_async_and_concurrent_items() -> None:
    class Draft(AsyncNode):
        async def exec_async(self, _: Any) -> str:
            return paid("draft", "draft")

        async def post_async(self, shared: dict[str, Any], _: Any, draft: str) -> None:
            shared["draft"] = draft

    class Translate(AsyncParallelBatchNode):
        async def prep_async(self, shared: dict[str, Any]) -> list[str]:
            return ["en", "fr", "de"]

        async def exec_async(self, lang: str) -> str:
            await asyncio.sleep(0.01 * (3 - len(CALLS)))  # they finish out of order
            return paid(f"translate {lang}", f"{lang}: draft")

        async def post_async(self, shared: dict[str, Any], langs: list[str], texts: list[str]) -> None:
            shared["texts"] = texts

    def flow() -> AsyncFlow:
        draft = Draft()
        draft >> Translate()
        return AsyncFlow(start=draft)

    records: dict[int, tuple[str, Any]] = {}
    expected = {"draft": "draft", "texts": ["en: draft", "fr: draft", "de: draft"]}
    assert run(flow(), {}, Memory(records)) == expected
    assert [records[k][0] for k in sorted(records)] == ["Draft#1", "Translate#2[0]", "Translate#2[1]", "Translate#2[2]"]
    CALLS.clear()
    assert run(flow(), {}, Memory(records)) == expected
    assert CALLS == []


# ---- fan-out: items sent to other workers (test_restate.py runs it on Restate) ----


class FanOut(Memory):
    """A journal that sends the items of parallel batch nodes to "another
    worker": ``item_step`` on a flow of its own (``build()``, as another process
    builds it), as a JSON round trip. ``sent`` keeps what went out."""

    def __init__(self, records: dict[int, tuple[str, Any]], build: Any) -> None:
        super().__init__(records)
        self.elsewhere = fanned_out_nodes(build())
        self.sent: list[tuple[str, list[Any], Any]] = []

    def fans_out(self, node: str) -> bool:
        return node in self.elsewhere

    async def fan_out(self, node: str, items: list[Any], params: Any) -> list[bytes]:
        at, found = self.take(f"fan-out {node}")
        if found is not None:
            records: list[bytes] = found[1]
            return records
        items, params = json.loads(json.dumps(items)), json.loads(json.dumps(params))  # they travel
        self.sent.append((node, items, params))

        async def one(index: int, item: Any) -> bytes:
            step, is_async = item_step(self.elsewhere[node], node, self.codec, index, item, params)
            if is_async:
                data: bytes = await step()
                return data
            return await asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, step)

        records = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
        self.records[at] = (f"fan-out {node}", records)
        return records


class Loud(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[Any]:
        return [("a", 1), ("b", 2)]

    def exec(self, item: tuple[str, int]) -> str:
        assert isinstance(item, tuple)  # items travel as plain data, types kept
        emit(f"{self.params['lang']} {item[0]}")
        if item[0] == "b" and self.cur_retry == 0:
            raise ValueError("first try of b")
        return paid(f"loud {self.params['lang']} {item[0]}", f"{self.params['lang']}:{item[0].upper()}{self.cur_retry}")

    def post(self, shared: dict[str, Any], _: Any, loud: list[str]) -> None:
        shared.setdefault("loud", []).extend(loud)


class LoudAsync(AsyncParallelBatchNode):
    async def prep_async(self, shared: dict[str, Any]) -> list[int]:
        return [1, 2, 3]

    async def exec_async(self, n: int) -> int:
        await asyncio.sleep(0.01 * (3 - n))  # they finish out of order
        if n == 2 and self.cur_retry == 0:
            raise ValueError("first try of 2")
        return paid(f"double {n}", n * 2 + self.cur_retry * 100)

    async def post_async(self, shared: dict[str, Any], _: Any, doubled: list[int]) -> None:
        shared["doubled"] = doubled


class Langs(BatchFlow):
    def prep(self, shared: dict[str, Any]) -> list[dict[str, str]]:
        return [{"lang": "en"}, {"lang": "fr"}]


def fanned() -> AsyncFlow:
    inner = Flow(start=Langs(start=Loud(max_retries=2)))
    inner >> LoudAsync(max_retries=2)
    return AsyncFlow(start=inner)


def test_parallel_items_fan_out_by_node_key_and_run_elsewhere_as_a_local_run_runs_them() -> None:
    local: dict[str, Any] = {}
    asyncio.run(fanned().run_async(local))
    CALLS.clear()
    records: dict[int, tuple[str, Any]] = {}
    journal = FanOut(records, fanned)
    sent: list[Any] = []
    walk = _Run(None, "run-1", sent.append, "fanned")
    walk.journal, walk.codec = journal, journal.codec
    store: dict[str, Any] = {}
    asyncio.run(_drive(fanned(), store, walk, []))
    # The same store as a run without a journal: params, cur_retry per item, order.
    assert store == local == {"loud": ["en:A0", "en:B1", "fr:A0", "fr:B1"], "doubled": [2, 104, 6]}
    assert set(journal.elsewhere) == {"Flow > Langs > Loud", "LoudAsync"}
    assert journal.sent == [
        ("Flow > Langs > Loud", [{"__t": ["a", 1]}, {"__t": ["b", 2]}], {"__d": [["lang", "en"]]}),
        ("Flow > Langs > Loud", [{"__t": ["a", 1]}, {"__t": ["b", 2]}], {"__d": [["lang", "fr"]]}),
        ("LoudAsync", [1, 2, 3], None),
    ]
    # What the items emitted came back in their records, to the node's events, in item order.
    customs = [(e.flow, e.node, e.value, e.item) for e in sent if e.kind == "custom"]
    assert customs == [
        ("Flow > Langs > [0]", "Loud", "en a", 0), ("Flow > Langs > [0]", "Loud", "en b", 1),
        ("Flow > Langs > [0]", "Loud", "en b", 1),  # its second try emitted again
        ("Flow > Langs > [1]", "Loud", "fr a", 0), ("Flow > Langs > [1]", "Loud", "fr b", 1),
        ("Flow > Langs > [1]", "Loud", "fr b", 1),
    ]
    # A replay reads the fanned-out records back: nothing runs, the same events come.
    CALLS.clear()
    again: list[Any] = []
    walk = _Run(None, "run-1", again.append, "fanned")
    walk.journal, walk.codec = FanOut(records, fanned), journal.codec
    store = {}
    asyncio.run(_drive(fanned(), store, walk, []))
    assert store == local and CALLS == []
    assert [(e.kind, e.flow, e.node, e.value, e.item) for e in again] == [
        (e.kind, e.flow, e.node, e.value, e.item) for e in sent
    ]


def test_items_that_cannot_travel_are_refused_naming_the_node_and_what_to_do() -> None:
    class Ticket:
        pass

    class Send(ParallelBatchNode):
        def prep(self, shared: dict[str, Any]) -> list[Any]:
            return [1, Ticket()]

    def build() -> Flow:
        return Flow(start=Send())

    with pytest.raises(TypeError, match=(
        "item 1 of parallel batch node `Send` cannot go to the flow's workers: it holds a "
        ".*Ticket, which is not plain data .*minllm.register.*BatchNode, whose items stay on the run's worker"
    )):
        run(build(), {}, FanOut({}, build))
    # An item that fails on its worker fails the run as a local item does.
    class Fail(ParallelBatchNode):
        def prep(self, shared: dict[str, Any]) -> list[int]:
            return [1, 2]

        def exec(self, n: int) -> int:
            if n == 2:
                raise ValueError("bad 2")
            return n

    def failing() -> Flow:
        return Flow(start=Fail())

    message = "exec of node `Fail` in flow `Flow` failed (item 1): ValueError: bad 2"
    with pytest.raises(ExecFailed) as failed:
        run(failing(), {}, FanOut({}, failing))
    assert str(failed.value) == message
