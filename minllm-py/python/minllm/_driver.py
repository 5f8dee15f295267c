"""The walk of a durable or streamed run: node by node as ``Flow._orch`` does
(node copies, params, ``get_next_node``), checkpointing before each node and
recording each ``exec`` result (each batch item's) before its ``post``; or, in
a run journaled by a durable-execution engine (``_journal.py``), each ``exec``
a step of the engine's journal."""

from __future__ import annotations

import copy
import functools
import json
import sys
import threading
import time
from typing import Any, Callable

from . import _journal, _minllm
from ._checkpoints import _Checkpointer
from ._plain import _JSON, CheckpointError
from ._signals import _MISSING, Event, Interrupted, _item, _Pause, _sink, _visit, _Visit
from ._spread import _Spread

_PACKAGE: list[Any] = []


def _pkg() -> Any:
    """The package, for its classes (it imports this module first)."""
    if not _PACKAGE:
        _PACKAGE.append(sys.modules[__name__.rpartition(".")[0]])
    return _PACKAGE[0]


class _Run:
    """One run: its checkpointer and journal, its events, the stack of flows."""

    def __init__(self, checkpointer: _Checkpointer | None, run_id: str | None, events: Any, flow_name: str) -> None:
        self.cp, self.run_id, self.events, self.flow_name = checkpointer, run_id, events, flow_name
        self.codec = checkpointer._codec if checkpointer is not None else None
        self.last = 0  # the newest checkpoint (the parent of the next)
        self.next = 1
        self.fields: dict[str, bytes] = {}
        self.stack: list[list[Any]] = []  # [name, steps] per flow entered, the node last
        self.again: tuple[int, list[Any]] | None = None  # the visit to continue
        # A node's checkpoint waits to be written with its first exec record
        # (one write per transition); a crash before that resumes from the
        # checkpoint before, whose exec is recorded.
        self.staged: tuple[Any, ...] | None = None
        # Where the last node ran, for the run's last checkpoint.
        self.last_stack: list[list[Any]] = []
        self.recording = threading.Lock()
        # The run that writes the checkpoints (an item's run is inside one).
        self.root = self
        # The items an item's run is one of (it stops between nodes when another fails).
        self.spread: _Spread | None = None
        # The engine's journal, in a journaled run (no checkpointer then).
        self.journal: _journal.Journal | None = None

    # -- checkpoints --

    def _save_fields(self, shared: Any) -> dict[str, bytes]:
        assert self.codec is not None
        fields = {}
        for key, value in shared.items():
            name = key if isinstance(key, str) and not key.startswith("\0") else "\0" + self.codec.encode(key, "a key").decode()
            fields[name] = self.codec.encode(value, f"shared[{key!r}]")
        return fields

    def write(self, status: str, fields: dict[str, bytes], detail: bytes | None = None, visit: int | None = None,
              answers: list[Any] | None = None) -> int:
        assert self.cp is not None and self.codec is not None
        seq = self.next
        marked = [(n, None if self.fields.get(n) == v else v) for n, v in fields.items()]
        encoded = [self.codec.encode(a, "an answer") for a in answers or []]
        path = [frame[0] for frame in self.stack]
        steps = [frame[1] for frame in self.stack]
        self.flush()
        args = (seq, self.last or None, visit or seq, path, steps, status, detail, encoded, marked)
        if status == "running":
            self.staged = args
        else:
            self.cp._cp.put(self.run_id, *args)
        self.last, self.next, self.fields = seq, seq + 1, fields
        return seq

    def flush(self) -> None:
        if self.staged is not None and self.cp is not None:
            staged, self.staged = self.staged, None
            self.cp._cp.put(self.run_id, *staged)

    def follow(self, checkpoint: dict[str, Any]) -> None:
        self.last = checkpoint["seq"]
        self.fields = dict(checkpoint["fields"])

    # -- events --

    def send(self, kind: str, node: str, **more: Any) -> None:
        if self.events is not None:
            self.events(Event(kind, " > ".join(f[0] for f in self.stack[:-1]) or self.flow_name, node, **more))

    def key(self, item: str) -> str:
        """The key of a record of the node running (of its batch item `item`)."""
        name: str = self.stack[-1][0]
        return name + (f"[{item}]" if item else "")

    def step_name(self, item: str) -> str:
        """Where the node running (its batch item `item`) is: ``flow#step > node#step[item]``."""
        return " > ".join(f"{name}#{steps}" for name, steps in self.stack) + (f"[{item}]" if item else "")

    # -- nodes --

    def enter(self, shared: Any) -> _Visit | None:
        """The visit of the node about to run: the one to continue, or a new one
        with its checkpoint (a journaled run's has none); ``None`` without a
        checkpointer."""
        if self.journal is not None:
            return _Visit(0, [], True)
        if self.cp is None:
            return None
        if self.again is not None:
            seq, answers = self.again
            self.again = None
            return _Visit(seq, answers, False)
        return _Visit(self.write("running", self._save_fields(shared)), [], True)

    async def node(self, curr: Any, shared: Any, name: str) -> Any:
        pkg = _pkg()
        AsyncNode, Node = pkg.AsyncNode, pkg.Node
        visit = self.enter(shared)
        where = " > ".join(f[0] for f in self.stack[:-1]) or self.flow_name
        self.last_stack = [list(frame) for frame in self.stack]
        started = time.perf_counter()
        self.send("node_started", name)
        tokens = (_visit.set(visit), _sink.set((self.events, where, name) if self.events is not None else None))
        try:
            is_async = isinstance(curr, AsyncNode)
            if is_async:
                own_run = type(curr)._run_async is AsyncNode._run_async
            else:
                own_run = type(curr)._run is Node._run
            # A streamed parallel batch runs its items here too, so that what
            # they emit from their threads reaches the stream.
            parallel = self.events is not None and _parallel_items(curr) is not None
            runs = _parallel_runs(curr)
            if runs is not None and (visit is not None or self.events is not None):
                action = await self.parallel_flow(curr, shared, visit, runs == "async")
            elif (visit is None and not parallel) or not own_run:
                # Not checkpointed, or a node with a `_run` of its own: as the engine runs it.
                action = await curr._run_async(shared) if is_async else curr._run(shared)
            else:
                p = await curr.prep_async(shared) if is_async else curr.prep(shared)
                e = await self.exec(curr, p, visit, is_async)
                action = await curr.post_async(shared, p, e) if is_async else curr.post(shared, p, e)
        except _Pause:
            if self.journal is not None:
                raise RuntimeError(
                    f"interrupt() in node {name!r} outside its exec: a journaled run pauses only in exec"
                    " (prep and post run again on every replay)"
                ) from None
            assert visit is not None and self.codec is not None
            detail = self.codec.encode(visit.asked, "the interrupt's value")
            self.write("paused", dict(self.fields), detail, visit.seq, visit.answers)
            path = " > ".join(f[0] for f in self.stack)
            raise Interrupted(self.run_id or "", visit.asked, path) from None
        except BaseException:
            # The failed node's checkpoint is kept: the run resumes there.
            self.flush()
            raise
        finally:
            _visit.reset(tokens[0])
            _sink.reset(tokens[1])
        self.send("node_finished", name, action=action, elapsed=time.perf_counter() - started)
        return action

    async def exec(self, curr: Any, p: Any, visit: _Visit | None, is_async: bool) -> Any:
        """``curr._exec(p)``, or its recorded result; batch items one by one (or
        on threads, or as tasks, for parallel batches), each item recorded."""
        pkg = _pkg()
        AsyncBatchNode, AsyncNode, BatchNode, Node = pkg.AsyncBatchNode, pkg.AsyncNode, pkg.BatchNode, pkg.Node
        parallel = _parallel_items(curr)
        if parallel is not None:
            return await self.parallel(curr, list(p or []), visit, parallel)
        if is_async:
            per_item = type(curr)._exec is AsyncBatchNode._exec
        else:
            per_item = type(curr)._exec is BatchNode._exec
        if not per_item:
            return await self.recorded(curr, visit, "", lambda: curr._exec(p), is_async)
        results = []
        for i, item in enumerate(p or []):
            one = (lambda item=item: AsyncNode._exec(curr, item)) if is_async else (lambda item=item: Node._exec(curr, item))
            results.append(await self.recorded(curr, visit, str(i), one, is_async))
        return results

    async def parallel(self, curr: Any, items: list[Any], visit: _Visit | None, kind: str) -> list[Any]:
        """A parallel batch's items, each recorded as it finishes: on the
        engine's worker threads (``max_workers``, else one per item up to its
        default), or as tasks of the loop; ``cur_retry`` is each item's own. The
        first error stops items that have not started."""
        AsyncNode, Node = _pkg().AsyncNode, _pkg().Node
        if self.journal is not None and visit is not None:
            execute = AsyncNode._exec if kind == "async" else Node._exec
            calls: list[Callable[[], Any]] = [functools.partial(execute, curr, item) for item in items]
            return await _journal.journaled_items(self, curr, visit, items, calls, kind == "async")
        spread = _Spread()
        if kind == "async":

            async def task(i: int) -> Any:
                _minllm._mark_parallel_item()  # `cur_retry` per item
                return await self.recorded(curr, visit, str(i), lambda: AsyncNode._exec(curr, items[i]), True)

            return await spread.gather([task(i) for i in range(len(items))])

        def one(i: int) -> Any:
            return _sync(self.recorded(curr, visit, str(i), lambda: Node._exec(curr, items[i]), False))

        return spread.on_threads(curr, len(items), one)

    async def parallel_flow(self, curr: Any, shared: Any, visit: _Visit | None, is_async: bool) -> Any:
        """A parallel batch flow's runs at the same time, as the engine runs them
        (on its worker threads, or as tasks of the loop), each node by node in an
        :class:`_ItemRun` whose execs are recorded under the batch flow's visit;
        then its ``post``. A resumed run runs them again: ``prep`` and ``post``
        rebuild the store, and each ``exec`` that finished is read back."""
        prep_res = await curr.prep_async(shared) if is_async else curr.prep(shared)
        items = list(prep_res or [])
        spread = _Spread()

        def one(i: int) -> Any:
            return _ItemRun(self, visit, i, spread).flow(curr, shared, {**curr.params, **items[i]}, [])

        if self.journal is not None:
            # One after the other: a journal's steps come in the same order on every replay.
            for i in range(len(items)):
                await one(i)
        elif is_async:
            await spread.gather([one(i) for i in range(len(items))])
        else:
            spread.on_threads(curr, len(items), lambda i: _sync(one(i)))
        return await curr.post_async(shared, prep_res, None) if is_async else curr.post(shared, prep_res, None)

    async def recorded(
        self, curr: Any, visit: _Visit | None, item: str, call: Callable[[], Any], is_async: bool
    ) -> Any:
        """``call()``'s result, recorded under the node (and `item`); the
        record of an earlier try of this visit when there is one. Without a
        visit (a stream without checkpoints), just ``call()``."""
        token = _item.set(int(item)) if item else None
        try:
            return await self._recorded(curr, visit, item, call, is_async)
        finally:
            if token is not None:
                _item.reset(token)

    async def _recorded(
        self, curr: Any, visit: _Visit | None, item: str, call: Callable[[], Any], is_async: bool
    ) -> Any:
        if visit is not None and self.journal is not None:
            return await _journal.journaled(self, curr, visit, item, call, is_async)
        if visit is None or self.cp is None or self.codec is None:
            value = call()
            return await value if is_async else value
        # Keyed by node, so that a number reused after a crash never replays another node's.
        key = self.key(item)
        found = None if visit.fresh else self.cp._cp.get_exec(self.run_id, visit.seq, key)
        if found is not None:
            taken, value = json.loads(found)
            visit.next += taken
            return self.codec.load(value)
        before = visit.next
        value = call()
        if is_async:
            value = await value
        what = f"the exec result of {type(curr).__name__}" + (f" (item {item})" if item else "")
        # A record: the interrupt answers the exec took, then its value.
        record = _JSON.encode([visit.next - before, self.codec.dump(value, what)]).encode()
        # Items on threads record at once: the node's checkpoint goes with the first.
        root = self.root
        with root.recording:
            staged, root.staged = root.staged, None
            self.cp._cp.put_with_exec(self.run_id, staged, visit.seq, key, record)
        return value

    # -- flows --

    async def flow(self, flow: Any, shared: Any, params: Any, restore: list[tuple[str, int]]) -> Any:
        """One pass of ``flow`` (``Flow._orch``), node by node; ``restore`` says
        where a resumed run was in this flow and the ones inside it."""
        walk = _minllm._node_names(flow)
        names = {id(node): name for node, name in walk}
        by_name = {name: node for node, name in walk}
        orig = flow.start_node
        steps = 0
        if restore:
            name, steps = restore[0]
            if name not in by_name:
                raise CheckpointError(
                    f"run {self.run_id!r} was at node {name!r}, which the flow no longer has (renamed or removed since)"
                )
            orig, steps = by_name[name], steps - 1
        p = params or {**flow.params}
        last = None
        counter = _minllm._Steps(flow, steps)
        while orig:
            if self.spread is not None:
                self.spread.check()
            counter.enter(orig)
            steps += 1
            curr = copy.copy(orig)
            curr.set_params(p)
            name = names.get(id(orig), type(orig).__name__)
            self.stack.append([name, steps])
            try:
                inner = restore[1:] if restore else []
                restore = []
                last = await self.compound(curr, shared, inner)
                if last is _MISSING:
                    last = await self.node(curr, shared, name)
            finally:
                self.stack.pop()
            orig = flow.get_next_node(curr, last)
        return last


    async def compound(self, curr: Any, shared: Any, restore: list[tuple[str, int]]) -> Any:
        """``curr._run(shared)`` (or ``_run_async``) for a flow the driver runs in
        place: its ``prep``, its passes node by node (one per params set for a
        batch flow, each item a frame ``[i]`` of the position), its ``post``.
        ``_MISSING`` for anything else (nodes, parallel batch flows, flows with a
        ``_run`` of their own), which runs as one node (a parallel batch flow's
        runs then go node by node in :meth:`parallel_flow`)."""
        kind = _flow_kind(curr)
        if kind is None:
            return _MISSING
        is_async = kind.startswith("async")
        prep_res = await curr.prep_async(shared) if is_async else curr.prep(shared)
        if kind.endswith("flow"):
            o = await self.flow(curr, shared, None, restore)
        else:
            items = list(prep_res or [])
            first = 0
            if restore:
                marker = restore[0][0]
                if not (marker.startswith("[") and marker.endswith("]") and marker[1:-1].isdigit()):
                    raise CheckpointError(
                        f"run {self.run_id!r} was inside {type(curr).__name__}, which is no longer a batch flow"
                    )
                first, restore = int(marker[1:-1]), restore[1:]
            for i in range(first, len(items)):
                self.stack.append([f"[{i}]", 0])
                try:
                    await self.flow(curr, shared, {**curr.params, **items[i]}, restore if i == first else [])
                finally:
                    self.stack.pop()
            o = None
        return await curr.post_async(shared, prep_res, o) if is_async else curr.post(shared, prep_res, o)


