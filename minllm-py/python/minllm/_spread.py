"""How the items of a parallel batch spread in a driven (durable or streamed)
run: as the engine spreads them (its worker threads, or tasks of the loop), the
first error winning and stopping the others between their nodes."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Callable

from . import _minllm


class _Stopped(Exception):
    """An item's run stops between two nodes: another item failed."""


class _Spread:
    """The items of a parallel batch in a driven run, spread as the engine
    spreads them (on its worker threads, or as tasks): the first error wins and
    stops the others between their nodes, an item not started yet never
    starts, and the batch returns only when every item stopped, so that nothing
    of a run goes on after it ended."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def check(self) -> None:
        if self.stop.is_set():
            raise _Stopped()

    def failed(self, error: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.stop.set()

    def results(self, results: list[Any]) -> list[Any]:
        if self.error is not None:
            raise self.error
        return results

    def on_threads(self, owner: Any, count: int, one: Callable[[int], Any]) -> list[Any]:
        """``[one(0), ...]`` on the worker threads of `owner`'s parallel batch,
        each in a copy of the caller's context (its visit and event sink)."""
        context = contextvars.copy_context()

        def guarded(i: int) -> Any:
            if self.stop.is_set():
                return None
            try:
                return context.copy().run(one, i)
            except _Stopped:
                return None
            except BaseException as error:  # the first is raised once all stopped
                self.failed(error)
                return None

        return self.results(_minllm._on_threads(owner, count, guarded))

    async def gather(self, calls: list[Any]) -> list[Any]:
        """The coroutines `calls` as tasks of the loop, their results in order."""

        async def guarded(call: Any) -> Any:
            if self.stop.is_set():
                call.close()
                return None
            try:
                return await call
            except _Stopped:
                return None
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # the first is raised once all stopped
                self.failed(error)
                return None

        return self.results(list(await asyncio.gather(*(guarded(call) for call in calls))))
