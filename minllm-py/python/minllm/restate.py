"""Python flows served on `Restate <https://restate.dev>`_, the durable-execution
engine: a flow (``Flow``, ``AsyncFlow``, batch flows, any PocketFlow program)
becomes a Restate workflow named after the flow, whose runs are keyed by their
run id. Each node's ``exec`` (with its retries, waits and ``exec_fallback``) is
one journaled step (``ctx.run``): a worker that dies mid-run is replaced,
Restate replays the run on another (or the same, restarted) worker, finished
steps come back from the journal, and only the step in flight runs again.

Handlers of the workflow ``<flow>`` (the contract of the Rust engine's
``minllm::restate``):

- ``run``: the store (a JSON object) in, the store after the run out; the
  run's id is the workflow key (``POST /<flow>/<run id>/run``);
- ``status``: ``{"status": "running"}``, ``"paused"`` (with the ``question``
  a node's :func:`minllm.interrupt` asked), ``"finished"`` or
  ``"failed: <error>"``;
- ``answer``: the answer to the question the run waits on (any JSON): a paused
  run holds no worker and survives any of them; the answer resumes it wherever
  Restate runs it, and ``interrupt`` returns the answer there;
- ``events``: ``{"from": n}`` (or nothing, for 0): the run's events from number
  ``n`` as far as they go, ``{"events": [...], "next": <count>, "status":
  ...}``, while the run goes on. An event is ``{"kind": "node_started" |
  "node_finished" | "custom", "flow": <path>, "node": <name>}`` with the
  ``action`` of a ``node_finished`` and the ``value`` (and ``item``) of what
  a hook :func:`minllm.emit`-ted; flows and nodes are named as in
  ``Flow.stream``. What an ``exec`` emits is kept in its journaled step and
  comes out when the step ends, the same on every replay.

The items of a parallel batch node (``ParallelBatchNode``,
``AsyncParallelBatchNode``) go out as invocations of the service
``<flow>-items`` (handler ``item``: ``{"node": <key>, "index": i, "item":
<item>}`` in, with ``"params"`` when the node has some, the item's step
record out; :func:`app` and :func:`serve` register it with the workflow, so
serve workflows through them), all sent before any is awaited:
Restate spreads them over every worker behind the deployment's address,
journals and retries each on its own, and the run gets the results back in
the items' order. A worker runs at most ``max_workers`` items of a node at
once (32 without it); the others wait their turn there. Items (and the
node's params) travel as plain data, as checkpoints hold it; the worker runs
the item's ``exec`` (retries, waits and ``exec_fallback`` included) on its
own copy of the node, built by the same code: what ``prep`` leaves on the
node itself does not travel. The items of other batch nodes are a step each
on the run's worker; a parallel batch flow's items run one after the other.
``prep`` and ``post`` run again on every replay:
they must be deterministic (read and write the store, nothing else); anything
that talks to the world belongs in ``exec``, and ``interrupt`` too. Nodes and
flows with a ``_run`` (or ``_orch``) of their own run as one piece outside the
journal, again on every replay.

Needs Restate's Python SDK and an ASGI server: ``pip install restate-sdk hypercorn``.

>>> from minllm import Flow
>>> from minllm.restate import serve
>>> serve(9080, Flow(start=...))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import json
import weakref
from typing import Any, Awaitable, Callable

try:
    import restate
    from restate.serde import BytesSerde
except ImportError as missing:  # pragma: no cover - checked in a subprocess by the tests
    raise ImportError(
        "minllm.restate needs Restate's Python SDK and an ASGI server: pip install restate-sdk hypercorn"
    ) from missing

from . import _journal
from ._driver import _drive, _Run
from ._journal import ExecFailed, Journal
from ._plain import _JSON, _Codec
from ._signals import Event

__all__ = ["app", "serve", "workflow"]


class _Steps(Journal):
    """A run's journal: Restate's, through ``ctx.run``, with its pauses on
    durable promises that the ``answer`` handler resolves, its events in the
    run's state, and the items of parallel batch nodes sent to the service
    ``items`` (for the nodes keyed in ``fanned``)."""

    def __init__(self, ctx: Any, codec: _Codec, flow: str, items: str, fanned: dict[str, Any]) -> None:
        self.ctx, self.codec, self.flow, self.items, self.fanned = ctx, codec, flow, items, fanned
        self.options: restate.RunOptions[bytes] = restate.RunOptions(serde=BytesSerde())
        self.pending: list[dict[str, Any]] = []
        self.count = 0  # events kept in the run's state

    def send(self, event: Event) -> None:
        """The run's sink: an event waits in memory until :meth:`keep_events`."""
        self.pending.append(_journal.event_json(event))

    def keep_events(self) -> None:
        """Keeps the events sent so far in the run's state (``event/<n>``, their
        count in ``events``). Called before each step, question and fan-out,
        and at the end: a replay sends the same events at the same places, so
        it writes the same state."""
        if not self.pending:
            return
        for event in self.pending:
            self.ctx.set(f"event/{self.count}", event)
            self.count += 1
        self.pending.clear()
        self.ctx.set("events", self.count)

    def step(self, name: str, action: Callable[[], Any]) -> Awaitable[bytes]:
        self.keep_events()
        future: Awaitable[bytes] = self.ctx.run_typed(name, action, self.options)
        return future

    async def all(self, steps: list[Awaitable[bytes]]) -> list[bytes]:
        await restate.gather(*steps)  # type: ignore[arg-type]  # the futures of `step`
        return [await step for step in steps]

    async def ask(self, name: str, question: Any) -> Any:
        self.keep_events()
        ctx = self.ctx
        ctx.set("question", question)
        ctx.set("pending", name)
        ctx.set("status", "paused")
        answer = await ctx.promise(name).value()
        ctx.clear("pending")
        ctx.clear("question")
        ctx.set("status", "running")
        return answer

    def fans_out(self, node: str) -> bool:
        return node in self.fanned

    async def fan_out(self, node: str, items: list[Any], params: Any) -> list[bytes]:
        """Each item an invocation of ``<flow>-items/item``, all sent before
        the first result is awaited; the results (journaled by Restate) in order."""
        self.keep_events()
        calls = []
        for index, item in enumerate(items):
            sent: dict[str, Any] = {"node": node, "index": index, "item": item}
            if params is not None:
                sent["params"] = params
            calls.append(self.ctx.generic_call(self.items, "item", _JSON.encode(sent).encode()))
        await restate.gather(*calls)
        records = []
        for index, call in enumerate(calls):
            try:
                records.append(await call)
            except restate.TerminalError as error:
                raise restate.TerminalError(
                    f"item {index} of node `{node}` in flow `{self.flow}` failed on its worker: {error.message}"
                ) from None
        return records