class _ItemRun(_Run):
    """One item's run of a parallel batch flow in a driven run: node by node on
    a stack of its own (the batch flow's place, then ``[i]``), with no
    checkpoints of its own: each ``exec`` is recorded under the batch flow's
    visit, keyed by the item and the node's place in the item's run (which tells
    apart a node visited twice). Its nodes cannot pause: the items run at the
    same time."""

    def __init__(self, outer: _Run, batch: _Visit | None, i: int, spread: _Spread) -> None:
        super().__init__(outer.cp, outer.run_id, outer.events, outer.flow_name)
        self.root, self.batch, self.spread = outer.root, batch, spread
        self.codec, self.journal = outer.codec, outer.journal
        self.stack = [list(frame) for frame in outer.stack] + [[f"[{i}]", 0]]
        name = outer.stack[-1][0] if outer.stack else outer.flow_name
        self.refused = (batch.refused if batch is not None else None) or (
            f"interrupt() cannot pause inside the items of parallel batch flow {name!r}, which run"
            " at the same time: make it a BatchFlow, or ask before or after it"
        )

    def key(self, item: str) -> str:
        return self.step_name(item)

    def enter(self, shared: Any) -> _Visit | None:
        if self.batch is None:
            return None
        return _Visit(self.batch.seq, [], self.batch.fresh, self.refused)

    def flush(self) -> None:
        self.root.flush()


