"""Runs journaled by a durable-execution engine (Restate): the driver's walk,
with each ``exec`` (its retries, waits and fallback included) one step of the
engine's journal instead of a checkpoint record. The journal runs a step once
and keeps what it returned; when the engine replays the run after a crash, the
step's record comes back and the step does not run again. Everything outside
the steps (``prep``, ``post``, the walk) runs again on every replay, so it must
be deterministic; the store and the position need no checkpoints.

A step's record is JSON: ``{"ok": <the exec result as plain data>, "taken": n}``
(``n`` interrupt answers taken), ``{"failed": <error>, "attempts": n}`` or
``{"asked": <question>, "taken": n}``, with ``"events": [{"item": i, "value":
v}, ...]`` beside it when the ``exec`` called :func:`emit`: those values reach
the run's events when the step returns, run or read back, so a replay sends
the same ones at the same place. A question is answered through the journal
(:meth:`Journal.ask`, a durable promise on Restate), and ``exec`` runs again
as a new step, where :func:`interrupt` returns the answers so far.

A journal may send the items of a parallel batch node elsewhere
(:meth:`Journal.fan_out`, other workers on Restate): each item travels as
plain data with the node's key (:func:`node_key`), and the worker that gets
it runs it with :func:`item_step` on its own copy of the flow, as the run's
worker would, and returns the record.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import _minllm
from ._plain import _JSON, CheckpointError, NotPlain, _Codec, _type_name
from ._signals import Event, _item, _Pause, _sink, _visit, _Visit

if TYPE_CHECKING:
    from ._driver import _Run


class Journal:
    """A durable-execution engine's journal, as the driver uses it (see the module
    docs). ``codec`` turns exec results into plain data and back."""

    codec: _Codec

    def step(self, name: str, action: Callable[[], Any]) -> Awaitable[bytes]:
        """Starts ``action`` (a function, or an ``async`` one, that returns bytes)
        as the journal's next step, named ``name``, and returns what waits for its
        bytes; on a replay past it, its recorded bytes without running it. The
        step takes its place in the journal at this call, so steps started one
        after the other keep their order however they finish."""
        raise NotImplementedError

    async def all(self, steps: list[Awaitable[bytes]]) -> list[bytes]:
        """The bytes of steps started with :meth:`step`, in their order."""
        return [await step for step in steps]

    async def ask(self, name: str, question: Any) -> Any:
        """Waits, durably, for the answer to ``question`` (plain JSON), asked by
        an ``exec``; ``name`` names the pause. On a replay past it, the answer."""
        raise NotImplementedError

    def fans_out(self, node: str) -> bool:
        """Whether the items of the parallel batch node keyed ``node`` (see
        :func:`node_key`) go out with :meth:`fan_out`; ``False`` unless
        overridden, and they are steps of the run, all started at once."""
        return False

    async def fan_out(self, node: str, items: list[Any], params: Any) -> list[bytes]:
        """The records of the items (plain data, see :func:`item_step`) of
        the parallel batch node keyed ``node``, whose copy has the params
        ``params`` (plain data, ``None`` for none), each run elsewhere by
        :func:`item_step`, all sent before any is awaited; in the items'
        order. On a replay, the records journaled."""
        raise NotImplementedError


class ExecFailed(Exception):
    """A node's ``exec`` failed (after its retries and fallback) in a journaled
    run: the journal keeps the failure's text, not the exception. ``node``,
    ``flow`` (the path of flows around it), ``item`` (a batch item's index, or
    ``None``), ``attempts`` and ``error`` (``"ValueError: ..."``)."""

    def __init__(self, node: str, flow: str, item: int | None, attempts: int, error: str) -> None:
        where = f" (item {item})" if item is not None else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"exec of node `{node}` in flow `{flow}` failed{where}{tries}: {error}")
        self.node, self.flow, self.item, self.attempts, self.error = node, flow, item, attempts, error


def _attempts(curr: Any) -> int:
    tries = getattr(curr, "max_retries", 1)
    return tries if isinstance(tries, int) and tries > 1 else 1


def _shown(value: Any) -> Any:
    """A value JSON cannot hold, as a stand-in that is the same in every
    process (no addresses, no hash order)."""
    if isinstance(value, (set, frozenset)):
        return sorted((_shown(v) if not isinstance(v, (str, int, float)) else v for v in value), key=repr)
    if getattr(type(value), "__repr__") is getattr(object, "__repr__"):
        return f"<{_type_name(value)}>"
    return repr(value)


def _plain_json(value: Any) -> Any:
    """``value`` as JSON shows it (a question, an event's value, for the
    engine's state)."""
    return json.loads(json.dumps(value, default=_shown))


def event_json(event: Event) -> dict[str, Any]:
    """An event of a journaled run as the engine's state keeps it: plain JSON,
    the same on every replay (no durations); the contract of the Rust
    engine's Restate backend. ``{"kind", "flow", "node"}``, with the
    ``action`` of a ``node_finished`` (``"default"`` for ``None``), the
    ``value`` of a ``custom`` one and the ``item`` that emitted it, if any."""
    data: dict[str, Any] = {"kind": event.kind, "flow": event.flow, "node": event.node}
    if event.kind == "node_finished":
        data["action"] = "default" if event.action is None else _plain_json(event.action)
    elif event.kind == "custom":
        data["value"] = _plain_json(event.value)
        if event.item is not None:
            data["item"] = event.item
    return data


def node_key(stack: list[list[Any]]) -> str:
    """The key of the node at the top of a run's ``stack``: the names of the
    flows it is in and its own, joined by `` > `` (no steps, no batch items),
    the same in every process that built the flow with the same code."""
    return " > ".join(frame[0] for frame in stack if not _is_item(frame[0]))


def _is_item(name: str) -> bool:
    return name.startswith("[") and name.endswith("]") and name[1:-1].isdigit()


def _refusal(name: str) -> str:
    return (
        f"interrupt() cannot pause inside the items of parallel batch node {name!r} in a journaled run, which"
        " run at the same time: make it a BatchNode, or ask before or after it"
    )


def _action(
    codec: _Codec, curr: Any, visit: _Visit, item: str, call: Callable[[], Any], is_async: bool, on_worker: bool = False
) -> Callable[[], Any]:
    """The step of one ``exec`` (``call()``): run with the answers the visit has
    so far, its outcome as a record's bytes, with the values it emitted.
    ``on_worker``: an item of a parallel batch (a sync one runs on a worker
    thread of the batch), for its own ``cur_retry``."""
    start, answers, refused = visit.next, list(visit.answers), visit.refused
    what = f"the exec result of {type(curr).__name__}" + (f" (item {item})" if item else "")

    def enter() -> tuple[_Visit, list[Event], Any]:
        inner = _Visit(visit.seq, answers, False, refused)
        inner.next = start
        kept: list[Event] = []
        # What `emit` sends here is kept in the record, not sent: a replay reads it back.
        tokens = (_visit.set(inner), _item.set(int(item)) if item else None, _sink.set((kept.append, "", "")))
        return inner, kept, tokens

    def leave(tokens: Any) -> None:
        _visit.reset(tokens[0])
        if tokens[1] is not None:
            _item.reset(tokens[1])
        _sink.reset(tokens[2])

    def record(fields: dict[str, Any], kept: list[Event]) -> bytes:
        if kept:
            fields["events"] = [{"item": event.item, "value": _plain_json(event.value)} for event in kept]
        return _JSON.encode(fields).encode()

    def done(inner: _Visit, kept: list[Event], value: Any) -> bytes:
        try:
            fields = {"ok": codec.dump(value, what), "taken": inner.next - start}
        except Exception as error:  # noqa: BLE001 - a result that cannot be journaled fails the node
            return failed(error, kept)
        return record(fields, kept)

    def asked(inner: _Visit, kept: list[Event]) -> bytes:
        return record({"asked": _plain_json(inner.asked), "taken": inner.next - start}, kept)

    def failed(error: BaseException, kept: list[Event]) -> bytes:
        text = f"{type(error).__name__}: {error}"
        return record({"failed": text, "attempts": _attempts(curr)}, kept)

    if is_async:

        async def step_async() -> bytes:
            inner, kept, tokens = enter()
            try:
                if on_worker:
                    _minllm._mark_parallel_item()  # `cur_retry` per item
                value = await call()
            except _Pause:
                return asked(inner, kept)
            except Exception as error:  # noqa: BLE001 - journaled as the node's failure
                return failed(error, kept)
            finally:
                leave(tokens)
            return done(inner, kept, value)

        return step_async

    def step() -> bytes:
        inner, kept, tokens = enter()
        try:
            if on_worker:
                context = contextvars.copy_context()
                value = _minllm._on_threads(curr, 1, lambda _: context.run(call))[0]
            else:
                value = call()
        except _Pause:
            return asked(inner, kept)
        except Exception as error:  # noqa: BLE001 - journaled as the node's failure
            return failed(error, kept)
        finally:
            leave(tokens)
        return done(inner, kept, value)

    return step


def _send_kept(record: dict[str, Any]) -> None:
    """Sends the values a step's record kept to the run's events, as the
    node's ``custom`` events (through the node's sink, if the run has one)."""
    sink = _sink.get()
    if sink is None:
        return
    for kept in record.get("events") or []:
        sink[0](Event("custom", sink[1], sink[2], value=kept.get("value"), item=kept.get("item")))


def _read(run: _Run, visit: _Visit, item: str, data: bytes) -> tuple[bool, Any]:
    """A step's record: ``(True, exec result)`` (the visit takes its answers),
    ``(False, question)``, or the node's :class:`ExecFailed`."""
    assert run.codec is not None
    record = json.loads(data)
    if isinstance(record, dict):
        _send_kept(record)
    if "ok" in record:
        visit.next += record["taken"]
        return True, run.codec.load(record["ok"])
    if "asked" in record:
        return False, record["asked"]
    if "failed" in record:
        flow = " > ".join(frame[0] for frame in run.stack[:-1]) or run.flow_name
        raise ExecFailed(run.stack[-1][0], flow, int(item) if item else None, record["attempts"], record["failed"])
    raise CheckpointError(f"run {run.run_id!r}: a journaled step this engine did not write ({data[:80]!r})")


async def journaled(run: _Run, curr: Any, visit: _Visit, item: str, call: Callable[[], Any], is_async: bool) -> Any:
    """``call()``'s result as a step of the run's journal. A question it asks is
    answered through the journal, and ``exec`` runs again as a new step."""
    assert run.journal is not None
    name = run.step_name(item)
    answered = 0
    while True:
        label = f"{name} (answered {answered})" if answered else name
        assert run.codec is not None
        data = await run.journal.step(label, _action(run.codec, curr, visit, item, call, is_async))
        finished, value = _read(run, visit, item, data)
        if finished:
            return value
        answered += 1
        visit.answers.append(await run.journal.ask(f"{name} question {answered}", value))


async def journaled_items(
    run: _Run, curr: Any, visit: _Visit, items: list[Any], calls: list[Callable[[], Any]], is_async: bool
) -> list[Any]:
    """The items of a parallel batch node (``calls[i]`` runs ``items[i]``),
    each its own step, all started before any is awaited (they run at the
    same time), or sent out to other workers when the journal fans them out;
    their results in order, or the failure of the first item (in order) that
    failed."""
    journal, codec = run.journal, run.codec
    assert journal is not None and codec is not None
    name = run.stack[-1][0]
    inner = _Visit(visit.seq, visit.answers, False, _refusal(name))
    inner.next = visit.next
    key = node_key(run.stack)
    if journal.fans_out(key):
        sent = [_travel(codec, item, f"item {i}", name) for i, item in enumerate(items)]
        params = _travel(codec, dict(curr.params), "the params", name) if curr.params else None
        records = await journal.fan_out(key, sent, params)
    else:
        steps = [
            journal.step(run.step_name(str(i)), _action(codec, curr, inner, str(i), call, is_async, on_worker=True))
            for i, call in enumerate(calls)
        ]
        records = await journal.all(steps)
    results = []
    for i, data in enumerate(records):
        finished, value = _read(run, inner, str(i), data)
        if not finished:  # never written: the items cannot pause
            raise CheckpointError(f"run {run.run_id!r}: item {i} of {name!r} asked a question")
        results.append(value)
    return results


def _travel(codec: _Codec, value: Any, what: str, node: str) -> Any:
    """``value`` as plain data, to go to another worker; a clear refusal when
    it cannot."""
    try:
        return codec.dump(value, what)
    except NotPlain as error:
        raise TypeError(
            f"{what} of parallel batch node `{node}` cannot go to the flow's workers: it holds a {error.type_name},"
            " which is not plain data (None, bool, int, float, str, bytes, list, tuple, dict): register the type"
            f" with minllm.register(cls, dump, load), allow pickle with {codec.pickle_hint}, or make the node a"
            " BatchNode, whose items stay on the run's worker"
        ) from None


# ---- the worker's side of a fan-out ----


def fanned_out_nodes(flow: Any) -> dict[str, Any]:
    """The parallel batch nodes of ``flow`` and of the flows inside it, whose
    items journaled runs may send out, by their key (:func:`node_key`)."""
    from ._driver import _parallel_items, _pkg

    Flow = _pkg().Flow
    found: dict[str, Any] = {}
    todo: list[tuple[str, Any, frozenset[int]]] = [("", flow, frozenset({id(flow)}))]
    while todo:
        prefix, outer, within = todo.pop()
        for node, name in _minllm._node_names(outer):
            key = f"{prefix} > {name}" if prefix else name
            if _parallel_items(node) is not None:
                found[key] = node
            if isinstance(node, Flow) and id(node) not in within:
                todo.append((key, node, within | {id(node)}))
    return found


def item_limit(node: Any) -> int:
    """How many items of ``node`` one worker runs at once: its
    ``max_workers``, else the engine's default number of threads."""
    workers = getattr(node, "max_workers", None)
    return workers if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1 else DEFAULT_THREADS


# The engine's default number of worker threads of a parallel batch (minllm::DEFAULT_THREADS).
DEFAULT_THREADS = 32


def item_step(node: Any, key: str, codec: _Codec, index: int, item: Any, params: Any) -> tuple[Callable[[], Any], bool]:
    """The step of item ``index`` (plain data) of the parallel batch node
    ``node`` keyed ``key`` (as :func:`fanned_out_nodes` found it), as the run's worker runs
    one: on a copy of the node with the run's ``params`` (plain data, or
    ``None``), its ``exec`` with the retries, waits and fallback of the
    engine, ``cur_retry`` its own; and whether the step is ``async``. It
    returns the item's record (bytes)."""
    from ._driver import _parallel_items, _pkg

    pkg = _pkg()
    is_async = _parallel_items(node) == "async"
    curr = copy.copy(node)
    curr.set_params(codec.load(params) if params is not None else {})
    value = codec.load(item)
    execute = pkg.AsyncNode._exec if is_async else pkg.Node._exec
    visit = _Visit(0, [], False, _refusal(key.rsplit(" > ", 1)[-1]))
    return _action(codec, curr, visit, str(index), functools.partial(execute, curr, value), is_async, on_worker=True), is_async
