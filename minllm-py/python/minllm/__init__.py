"""minllm: LLM applications as graphs, on a Rust engine.

The classes of MinLLM/PocketFlow, with the same names, behaviour and warnings:
change ``from pocketflow import ...`` to ``from minllm import ...`` and a program
runs unchanged. The orchestration (successor lookup, params, node copies,
retries and fallback, batch loops, warnings, step counting) runs in Rust and
calls your ``prep``/``exec``/``post`` methods.

Beyond the original:

* ``ParallelBatchNode(max_workers=N)`` / ``ParallelBatchFlow(max_workers=N)``:
  sync ``exec`` calls (or whole inner flows) on a thread pool, so blocking LLM
  clients run in parallel; results keep the input order; the first error wins.
* ``cur_retry`` is right for each item even when items run at the same time.
* ``Flow(start=a, max_steps=N)``: a loop past N steps raises :class:`FlowError`;
  ``flow.validate()`` lists wiring problems (:class:`Problem`, a ``str`` with a
  ``kind``, ``flow`` and ``node``); ``flow.to_mermaid()`` draws it.
* :class:`SharedStore`: a mapping to use as ``shared``.
* Ctrl-C stops a running flow, parallel batches included.
"""

from __future__ import annotations

# Like the original, the package has no `__all__`: `from minllm import *` also
# gives these modules, which programs written for it may rely on.
import asyncio
import collections.abc as _abc
import copy
import time
import warnings
from typing import Any as _Any
from typing import TypeVar as _TypeVar

from . import _durable, _minllm, _signals
from ._checkpoints import CheckpointInfo as CheckpointInfo
from ._checkpoints import MemoryCheckpointer as MemoryCheckpointer
from ._checkpoints import SqliteCheckpointer as SqliteCheckpointer
from ._plain import CheckpointError as CheckpointError
from ._plain import register as register
from ._signals import Event as Event
from ._signals import Interrupted as Interrupted
from ._signals import emit as emit
from ._signals import interrupt as interrupt
from ._minllm import FlowError, SharedStore

_Core = _minllm.NodeCore
_check_setting = _minllm._check_setting
_T = _TypeVar("_T")


class Problem(str):
    """A problem ``Flow.validate()`` found: a ``str`` that reads as its message, with
    what kind of problem it is (``kind``: ``"unbounded_cycle"``, ``"unreachable"``,
    ``"no_start"``, ``"not_a_node"``, ``"bad_setting"``, ...), the path of the flow it is
    in (``flow``) and the node it is about, if any (``node``)."""

    kind: str
    flow: str
    node: str | None

    def __new__(cls, message: str, kind: str, flow: str, node: str | None = None) -> Problem:
        problem = super().__new__(cls, message)
        problem.kind = kind
        problem.flow = flow
        problem.node = node
        return problem

    def __repr__(self) -> str:
        return f"Problem({str(self)!r}, kind={self.kind!r}, flow={self.flow!r}, node={self.node!r})"

    def __reduce__(self) -> tuple[_Any, ...]:
        return (Problem, (str(self), self.kind, self.flow, self.node))


class BaseNode(_Core):
    """A step of work: ``prep(shared)`` -> ``exec(prep_res)`` -> ``post(shared, prep_res, exec_res)``.

    ``a >> b`` runs ``b`` after ``a``; ``a - "action" >> b`` runs ``b`` when
    ``a``'s ``post`` returns ``"action"``.
    """

    params: dict[str, _Any]
    successors: dict[_Any, _Any]

    def __init__(self) -> None:
        self.params, self.successors = {}, {}

    def run(self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None) -> _Any:
        """Runs this node alone on ``shared``. With a ``checkpointer`` and a
        ``run_id``, as a checkpointed run (see ``Flow.run``): a batch node's items
        are recorded as they finish, and ``Flow(start=node).resume`` finishes it."""
        if checkpointer is None and run_id is None:
            return _Core.run(self, shared)
        return _durable.run(_alone(self), shared, checkpointer, run_id)

    def next(self, node: _T, action: _Any = "default") -> _T:
        """Runs ``node`` after this one returns ``action``; returns ``node``."""
        if action in self.successors:
            warnings.warn(f"Overwriting successor for action '{action}'")
        self.successors[action] = node
        return node

    def __rshift__(self, other: _T) -> _T:
        return self.next(other)

    def __sub__(self, action: str) -> _ConditionalTransition:
        if isinstance(action, str):
            return _ConditionalTransition(self, action)
        raise TypeError("Action must be a string")