def _parallel_runs(curr: Any) -> str | None:
    """`"threads"` for a ParallelBatchFlow, `"async"` for an
    AsyncParallelBatchFlow (each running its flows as the package does), else `None`."""
    pkg = _pkg()
    AsyncParallelBatchFlow, ParallelBatchFlow = pkg.AsyncParallelBatchFlow, pkg.ParallelBatchFlow
    kind = type(curr)
    if isinstance(curr, ParallelBatchFlow) and kind._run is ParallelBatchFlow._run and kind._orch is pkg.Flow._orch:
        return "threads"
    if (
        isinstance(curr, AsyncParallelBatchFlow)
        and kind._run_async is AsyncParallelBatchFlow._run_async
        and kind._orch_async is pkg.AsyncFlow._orch_async
    ):
        return "async"
    return None


def _parallel_items(curr: Any) -> str | None:
    """`"threads"` for a ParallelBatchNode, `"async"` for an
    AsyncParallelBatchNode (each with the package's own item loop), else `None`."""
    pkg = _pkg()
    AsyncParallelBatchNode, ParallelBatchNode = pkg.AsyncParallelBatchNode, pkg.ParallelBatchNode
    kind = type(curr)
    if isinstance(curr, ParallelBatchNode) and kind._exec is ParallelBatchNode._exec:
        return "threads"
    if isinstance(curr, AsyncParallelBatchNode) and kind._exec is AsyncParallelBatchNode._exec:
        return "async"
    return None