def _json_store(store: Any, flow: str) -> Any:
    """The store as the ``run`` handler sends it back: plain JSON."""
    try:
        return json.loads(json.dumps(store))
    except (TypeError, ValueError) as error:
        raise restate.TerminalError(f"the store of flow `{flow}` cannot be sent as JSON: {error}") from None


# The options of a workflow that the service of its items takes too.
_ITEM_OPTIONS = frozenset({
    "inactivity_timeout", "abort_timeout", "journal_retention", "idempotency_retention",
    "invocation_retry_policy", "invocation_context_managers",
})
# The service of each workflow's items, for app().
_ITEMS: weakref.WeakKeyDictionary[restate.Workflow, restate.Service] = weakref.WeakKeyDictionary()


def workflow(flow: Any, name: str | None = None, *, allow_pickle: bool = False, **options: Any) -> restate.Workflow:
    """The Restate workflow of ``flow``, named ``name`` (default: the flow's
    class name), with the handlers ``run``, ``status``, ``answer`` and
    ``events`` (see the module docs); when the flow has parallel batch nodes,
    with the service ``<name>-items`` that runs their items, which
    :func:`app` registers with it. ``allow_pickle``: journal exec results (and
    send items) of other types than plain data (and registered ones) with
    pickle. ``options`` go to ``restate.Workflow`` (``invocation_retry_policy``,
    ``journal_retention``, ...), and those a service takes to ``<name>-items``."""
    flow_name = name or type(flow).__name__
    wf = restate.Workflow(flow_name, **options)
    codec = _Codec(allow_pickle, "workflow(flow, name, allow_pickle=True)")
    fanned = _journal.fanned_out_nodes(flow)
    items_name = f"{flow_name}-items"

    @wf.main(name="run")
    async def run(ctx: Any, store: Any) -> Any:
        """Runs the flow on the store (a JSON object); the store after the run."""
        if store is None:
            store = {}
        if not isinstance(store, dict):
            raise restate.TerminalError(f"the input of flow `{flow_name}` is not a store (a JSON object): {store!r}")
        ctx.set("status", "running")
        steps = _Steps(ctx, codec, flow_name, items_name, fanned)
        walk = _Run(None, ctx.key(), steps.send, flow_name)
        walk.journal, walk.codec = steps, codec
        try:
            # A copy per run, as a flow inside a flow is copied: runs of one worker share the flow.
            await _drive(copy.copy(flow), store, walk, [])
            output = _json_store(store, flow_name)
        except Exception as error:
            if restate.is_internal_exception(error):
                raise
            # An error ends the run: a failed exec is journaled and would come
            # back, and prep and post (deterministic) would fail again.
            named = isinstance(error, (ExecFailed, restate.TerminalError))
            message = str(error) if named else _describe(error, walk, flow_name)
            steps.keep_events()
            ctx.set("status", f"failed: {message}")
            raise restate.TerminalError(message) from None
        steps.keep_events()
        ctx.set("status", "finished")
        return output

    @wf.handler(name="status")
    async def status(ctx: Any) -> Any:
        """``{"status": ...}``, with the ``question`` while the run is paused."""
        state = await ctx.get("status") or "unknown"
        question = await ctx.get("question")
        if state == "paused" and question is not None:
            return {"status": state, "question": question}
        return {"status": state}

    @wf.handler(name="answer")
    async def answer(ctx: Any, value: Any) -> Any:
        """Resolves the question the run waits on with ``value``; the pause's name."""
        pending = await ctx.get("pending")
        if pending is None:
            raise restate.TerminalError("the run is not waiting for an answer")
        await ctx.promise(pending).resolve(value)
        return pending

    @wf.handler(name="events")
    async def events(ctx: Any, since: Any) -> Any:
        """The run's events from number ``since["from"]`` (0 without it), with
        the number to ask from next time and the run's status."""
        start = since.get("from") if isinstance(since, dict) else None
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            start = 0
        count = await ctx.get("events") or 0
        found = []
        for n in range(start, count):
            event = await ctx.get(f"event/{n}")
            if event is not None:
                found.append(event)
        state = await ctx.get("status") or "unknown"
        return {"events": found, "next": max(count, start), "status": state}

    if fanned:
        _ITEMS[wf] = _items_service(
            items_name, flow_name, fanned, codec, {k: v for k, v in options.items() if k in _ITEM_OPTIONS}
        )
    return wf


