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
  Restate runs it, and ``interrupt`` returns the answer there.

The items of a batch node are a step each (those of a parallel batch node
all at once, on the worker that runs the run); a parallel batch flow's items
run one after the other. ``prep`` and ``post`` run again on every replay:
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
import copy
import json
from typing import Any, Awaitable, Callable

try:
    import restate
    from restate.serde import BytesSerde
except ImportError as missing:  # pragma: no cover - checked in a subprocess by the tests
    raise ImportError(
        "minllm.restate needs Restate's Python SDK and an ASGI server: pip install restate-sdk hypercorn"
    ) from missing

from ._driver import _drive, _Run
from ._journal import ExecFailed, Journal
from ._plain import _Codec

__all__ = ["app", "serve", "workflow"]


class _Steps(Journal):
    """A run's journal: Restate's, through ``ctx.run``, with its pauses on
    durable promises that the ``answer`` handler resolves."""

    def __init__(self, ctx: Any, codec: _Codec) -> None:
        self.ctx, self.codec = ctx, codec
        self.options: restate.RunOptions[bytes] = restate.RunOptions(serde=BytesSerde())

    def step(self, name: str, action: Callable[[], Any]) -> Awaitable[bytes]:
        future: Awaitable[bytes] = self.ctx.run_typed(name, action, self.options)
        return future

    async def all(self, steps: list[Awaitable[bytes]]) -> list[bytes]:
        await restate.gather(*steps)  # type: ignore[arg-type]  # the futures of `step`
        return [await step for step in steps]

    async def ask(self, name: str, question: Any) -> Any:
        ctx = self.ctx
        ctx.set("question", question)
        ctx.set("pending", name)
        ctx.set("status", "paused")
        answer = await ctx.promise(name).value()
        ctx.clear("pending")
        ctx.clear("question")
        ctx.set("status", "running")
        return answer


def _json_store(store: Any, flow: str) -> Any:
    """The store as the ``run`` handler sends it back: plain JSON."""
    try:
        return json.loads(json.dumps(store))
    except (TypeError, ValueError) as error:
        raise restate.TerminalError(f"the store of flow `{flow}` cannot be sent as JSON: {error}") from None


def workflow(flow: Any, name: str | None = None, *, allow_pickle: bool = False, **options: Any) -> restate.Workflow:
    """The Restate workflow of ``flow``, named ``name`` (default: the flow's
    class name), with the handlers ``run``, ``status`` and ``answer`` (see the
    module docs). ``allow_pickle``: journal exec results of other types than
    plain data (and registered ones) with pickle. ``options`` go to
    ``restate.Workflow`` (``invocation_retry_policy``, ``journal_retention``, ...)."""
    flow_name = name or type(flow).__name__
    wf = restate.Workflow(flow_name, **options)
    codec = _Codec(allow_pickle)

    @wf.main(name="run")
    async def run(ctx: Any, store: Any) -> Any:
        """Runs the flow on the store (a JSON object); the store after the run."""
        if store is None:
            store = {}
        if not isinstance(store, dict):
            raise restate.TerminalError(f"the input of flow `{flow_name}` is not a store (a JSON object): {store!r}")
        ctx.set("status", "running")
        walk = _Run(None, ctx.key(), None, flow_name)
        walk.journal, walk.codec = _Steps(ctx, codec), codec
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
            ctx.set("status", f"failed: {message}")
            raise restate.TerminalError(message) from None
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

    return wf


def _describe(error: Exception, walk: _Run, flow: str) -> str:
    """An error that is not a failed exec (those name their node), with where it happened."""
    text = f"{type(error).__name__}: {error}"
    if not walk.last_stack:
        return f"{text} (in flow `{flow}`)"
    path = " > ".join(frame[0] for frame in walk.last_stack[:-1]) or flow
    return f"{text} (in node `{walk.last_stack[-1][0]}` of flow `{path}`)"


def app(*flows: Any) -> Any:
    """The ASGI app that serves ``flows`` (flows, or workflows made with
    :func:`workflow`) to Restate."""
    services = [item if isinstance(item, restate.Workflow) else workflow(item) for item in flows]
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
