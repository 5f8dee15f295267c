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
  ``flow.validate()`` lists wiring problems; ``flow.to_mermaid()`` draws it.
* :class:`SharedStore`: a mapping to use as ``shared``.
* Ctrl-C stops a running flow, parallel batches included.
"""

from __future__ import annotations

import collections.abc as _abc
from typing import Any

from . import _minllm
from ._minllm import FlowError, SharedStore, _ConditionalTransition

__all__ = [
    "BaseNode",
    "Node",
    "BatchNode",
    "ParallelBatchNode",
    "Flow",
    "BatchFlow",
    "ParallelBatchFlow",
    "AsyncNode",
    "AsyncBatchNode",
    "AsyncParallelBatchNode",
    "AsyncFlow",
    "AsyncBatchFlow",
    "AsyncParallelBatchFlow",
    "SharedStore",
    "FlowError",
]

_Core = _minllm.NodeCore


class BaseNode(_Core):
    """A step of work: ``prep(shared)`` -> ``exec(prep_res)`` -> ``post(shared, prep_res, exec_res)``.

    ``a >> b`` runs ``b`` after ``a``; ``a - "action" >> b`` runs ``b`` when
    ``a``'s ``post`` returns ``"action"``.
    """

    def __init__(self) -> None:
        self.params, self.successors = {}, {}


class Node(BaseNode):
    """A node whose ``exec`` is retried: ``max_retries`` attempts in all, ``wait``
    seconds apart, then ``exec_fallback(prep_res, exc)``."""

    def __init__(self, max_retries: int = 1, wait: float = 0) -> None:
        super().__init__()
        self.max_retries, self.wait = max_retries, wait

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    _exec = _Core._node_exec


class BatchNode(Node):
    """``prep`` returns items; ``exec`` runs once per item; ``post`` gets the list of results."""

    _exec = _Core._batch_exec


class ParallelBatchNode(BatchNode):
    """A :class:`BatchNode` whose items' ``exec`` run on ``max_workers`` threads.

    Results keep the input order. The first error stops new items from starting
    and is raised with its own type. Blocking calls that release the GIL (HTTP
    clients, ``time.sleep``) run in parallel.
    """

    def __init__(self, max_retries: int = 1, wait: float = 0, max_workers: int | None = None) -> None:
        super().__init__(max_retries, wait)
        self.max_workers = max_workers

    _exec = _Core._parallel_batch_exec


class Flow(BaseNode):
    """Runs nodes from ``start``, following each node's action, until an action has
    no successor. ``max_steps`` bounds the run (a :class:`FlowError` past it)."""

    def __init__(self, start: BaseNode | None = None, max_steps: int | None = None) -> None:
        super().__init__()
        self.start_node = start
        self.max_steps = max_steps

    start = _Core._flow_start
    get_next_node = _Core._flow_get_next_node
    _orch = _Core._flow_orch
    _run = _Core._flow_run
    post = _Core._flow_post
    validate = _Core._validate
    to_mermaid = _Core._to_mermaid


class BatchFlow(Flow):
    """``prep`` returns a list of param dicts; the flow runs once per dict, merged over its own params."""

    _run = _Core._batch_flow_run


class ParallelBatchFlow(BatchFlow):
    """A :class:`BatchFlow` whose runs happen on ``max_workers`` threads."""

    def __init__(
        self, start: BaseNode | None = None, max_steps: int | None = None, max_workers: int | None = None
    ) -> None:
        super().__init__(start, max_steps)
        self.max_workers = max_workers

    _run = _Core._parallel_batch_flow_run


class AsyncNode(Node):
    """A node with async hooks: ``prep_async``, ``exec_async``, ``exec_fallback_async``, ``post_async``."""

    async def prep_async(self, shared: Any) -> Any:
        pass

    async def exec_async(self, prep_res: Any) -> Any:
        pass

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        pass

    _exec = _Core._async_exec
    run_async = _Core._async_run
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


class AsyncBatchFlow(AsyncFlow, BatchFlow):
    """An async flow run once per params dict, one after the other."""

    _run_async = _Core._async_batch_flow_run


class AsyncParallelBatchFlow(AsyncFlow, BatchFlow):
    """An async flow run once per params dict, all at once (``asyncio.gather``)."""

    _run_async = _Core._async_parallel_batch_flow_run


_minllm._register(AsyncNode, Flow)
_abc.MutableMapping.register(SharedStore)