def _flow_kind(curr: Any) -> str | None:
    """How the driver runs `curr` in place: `"flow"`, `"async_flow"`, `"batch"`,
    `"async_batch"`, or `None` when it runs as one node."""
    pkg = _pkg()
    AsyncBatchFlow, AsyncFlow, BatchFlow, Flow = pkg.AsyncBatchFlow, pkg.AsyncFlow, pkg.BatchFlow, pkg.Flow
    if not isinstance(curr, Flow):
        return None
    kind = type(curr)
    # A flow that overrides how its passes run (`_orch`) runs as one node.
    if isinstance(curr, AsyncFlow):
        if kind._orch_async is not AsyncFlow._orch_async:
            return None
    elif kind._orch is not Flow._orch:
        return None
    if isinstance(curr, AsyncBatchFlow):
        return "async_batch" if kind._run_async is AsyncBatchFlow._run_async else None
    if isinstance(curr, BatchFlow):
        # Parallel batch flows (their own `_run`) run as one node.
        return "batch" if kind._run is BatchFlow._run and not isinstance(curr, AsyncFlow) else None
    if isinstance(curr, AsyncFlow):
        return "async_flow" if kind._run_async is AsyncFlow._run_async else None
    return "flow" if kind._run is Flow._run else None


def _sync_drive(flow: Any, shared: Any, run: _Run) -> Any:
    return _sync(_drive(flow, shared, run, []))