class _ConditionalTransition:
    """``node - "action"``, waiting for ``>> target``."""

    def __init__(self, src: BaseNode, action: str) -> None:
        self.src, self.action = src, action

    def __rshift__(self, tgt: _T) -> _T:
        return self.src.next(tgt, self.action)


class Node(BaseNode):
    """A node whose ``exec`` is retried: ``max_retries`` attempts in all, ``wait``
    seconds apart, then ``exec_fallback(prep_res, exc)``."""

    max_retries: int
    wait: float

    def __init__(self, max_retries: int = 1, wait: float = 0) -> None:
        super().__init__()
        self.max_retries, self.wait = max_retries, wait

    def exec_fallback(self, prep_res: _Any, exc: Exception) -> _Any:
        raise exc

    _exec = _Core._node_exec


class BatchNode(Node):
    """``prep`` returns items; ``exec`` runs once per item; ``post`` gets the list of results."""

    _exec = _Core._batch_exec


class ParallelBatchNode(BatchNode):
    """A :class:`BatchNode` whose items' ``exec`` run on ``max_workers`` threads
    (an int of 1 or more; ``None``: one per item, up to 32).

    Results keep the input order. The first error stops new items from starting
    and is raised with its own type. Blocking calls that release the GIL (HTTP
    clients, ``time.sleep``) run in parallel.
    """

    max_workers: int | None

    def __init__(self, max_retries: int = 1, wait: float = 0, max_workers: int | None = None) -> None:
        _check_setting(self, "max_workers", max_workers)
        super().__init__(max_retries, wait)
        self.max_workers = max_workers

    _exec = _Core._parallel_batch_exec


class Flow(BaseNode):
    """Runs nodes from ``start``, following each node's action, until an action has
    no successor. ``max_steps`` (an int of 0 or more, or ``None`` for no limit)
    bounds each pass (a :class:`FlowError` past it)."""

    start_node: BaseNode | None
    max_steps: int | None

    def __init__(self, start: BaseNode | None = None, max_steps: int | None = None) -> None:
        _check_setting(self, "max_steps", max_steps)
        super().__init__()
        self.start_node = start
        self.max_steps = max_steps

    start = _Core._flow_start
    get_next_node = _Core._flow_get_next_node
    _orch = _Core._flow_orch
    _run = _Core._flow_run
    post = _Core._flow_post

    def run(self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None) -> _Any:
        """Runs the flow on ``shared`` and returns its last action. With a
        ``checkpointer`` and a ``run_id``, checkpoints before every node and records
        each ``exec`` result before its ``post``: :meth:`resume` finishes the run
        after a crash, an error or an :func:`interrupt`, in any process."""
        if checkpointer is None and run_id is None:
            return _Core.run(self, shared)
        return _durable.run(self, shared, checkpointer, run_id)

    def resume(
        self, run_id: str, checkpointer: _Any, answer: _Any = _signals._MISSING, checkpoint: int | None = None,
        shared: _Any = None,
    ) -> _Any:
        """Finishes run ``run_id`` from its newest checkpoint (or from ``checkpoint``,
        as a new branch, with ``shared`` when given) and returns its store. ``answer``
        is what the paused node's :func:`interrupt` returns. What finished before is
        not done again. Raises :class:`Interrupted` when the run pauses again."""
        return _durable.resume(self, run_id, checkpointer, answer, checkpoint, shared)

    def stream(self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None) -> _abc.Iterator[Event]:
        """Runs the flow on a thread of its own and yields its :class:`Event` objects
        as they happen: ``node_started``, ``node_finished``, and ``custom`` values that
        hooks :func:`emit`. Errors (and :class:`Interrupted`) are raised at the end."""
        return _durable.stream(self, shared, checkpointer, run_id)

    def stream_async(
        self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None
    ) -> _abc.AsyncIterator[Event]:
        """``stream`` as an async iterator: an async flow runs as a task of the current
        loop, a sync one on a thread of its own."""
        return _durable.stream_async(self, shared, checkpointer, run_id)
    def validate(self) -> list[Problem]:
        """The flow's wiring problems, and the settings a run would refuse; empty when
        there are none. Each :class:`Problem` reads as its message."""
        return [Problem(*problem) for problem in _Core._validate(self)]

    to_mermaid = _Core._to_mermaid


