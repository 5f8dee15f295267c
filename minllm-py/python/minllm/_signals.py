"""What a node's hooks reach without arguments in a driven run: the pause of
:func:`interrupt` and the events of :func:`emit`, through context variables that
the driver sets around each node (and each batch item)."""

from __future__ import annotations

import contextvars
from typing import Any

_MISSING: Any = object()


class Interrupted(Exception):
    """A node called :func:`interrupt`: the run is paused, in its checkpoints only.
    ``run_id``, ``value`` (what the node asked) and ``node`` (where)."""

    def __init__(self, run_id: str, value: Any, node: str) -> None:
        super().__init__(f"run {run_id!r} paused at {node}: {value!r}")
        self.run_id, self.value, self.node = run_id, value, node


class _Pause(BaseException):
    """What interrupt() raises inside the node: not an Exception, so retries and
    ``except Exception`` let it through."""


class _Visit:
    def __init__(self, seq: int, answers: list[Any], fresh: bool, refused: str | None = None) -> None:
        self.seq, self.answers, self.next, self.asked = seq, answers, 0, _MISSING
        # A node's first try has no records to look up.
        self.fresh = fresh
        # Why the node cannot pause, when it cannot (an item of a parallel batch flow).
        self.refused = refused


_visit: contextvars.ContextVar[_Visit | None] = contextvars.ContextVar("minllm_visit", default=None)
_sink: contextvars.ContextVar[Any] = contextvars.ContextVar("minllm_sink", default=None)
_item: contextvars.ContextVar[int | None] = contextvars.ContextVar("minllm_item", default=None)


def interrupt(value: Any) -> Any:
    """Pauses a checkpointed run to ask ``value`` (a question, a draft); the caller
    gets :class:`Interrupted`. Resumed with an answer
    (``flow.resume(run_id, checkpointer=cp, answer=...)``, in any process), the
    node runs again and this call returns the answer. The n-th call in a node gets
    the n-th answer; an ``exec`` that finished is not run again."""
    visit = _visit.get()
    if visit is None:
        raise RuntimeError(
            "interrupt() needs a checkpointed run: flow.run(shared, checkpointer=..., run_id=...)"
        )
    if visit.refused is not None:
        raise RuntimeError(visit.refused)
    if visit.next < len(visit.answers):
        answer = visit.answers[visit.next]
        visit.next += 1
        return answer
    visit.asked = value
    raise _Pause()


class Event:
    """One thing that happened in a streamed run: ``kind`` (``"node_started"``,
    ``"node_finished"``, ``"custom"``), ``flow`` (``outer > inner``, with ``[i]`` for a
    batch flow's item), ``node``, ``action`` and ``elapsed`` (seconds) for
    ``node_finished``, ``value`` for ``custom`` (and ``item``, the index of the batch
    node's item that emitted it, else ``None``)."""

    def __init__(
        self,
        kind: str,
        flow: str,
        node: str,
        action: Any = None,
        value: Any = None,
        elapsed: float | None = None,
        item: int | None = None,
    ) -> None:
        self.kind, self.flow, self.node = kind, flow, node
        self.action, self.value, self.elapsed, self.item = action, value, elapsed, item

    def __repr__(self) -> str:
        extra = f", action={self.action!r}" if self.kind == "node_finished" else ""
        extra += f", value={self.value!r}" if self.kind == "custom" else ""
        return f"Event({self.kind!r}, node={self.node!r}{extra})"


def emit(value: Any) -> None:
    """Sends ``value`` to the caller of a streamed run as a ``"custom"`` event (each
    token of an LLM answer, progress). Outside a streamed run it does nothing."""
    sink = _sink.get()
    if sink is not None:
        sink[0](Event("custom", sink[1], sink[2], value=value, item=_item.get()))
