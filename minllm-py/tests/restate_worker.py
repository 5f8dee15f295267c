"""A worker that serves the flows of test_restate.py on Restate:
``python restate_worker.py <port>``.

Each ``exec`` writes ``exec-start <what> pid=<pid>`` and ``exec-end <what>
pid=<pid>`` lines to the file ``$LOG``, so that a test counts what ran where.
``$HOLD`` names an exec (``work 2``) that, in this worker, starts and never
ends: the test kills the worker there.

``talk`` emits events from its hooks (its ``exec``s, batch items and
fanned-out items); ``spread`` is a parallel batch of ``n`` items that fan out
to the workers, each sleeping 20 ms and answering with its worker's pid.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any, TypeVar

import restate

from minllm import AsyncFlow, AsyncNode, BatchNode, Flow, Node, ParallelBatchNode, emit, interrupt
from minllm.restate import serve, workflow

LOG = os.environ.get("LOG", os.devnull)
HOLD = os.environ.get("HOLD", "")


def log(event: str, what: str) -> None:
    with open(LOG, "a") as f:
        f.write(f"{event} {what} pid={os.getpid()}\n")


T = TypeVar("T")


def paid(what: str, result: T) -> T:
    """An exec's work: logged, held forever when it is the one to hold."""
    log("exec-start", what)
    if what == HOLD:
        time.sleep(300)  # killed meanwhile
    log("exec-end", what)
    return result


# ---- research: a loop, a batch node, a parallel batch node (a sync Flow) ----


class Work(Node):
    def prep(self, shared: dict[str, Any]) -> int:
        count: int = shared["count"]
        return count

    def exec(self, k: int) -> str:
        return paid(f"work {k}", f"paid call {k}")

    def post(self, shared: dict[str, Any], k: int, result: str) -> str:
        shared["log"].append(result)
        shared["count"] = k + 1
        return "again" if shared["count"] < 5 else "done"


class Tag(BatchNode):
    def prep(self, shared: dict[str, Any]) -> list[str]:
        return list(shared["log"])

    def exec(self, line: str) -> tuple[str, int]:
        # A tuple: it comes back from the journal as a tuple.
        return paid(f"tag {line[-1]}", (line, len(line)))

    def post(self, shared: dict[str, Any], lines: list[str], tags: list[tuple[str, int]]) -> None:
        assert all(isinstance(t, tuple) for t in tags), tags
        shared["tags"] = [f"{line}:{n}" for line, n in tags]


