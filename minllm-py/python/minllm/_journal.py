"""Runs journaled by a durable-execution engine (Restate): the driver's walk,
with each ``exec`` (its retries, waits and fallback included) one step of the
engine's journal instead of a checkpoint record. The journal runs a step once
and keeps what it returned; when the engine replays the run after a crash, the
step's record comes back and the step does not run again. Everything outside
the steps (``prep``, ``post``, the walk) runs again on every replay, so it must
be deterministic; the store and the position need no checkpoints.

A step's record is JSON: ``{"ok": <the exec result as plain data>, "taken": n}``
(``n`` interrupt answers taken), ``{"failed": <error>, "attempts": n}`` or
``{"asked": <question>, "taken": n}``. A question is answered through the
journal (:meth:`Journal.ask`, a durable promise on Restate), and ``exec`` runs
again as a new step, where :func:`interrupt` returns the answers so far.
"""

from __future__ import annotations

import contextvars
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import _minllm
from ._plain import _JSON, CheckpointError, _Codec
from ._signals import _item, _Pause, _visit, _Visit

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


def _plain_json(value: Any) -> Any:
    """``value`` as JSON shows it (a question, for the engine's state)."""
    return json.loads(json.dumps(value, default=repr))


def _action(
    run: _Run, curr: Any, visit: _Visit, item: str, call: Callable[[], Any], is_async: bool, on_worker: bool = False
) -> Callable[[], Any]:
    """The step of one ``exec`` (``call()``): run with the answers the visit has
    so far, its outcome as a record's bytes. ``on_worker``: a sync item of a
    parallel batch, run on a worker thread of the batch (for its own
    ``cur_retry``)."""
    codec = run.codec
    assert codec is not None
    start, answers, refused = visit.next, list(visit.answers), visit.refused
    what = f"the exec result of {type(curr).__name__}" + (f" (item {item})" if item else "")

    def enter() -> tuple[_Visit, Any]:
        inner = _Visit(visit.seq, answers, False, refused)
        inner.next = start
        return inner, (_visit.set(inner), _item.set(int(item)) if item else None)

    def leave(tokens: Any) -> None:
        _visit.reset(tokens[0])
        if tokens[1] is not None:
            _item.reset(tokens[1])

    def done(inner: _Visit, value: Any) -> bytes:
        try:
            record = {"ok": codec.dump(value, what), "taken": inner.next - start}
        except Exception as error:  # noqa: BLE001 - a result that cannot be journaled fails the node
            return failed(error)
        return _JSON.encode(record).encode()

    def asked(inner: _Visit) -> bytes:
        return _JSON.encode({"asked": _plain_json(inner.asked), "taken": inner.next - start}).encode()

    def failed(error: BaseException) -> bytes:
        text = f"{type(error).__name__}: {error}"
        return _JSON.encode({"failed": text, "attempts": _attempts(curr)}).encode()

    if is_async:

        async def step_async() -> bytes:
            inner, tokens = enter()
            try:
                if on_worker:
                    _minllm._mark_parallel_item()  # `cur_retry` per item
                value = await call()
            except _Pause:
                return asked(inner)
            except Exception as error:  # noqa: BLE001 - journaled as the node's failure
                return failed(error)
            finally:
                leave(tokens)
            return done(inner, value)

        return step_async

    def step() -> bytes:
        inner, tokens = enter()
        try:
            if on_worker:
                context = contextvars.copy_context()
                value = _minllm._on_threads(curr, 1, lambda _: context.run(call))[0]
            else:
                value = call()
        except _Pause:
            return asked(inner)
        except Exception as error:  # noqa: BLE001 - journaled as the node's failure
            return failed(error)
        finally:
            leave(tokens)
        return done(inner, value)

    return step


def _read(run: _Run, visit: _Visit, item: str, data: bytes) -> tuple[bool, Any]:
    """A step's record: ``(True, exec result)`` (the visit takes its answers),
    ``(False, question)``, or the node's :class:`ExecFailed`."""
    assert run.codec is not None
    record = json.loads(data)
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
        data = await run.journal.step(label, _action(run, curr, visit, item, call, is_async))
        finished, value = _read(run, visit, item, data)
        if finished:
            return value
        answered += 1
        visit.answers.append(await run.journal.ask(f"{name} question {answered}", value))


async def journaled_items(run: _Run, curr: Any, visit: _Visit, calls: list[Callable[[], Any]], is_async: bool) -> list[Any]:
    """The items of a parallel batch node, each its own step, all started
    before any is awaited (they run at the same time); their results in order,
    or the failure of the first item (in order) that failed."""
    assert run.journal is not None
    name = run.stack[-1][0]
    items = _Visit(visit.seq, visit.answers, False, (
        f"interrupt() cannot pause inside the items of parallel batch node {name!r} in a journaled run, which"
        " run at the same time: make it a BatchNode, or ask before or after it"
    ))
    items.next = visit.next
    steps = [
        run.journal.step(run.step_name(str(i)), _action(run, curr, items, str(i), call, is_async, on_worker=True))
        for i, call in enumerate(calls)
    ]
    results = []
    for i, data in enumerate(await run.journal.all(steps)):
        finished, value = _read(run, items, str(i), data)
        if not finished:  # never written: the items cannot pause
            raise CheckpointError(f"run {run.run_id!r}: item {i} of {name!r} asked a question")
        results.append(value)
    return results