def _sync(coro: Any) -> Any:
    """Runs a coroutine that never waits (a sync flow's driver) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an async node needs an async flow: use AsyncFlow and run_async")


def _start(flow: Any, checkpointer: Any, run_id: Any, events: Any) -> _Run:
    if checkpointer is not None and not isinstance(run_id, str):
        raise TypeError("a checkpointed run needs a run_id (a str)")
    return _Run(checkpointer, run_id, events, type(flow).__name__)


async def _drive(flow: Any, shared: Any, run: _Run, restore: list[tuple[str, int]], locked: bool = False) -> Any:
    """Runs `flow` as `run` from `restore` (or the start), holding the run id
    unless the caller does (`locked`: a resume, whose `restore` is empty when
    the checkpoint is at the flow itself, run as one node)."""
    lock = run.cp._cp.lock(run.run_id) if run.cp is not None and not locked else None
    try:
        if run.cp is not None and not locked and run.cp._cp.get(run.run_id) is not None:
            raise CheckpointError(
                f"run {run.run_id!r} has checkpoints already: resume it (flow.resume), or start a new run id"
            )
        last = await run.compound(flow, shared, restore)
        if last is _MISSING:
            # A flow with a `_run` of its own, or a parallel batch flow: one node.
            last = await run.node(flow, shared, type(flow).__name__)
        if run.cp is not None:
            detail = last.encode() if isinstance(last, str) else b"default"
            run.stack = run.last_stack
            run.write("finished", run._save_fields(shared), detail)
        return last
    finally:
        if lock is not None:
            lock.release()