class Shout(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[str]:
        return list(shared["log"])

    def exec(self, line: str) -> str:
        return paid(f"shout {line[-1]}", line.upper())

    def post(self, shared: dict[str, Any], lines: list[str], loud: list[str]) -> None:
        shared["loud"] = loud


class Summary(Node):
    def prep(self, shared: dict[str, Any]) -> int:
        return len(shared["log"])

    def exec(self, n: int) -> str:
        return paid("summary", f"{n} calls")

    def post(self, shared: dict[str, Any], n: int, summary: str) -> None:
        shared["summary"] = summary


def research() -> Flow:
    work, tag, shout = Work(), Tag(), Shout(max_workers=2)
    work - "again" >> work
    work - "done" >> tag
    tag >> shout >> Summary()
    return Flow(start=work, max_steps=20)


# ---- approval: an async flow that asks in exec ----


class Draft(AsyncNode):
    async def prep_async(self, shared: dict[str, Any]) -> str:
        topic: str = shared["topic"]
        return topic

    async def exec_async(self, topic: str) -> str:
        emit(f"drafting {topic}")
        return paid("draft", f"draft about {topic}")

    async def post_async(self, shared: dict[str, Any], topic: str, draft: str) -> None:
        shared["draft"] = draft


class Review(AsyncNode):
    async def prep_async(self, shared: dict[str, Any]) -> str:
        draft: str = shared["draft"]
        return draft

    async def exec_async(self, draft: str) -> Any:
        log("exec-start", "review")
        answer = interrupt(f"publish {draft}?")
        log("exec-end", "review")
        return answer

    async def post_async(self, shared: dict[str, Any], draft: str, answer: Any) -> None:
        shared["answer"] = answer


class Publish(Node):
    def prep(self, shared: dict[str, Any]) -> Any:
        return shared["answer"]

    def exec(self, answer: Any) -> str:
        return paid("publish", f"published ({answer})")

    def post(self, shared: dict[str, Any], answer: Any, published: str) -> None:
        shared["published"] = published


def approval() -> AsyncFlow:
    draft = Draft()
    draft >> Review() >> Publish()
    return AsyncFlow(start=draft)


# ---- Checkout: an exec that fails after its retries (named after its class) ----


class Charge(Node):
    def exec(self, _: Any) -> None:
        log("exec-start", "charge")
        raise ValueError("card declined")


class Ship(Node):
    def exec(self, _: Any) -> None:
        log("exec-start", "ship")


class Checkout(Flow):
    pass


def checkout() -> Checkout:
    charge = Charge(max_retries=3, wait=0.01)
    charge >> Ship()
    return Checkout(start=charge)


# ---- broken: a prep that fails (not an exec: nothing journaled) ----


class Read(Node):
    def prep(self, shared: dict[str, Any]) -> Any:
        return shared["missing"]


# ---- talk: events from every kind of exec ----


class Greet(Node):
    def prep(self, shared: dict[str, Any]) -> str:
        emit("prep")  # prep runs again on a replay, and sends the same
        name: str = shared["name"]
        return name

    def exec(self, name: str) -> str:
        emit("hello")
        emit({"to": name, "n": 1})
        return paid("greet", f"hello {name}")

    def post(self, shared: dict[str, Any], name: str, greeting: str) -> str:
        shared["greeting"] = greeting
        return "go"


class Speak(Node):
    def exec(self, _: Any) -> str:
        emit("speak 1")
        said = paid("speak", "spoken")  # held here, in the first worker, and killed
        emit("speak 2")
        return said

    def post(self, shared: dict[str, Any], _: Any, said: str) -> None:
        shared["said"] = said


class Count(BatchNode):
    def prep(self, shared: dict[str, Any]) -> list[int]:
        return [0, 1]

    def exec(self, k: int) -> int:
        emit(f"count {k}")
        return paid(f"count {k}", k * 10)

    def post(self, shared: dict[str, Any], _: Any, counts: list[int]) -> None:
        shared["counts"] = counts


class Loud(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[str]:
        return ["x", "y", "z"]

    def exec(self, word: str) -> str:
        emit(f"loud {word}")
        return paid(f"loud {word}", word.upper())

    def post(self, shared: dict[str, Any], _: Any, loud: list[str]) -> None:
        shared["loud"] = loud


class Voice(Flow):
    """A flow inside ``talk``: its node's events name it as their flow."""


def talk() -> Flow:
    greet, count = Greet(), Count()
    greet - "go" >> Voice(start=Speak()) >> count >> Loud(max_workers=2)
    return Flow(start=greet)


# ---- spread: a parallel batch that fans out over the workers ----


class Pid(ParallelBatchNode):
    def prep(self, shared: dict[str, Any]) -> list[int]:
        return list(range(int(shared["n"])))

    def exec(self, i: int) -> tuple[int, int]:
        log("exec-start", f"item {i}")
        time.sleep(0.02)
        log("exec-end", f"item {i}")
        return i, os.getpid()

    def post(self, shared: dict[str, Any], _: Any, out: list[tuple[int, int]]) -> None:
        shared["out"] = out


def main() -> None:
    # A replaced worker is tried again soon (the default backoff grows to a minute).
    retry = restate.InvocationRetryPolicy(initial_interval=timedelta(milliseconds=100), max_interval=timedelta(seconds=1))
    serve(
        int(sys.argv[1]),
        workflow(research(), "research", invocation_retry_policy=retry),
        workflow(approval(), "approval", invocation_retry_policy=retry),
        workflow(checkout(), invocation_retry_policy=retry),
        workflow(Flow(start=Read()), "broken", invocation_retry_policy=retry),
        workflow(talk(), "talk", invocation_retry_policy=retry),
        workflow(Flow(start=Pid(max_workers=4)), "spread", invocation_retry_policy=retry),
    )


if __name__ == "__main__":
    main()