class BatchFlow(Flow):
    """``prep`` returns a list of param dicts; the flow runs once per dict, merged over its own params."""

    _run = _Core._batch_flow_run


class ParallelBatchFlow(BatchFlow):
    """A :class:`BatchFlow` whose runs happen on ``max_workers`` threads."""

    max_workers: int | None

    def __init__(
        self, start: BaseNode | None = None, max_steps: int | None = None, max_workers: int | None = None
    ) -> None:
        _check_setting(self, "max_workers", max_workers)
        super().__init__(start, max_steps)
        self.max_workers = max_workers

    _run = _Core._parallel_batch_flow_run


class AsyncNode(Node):
    """A node with async hooks: ``prep_async``, ``exec_async``, ``exec_fallback_async``, ``post_async``."""

    async def prep_async(self, shared: _Any) -> _Any:
        pass

    async def exec_async(self, prep_res: _Any) -> _Any:
        pass

    async def exec_fallback_async(self, prep_res: _Any, exc: Exception) -> _Any:
        raise exc

    async def post_async(self, shared: _Any, prep_res: _Any, exec_res: _Any) -> _Any:
        pass

    _exec = _Core._async_exec
    async def run_async(self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None) -> _Any:
        # A real coroutine function at the entry point (so `inspect` and the
        # "never awaited" warning behave as with the original); the run itself
        # is one Rust future.
        if checkpointer is None and run_id is None:
            return await _Core._async_run(self, shared)
        return await _durable.run_async(_alone(self), shared, checkpointer, run_id)

    _run_async = _Core._async_node_run
    _run = _Core._async_run_sync_refused


class AsyncBatchNode(AsyncNode, BatchNode):
    """An async batch: each item's ``exec_async`` awaited in turn."""

    _exec = _Core._async_batch_exec


class AsyncParallelBatchNode(AsyncNode, BatchNode):
    """An async batch: every item's ``exec_async`` at once (``asyncio.gather``)."""

    _exec = _Core._async_parallel_batch_exec


class AsyncFlow(Flow, AsyncNode):
    """A flow that awaits async nodes and runs sync ones."""

    _orch_async = _Core._async_flow_orch
    _run_async = _Core._async_flow_run
    post_async = _Core._async_flow_post

    async def run_async(self, shared: _Any, checkpointer: _Any = None, run_id: str | None = None) -> _Any:
        """``Flow.run`` for async flows, with the same checkpoint arguments."""
        if checkpointer is None and run_id is None:
            return await _Core._async_run(self, shared)
        return await _durable.run_async(self, shared, checkpointer, run_id)

    async def resume_async(
        self, run_id: str, checkpointer: _Any, answer: _Any = _signals._MISSING, checkpoint: int | None = None,
        shared: _Any = None,
    ) -> _Any:
        """``Flow.resume`` for async flows."""
        return await _durable.resume_async(self, run_id, checkpointer, answer, checkpoint, shared)



class AsyncBatchFlow(AsyncFlow, BatchFlow):
    """An async flow run once per params dict, one after the other."""

    _run_async = _Core._async_batch_flow_run


class AsyncParallelBatchFlow(AsyncFlow, BatchFlow):
    """An async flow run once per params dict, all at once (``asyncio.gather``)."""

    _run_async = _Core._async_parallel_batch_flow_run


def _alone(node: BaseNode) -> Flow:
    """A flow of `node` alone (its successors are not run, as `node.run` does
    not run them), for a checkpointed run of one node."""
    if node.successors:
        _warn("Node won't run successors. Use Flow.")
    alone = copy.copy(node)
    alone.successors = {}
    return AsyncFlow(start=alone) if isinstance(node, AsyncNode) else Flow(start=alone)


def _warn(message: str) -> None:
    # Warnings come from here, one place, as the original's come from its own
    # module: with the default filters each is shown once, not once per caller.
    warnings.warn(message)


def _merge(base: _Any, over: _Any) -> dict[str, _Any]:
    return {**base, **over}


def _spread(params: _Any) -> dict[str, _Any]:
    return {**params}


_minllm._register(
    {
        "AsyncNode": AsyncNode,
        "Flow": Flow,
        "BatchNode": BatchNode,
        "AsyncBatchNode": AsyncBatchNode,
        "AsyncParallelBatchNode": AsyncParallelBatchNode,
        "merge": _merge,
        "spread": _spread,
        "warn": _warn,
    }
)
_abc.MutableMapping.register(SharedStore)
