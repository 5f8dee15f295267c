"""Durable runs of Python flows: the entry points of checkpointed and streamed
runs (``Flow.run`` with a checkpointer, ``Flow.resume``, ``Flow.stream``).

The pieces: ``_plain.py`` (values as plain data), ``_checkpoints.py`` (the
backends, the Rust engine's own), ``_signals.py`` (``interrupt``, ``emit``),
``_driver.py`` (the walk, node by node).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from typing import Any, AsyncIterator, Iterator

from ._checkpoints import _Checkpointer, _fields_to_store
from ._driver import _drive, _pkg, _start, _sync, _sync_drive
from ._plain import CheckpointError
from ._signals import _MISSING, Event

def run(flow: Any, shared: Any, checkpointer: Any, run_id: Any) -> Any:
    run = _start(flow, checkpointer, run_id, None)
    return _sync(_drive(flow, shared, run, []))


async def run_async(flow: Any, shared: Any, checkpointer: Any, run_id: Any) -> Any:
    run = _start(flow, checkpointer, run_id, None)
    return await _drive(flow, shared, run, [])


def _resume_plan(
    flow: Any, run_id: str, checkpointer: Any, answer: Any, checkpoint: Any, shared: Any
) -> tuple[dict[str, Any], Any, list[Any]]:
    if not isinstance(checkpointer, _Checkpointer):
        raise TypeError("resume needs checkpointer=SqliteCheckpointer(...) or MemoryCheckpointer()")
    cp = checkpointer._cp.get(run_id, checkpoint)
    if cp is None:
        raise CheckpointError(f"run {run_id!r} has no checkpoint" + (f" {checkpoint}" if checkpoint else "s"))
    store = _fields_to_store(checkpointer._codec, cp["fields"])
    if shared is None:
        shared = store
    elif checkpoint is None:
        shared.clear()
        shared.update(store)
    answers = [checkpointer._codec.decode(a) for a in cp["answers"]]
    if answer is not _MISSING:
        if cp["status"] != "paused":
            raise CheckpointError(f"run {run_id!r} is not paused, so there is nothing to answer")
        answers.append(answer)
    return cp, shared, answers


def resume(flow: Any, run_id: str, checkpointer: Any, answer: Any, checkpoint: Any, shared: Any) -> Any:
    return _sync(resume_async(flow, run_id, checkpointer, answer, checkpoint, shared))


async def resume_async(flow: Any, run_id: str, checkpointer: Any, answer: Any, checkpoint: Any, shared: Any,
                       events: Any = None) -> Any:
    # The run is held from reading its checkpoint to its end.
    lock = checkpointer._cp.lock(run_id) if isinstance(checkpointer, _Checkpointer) else None
    try:
        cp, shared, answers = _resume_plan(flow, run_id, checkpointer, answer, checkpoint, shared)
        if cp["status"] == "finished":
            return shared
        run = _start(flow, checkpointer, run_id, events)
        run.follow(cp)
        run.next = (checkpointer._cp.get(run_id)["seq"]) + 1
        run.again = (cp["visit"], answers)
        await _drive(flow, shared, run, list(zip(cp["path"], cp["steps"])), locked=True)
        return shared
    finally:
        if lock is not None:
            lock.release()


# ---- streams ----


def stream(flow: Any, shared: Any, checkpointer: Any, run_id: Any) -> Iterator[Event]:
    """The flow's events while it runs on a thread of its own."""
    events: queue.Queue[Any] = queue.Queue()
    done = object()
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            _sync(_drive(flow, shared, _start(flow, checkpointer, run_id, events.put), []))
        except BaseException as error:  # handed to the caller
            outcome.append(error)
        finally:
            events.put(done)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
    thread.start()
    while True:
        event = events.get()
        if event is done:
            break
        yield event
    thread.join()
    if outcome:
        raise outcome[0]


async def stream_async(flow: Any, shared: Any, checkpointer: Any, run_id: Any) -> AsyncIterator[Event]:
    """The flow's events while it runs: an async flow as a task of the current
    loop, a sync one on a thread of its own (so that it never blocks the loop)."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    done = object()
    loop = asyncio.get_running_loop()
    is_async = isinstance(flow, _pkg().AsyncFlow)

    def put(event: Any) -> None:
        if is_async:
            events.put_nowait(event)
        else:
            loop.call_soon_threadsafe(events.put_nowait, event)

    run = _start(flow, checkpointer, run_id, put)

    async def work() -> None:
        try:
            if is_async:
                await _drive(flow, shared, run, [])
            else:
                context = contextvars.copy_context()
                await loop.run_in_executor(None, context.run, _sync_drive, flow, shared, run)
        finally:
            events.put_nowait(done)

    task = asyncio.ensure_future(work())
    try:
        while True:
            event = await events.get()
            if event is done:
                break
            yield event
    finally:
        if not task.done():
            task.cancel()
    task.result()