class _Limit:
    """How many items of one node a worker runs at once: the node's limit,
    and threads for as many sync ones."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.turns: asyncio.Semaphore | None = None
        self.threads: concurrent.futures.ThreadPoolExecutor | None = None

    def semaphore(self) -> asyncio.Semaphore:
        if self.turns is None:
            self.turns = asyncio.Semaphore(self.count)
        return self.turns

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self.threads is None:
            self.threads = concurrent.futures.ThreadPoolExecutor(self.count, thread_name_prefix="minllm-item")
        return self.threads


def _items_service(
    name: str, flow: str, fanned: dict[str, Any], codec: _Codec, options: dict[str, Any]
) -> restate.Service:
    """The service ``<flow>-items``: its handler ``item`` runs one item of a
    parallel batch node of the flow as a journaled step, under the node's
    limit on this worker, and returns the item's record."""
    service = restate.Service(name, **options)
    limits = {key: _Limit(_journal.item_limit(node)) for key, node in fanned.items()}
    run_options: restate.RunOptions[bytes] = restate.RunOptions(serde=BytesSerde())

    @service.handler(name="item")
    async def item(ctx: Any, sent: Any) -> Any:
        """``{"node": <key>, "index": i, "item": <plain data>}`` (and the
        node's ``params``): the item's record."""
        if not isinstance(sent, dict) or not isinstance(sent.get("node"), str) or not isinstance(sent.get("index"), int):
            raise restate.TerminalError(f"not an item of flow `{flow}`: {sent!r:.200}")
        key, index = sent["node"], sent["index"]
        node = fanned.get(key)
        if node is None:
            raise restate.TerminalError(
                f"flow `{flow}` has no parallel batch node `{key}` here (the worker runs another version of the flow)"
            )
        try:
            step, is_async = _journal.item_step(node, key, codec, index, sent.get("item"), sent.get("params"))
        except Exception as error:  # noqa: BLE001 - an item that cannot be read here fails the run
            raise restate.TerminalError(f"item {index} of `{key}` cannot be read: {type(error).__name__}: {error}") from None
        limit = limits[key]

        async def turn() -> bytes:
            async with limit.semaphore():
                if is_async:
                    data: bytes = await step()
                    return data
                context = contextvars.copy_context()
                return await asyncio.get_running_loop().run_in_executor(limit.pool(), context.run, step)

        data = await ctx.run_typed(f"{key}[{index}]", turn, run_options)
        return json.loads(data)

    return service


def _describe(error: Exception, walk: _Run, flow: str) -> str:
    """An error that is not a failed exec (those name their node), with where it happened."""
    text = f"{type(error).__name__}: {error}"
    if not walk.last_stack:
        return f"{text} (in flow `{flow}`)"
    path = " > ".join(frame[0] for frame in walk.last_stack[:-1]) or flow
    return f"{text} (in node `{walk.last_stack[-1][0]}` of flow `{path}`)"


def app(*flows: Any) -> Any:
    """The ASGI app that serves ``flows`` (flows, or workflows made with
    :func:`workflow`) to Restate, with the services of their items."""
    workflows = [item if isinstance(item, restate.Workflow) else workflow(item) for item in flows]
    services: list[Any] = []
    for wf in workflows:
        services.append(wf)
        if wf in _ITEMS:
            services.append(_ITEMS[wf])
    names = [service.name for service in services]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two workflows are named {name!r}: name them with workflow(flow, name)")
    return restate.app(services)


def serve(port: int, *flows: Any, host: str = "127.0.0.1") -> None:
    """Serves ``flows`` (see :func:`app`) on ``host:port`` with hypercorn (HTTP/2,
    as Restate calls its deployments) until the process is stopped. Register
    the deployment with Restate: ``POST <admin>/deployments {"uri": "http://host:port"}``."""
    try:
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config
    except ImportError as missing:
        raise ImportError("minllm.restate.serve needs hypercorn: pip install restate-sdk hypercorn") from missing
    config = Config()
    config.bind = [f"{host}:{port}"]
    # Restate keeps its HTTP/2 connections open and runs many invocations on each.
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_timeout = 2**31 - 1
    asyncio.run(hypercorn_serve(_with_lifespan(app(*flows)), config))


def _with_lifespan(inner: Any) -> Any:
    """``inner`` (an ASGI app), answering the server's lifespan messages itself."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await inner(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return asgi
