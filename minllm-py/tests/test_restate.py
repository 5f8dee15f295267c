"""Python flows served on a real Restate server (``minllm.restate``).

The pinned ``restate-server`` (installed by ``scripts/restate-server`` from the
npm registry, cached under ``target/``) starts on loopback with ports of its
own and a scratch directory; workers (``restate_worker.py``) are processes of
their own. A worker killed with SIGKILL in the middle of an ``exec`` is
restarted, Restate replays the run, and it finishes with the right store and
no finished ``exec`` run again; a paused run outlives its worker and is
answered once it is back; an ``exec`` that fails after its retries fails the
run. The run's events (``events``) are those of one uninterrupted run, kill or
not, and show while it waits. The items of a parallel batch node fan out over
two workers behind a round-robin proxy (one registered deployment), one of
them killed half-way. A server that cannot be installed or started fails the
tests.
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# Missing, these fail the run (scripts/test installs them in both venvs): the
# Restate tests are never skipped.
import hypercorn  # noqa: F401,E402
import restate  # noqa: F401,E402

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "restate_worker.py"
START = 60.0  # seconds a server or a run may take to get somewhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(port: int, method: str, path: str, body: Any = None, timeout: float = START) -> tuple[int, str] | None:
    """``method path`` on loopback ``port`` (a JSON ``body`` when given): the
    status and body, or ``None`` when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None
    finally:
        connection.close()


def until(what: str, check: Callable[[], Any], timeout: float = START) -> Any:
    """Polls ``check()`` until it gives something true; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Server:
    """A running restate-server on loopback."""

    def __init__(self, base: Path) -> None:
        self.base = base
        installed = subprocess.run([str(ROOT / "scripts" / "restate-server")], capture_output=True, text=True)
        if installed.returncode != 0:
            pytest.fail(f"scripts/restate-server failed ({installed.returncode}): {installed.stderr}")
        binary = installed.stdout.strip()
        self.ingress, self.admin, node = free_port(), free_port(), free_port()
        self.log_path = base / "server.log"
        env = {
            **os.environ,
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin}",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}/",
        }
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [binary, "--listen-mode", "tcp", "--no-logo", "--base-dir", str(base / "restate")],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START
        while (request(self.admin, "GET", "/health", timeout=2) or (0, ""))[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"restate-server did not come up: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def register(self, port: int) -> None:
        """Registers the deployment (a worker) at ``127.0.0.1:port``."""
        answer = request(self.admin, "POST", "/deployments", {"uri": f"http://127.0.0.1:{port}"})
        assert answer is not None and answer[0] in (200, 201), f"registration: {answer}\n{self.log()}"

    def call(self, path: str, body: Any = None) -> tuple[int, Any]:
        """``POST path`` on the ingress (with a JSON ``body`` when given): the
        status and the JSON body."""
        answer = request(self.ingress, "POST", path, body)
        assert answer is not None, f"the ingress did not answer {path}"
        return answer[0], json.loads(answer[1]) if answer[1] else None

    def events(self, flow: str, run: str, since: int | None = None) -> dict[str, Any]:
        """The run's ``events`` handler (from ``since``, when given)."""
        code, events = self.call(f"/{flow}/{run}/events", None if since is None else {"from": since})
        assert code == 200, events
        assert isinstance(events, dict)
        return events

    def status(self, flow: str, run: str) -> dict[str, Any]:
        code, status = self.call(f"/{flow}/{run}/status")
        assert code == 200, status
        assert isinstance(status, dict)
        return status

    def attach(self, flow: str, run: str) -> tuple[int, str]:
        """Waits for run ``run`` to end: the status and body of its output."""
        answer = request(self.ingress, "GET", f"/restate/workflow/{flow}/{run}/attach")
        assert answer is not None, "attach got no answer"
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        # The server's data (a few hundred MB of preallocated logs) goes with
        # it; its log stays for a failing test's report.
        shutil.rmtree(self.base / "restate", ignore_errors=True)


class Workers:
    """Worker processes (``restate_worker.py <port>``), each logging its execs
    to one file; all killed at the end of the test."""

    def __init__(self, base: Path) -> None:
        self.log_path = base / "calls.log"
        self.log_path.touch()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, hold: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "LOG": str(self.log_path), "HOLD": hold}
        process = subprocess.Popen([sys.executable, str(WORKER), str(port)], env=env)
        self.processes.append(process)

        def listening() -> bool:
            assert process.poll() is None, f"the worker exited with {process.returncode}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        until(f"the worker to listen on {port}", listening)
        return process

    def lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def counts(self) -> collections.Counter[str]:
        """How many times each ``exec-start what`` / ``exec-end what`` was logged."""
        return collections.Counter(line.rsplit(" pid=", 1)[0] for line in self.lines())

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


class Proxy:
    """A round-robin TCP proxy on loopback ``port``, on a thread of its own:
    each connection goes to the next of ``backends`` (ports) that accepts it,
    bytes both ways, until either side closes. ``connections`` counts them by
    backend."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port, self.backends, self.turn = port, backends, 0
        self.connections: collections.Counter[int] = collections.Counter()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        listening = asyncio.start_server(self.serve, "127.0.0.1", port)
        self.server = asyncio.run_coroutine_threadsafe(listening, self.loop).result(timeout=10)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in self.backends:
            backend = self.backends[self.turn % len(self.backends)]
            self.turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
            except OSError:
                continue  # down: the next one
            self.connections[backend] += 1
            await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))
            return
        writer.close()

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop()


def test_a_worker_killed_mid_exec_is_replaced_and_the_run_finishes_without_paying_twice(
    server: Server, workers: Workers
) -> None:
    port = free_port()
    first = workers.start(port, hold="work 2")
    server.register(port)
    code, body = server.call("/research/run-1/run/send", {"count": 0, "log": []})
    assert code in (200, 202), body
    # The third paid call starts on the first worker, which is killed there.
    until("exec work 2 to start", lambda: f"exec-start work 2 pid={first.pid}" in workers.lines())
    assert server.status("research", "run-1") == {"status": "running"}
    workers.kill(first)
    second = workers.start(port)

    code, output = server.attach("research", "run-1")
    assert code == 200, f"{output}\n{server.log()}"
    calls = [f"paid call {k}" for k in range(5)]
    assert json.loads(output) == {
        "count": 5,
        "log": calls,
        "tags": [f"{call}:11" for call in calls],
        "loud": [call.upper() for call in calls],
        "summary": "5 calls",
    }
    counts = workers.counts()
    # Only the exec in flight ran again, on the new worker; every exec ended once.
    assert counts["exec-start work 2"] == 2, counts
    assert f"exec-end work 2 pid={second.pid}" in workers.lines()
    ends = [f"work {k}" for k in range(5)] + [f"tag {k}" for k in range(5)] + [f"shout {k}" for k in range(5)]
    for what in ends + ["summary"]:
        assert counts[f"exec-end {what}"] == 1, (what, counts)
        if what != "work 2":
            assert counts[f"exec-start {what}"] == 1, (what, counts)
    assert server.status("research", "run-1") == {"status": "finished"}


def test_a_paused_run_survives_its_worker_and_the_answer_resumes_it_on_a_new_one(
    server: Server, workers: Workers
) -> None:
    port = free_port()
    first = workers.start(port)
    server.register(port)
    code, body = server.call("/approval/run-2/run/send", {"topic": "bees"})
    assert code in (200, 202), body
    paused = until("the run to pause", lambda: (s := server.status("approval", "run-2"))["status"] == "paused" and s)
    assert paused == {"status": "paused", "question": "publish draft about bees?"}
    # Its events so far show while it waits.
    asked = [
        started("approval", "Draft"),
        custom("approval", "Draft", "drafting bees"),
        finished("approval", "Draft"),
        started("approval", "Review"),
    ]
    assert server.events("approval", "run-2") == {"events": asked, "next": 4, "status": "paused"}
    # Paused, the run holds no worker: its worker goes away and a new one comes.
    workers.kill(first)
    second = workers.start(port)
    code, pending = server.call("/approval/run-2/answer", "ship it")
    assert code == 200, pending
    assert pending == "Review#2 question 1"

    code, output = server.attach("approval", "run-2")
    assert code == 200, f"{output}\n{server.log()}"
    assert json.loads(output) == {
        "topic": "bees",
        "draft": "draft about bees",
        "answer": "ship it",
        "published": "published (ship it)",
    }
    counts = workers.counts()
    assert counts["exec-end draft"] == counts["exec-start draft"] == 1, counts
    # Asked once (no end), run again with the answer as a new step, on the new worker.
    assert counts["exec-start review"] == 2 and counts["exec-end review"] == 1, counts
    assert f"exec-end review pid={second.pid}" in workers.lines()
    assert counts["exec-start publish"] == 1, counts
    assert server.status("approval", "run-2") == {"status": "finished"}
    rest = [finished("approval", "Review"), started("approval", "Publish"), finished("approval", "Publish")]
    assert server.events("approval", "run-2") == {"events": asked + rest, "next": 7, "status": "finished"}
    # A finished run waits for nothing.
    code, refused = server.call("/approval/run-2/answer", "again")
    assert code >= 400 and "not waiting for an answer" in json.dumps(refused), (code, refused)


def started(flow: str, node: str) -> dict[str, Any]:
    return {"kind": "node_started", "flow": flow, "node": node}


def finished(flow: str, node: str, action: str = "default") -> dict[str, Any]:
    return {"kind": "node_finished", "flow": flow, "node": node, "action": action}


def custom(flow: str, node: str, value: Any, item: int | None = None) -> dict[str, Any]:
    event = {"kind": "custom", "flow": flow, "node": node, "value": value}
    return event if item is None else {**event, "item": item}


TALK = [
    started("talk", "Greet"),
    custom("talk", "Greet", "prep"),
    custom("talk", "Greet", "hello"),
    custom("talk", "Greet", {"to": "ann", "n": 1}),
    finished("talk", "Greet", "go"),
    started("Voice", "Speak"),
    custom("Voice", "Speak", "speak 1"),
    custom("Voice", "Speak", "speak 2"),
    finished("Voice", "Speak"),
    started("talk", "Count"),
    custom("talk", "Count", "count 0", 0),
    custom("talk", "Count", "count 1", 1),
    finished("talk", "Count"),
    started("talk", "Loud"),
    # Fanned out to the items' service; their values come back in the items' order.
    custom("talk", "Loud", "loud x", 0),
    custom("talk", "Loud", "loud y", 1),
    custom("talk", "Loud", "loud z", 2),
    finished("talk", "Loud"),
]


def test_events_of_a_run_killed_mid_exec_are_those_of_one_uninterrupted_run(server: Server, workers: Workers) -> None:
    port = free_port()
    first = workers.start(port, hold="speak")
    server.register(port)
    code, body = server.call("/talk/run-5/run/send", {"name": "ann"})
    assert code in (200, 202), body
    until("exec speak to start", lambda: f"exec-start speak pid={first.pid}" in workers.lines())
    # While Speak's exec runs, what came before it shows (what it emitted does not yet).
    so_far = until("the events before Speak", lambda: (e := server.events("talk", "run-5"))["next"] == 6 and e)
    assert so_far == {"events": TALK[:6], "next": 6, "status": "running"}
    workers.kill(first)  # "speak 1" was emitted there, and is lost with the step
    workers.start(port)

    code, output = server.attach("talk", "run-5")
    assert code == 200, f"{output}\n{server.log()}"
    assert json.loads(output) == {
        "name": "ann", "greeting": "hello ann", "said": "spoken", "counts": [0, 10], "loud": ["X", "Y", "Z"],
    }
    counts = workers.counts()
    assert counts["exec-start speak"] == 2 and counts["exec-start greet"] == 1, counts
    assert server.events("talk", "run-5") == {"events": TALK, "next": len(TALK), "status": "finished"}
    assert server.events("talk", "run-5", 7) == {"events": TALK[7:], "next": len(TALK), "status": "finished"}
    assert server.events("talk", "run-5", 99) == {"events": [], "next": 99, "status": "finished"}

    # The same flow streamed (checkpointed) in this process names flows and nodes
    # the same way (its root is named after its class; its parallel items emit in
    # any order).
    from restate_worker import talk

    from minllm import MemoryCheckpointer

    def shown(event: dict[str, Any]) -> tuple[Any, ...]:
        return (event["kind"], event["flow"], event["node"], event.get("action"), event.get("value"), event.get("item"))

    local = [
        shown({
            "kind": e.kind, "flow": "talk" if e.flow == "Flow" else e.flow, "node": e.node,
            "action": (e.action or "default") if e.kind == "node_finished" else None,
            "value": e.value if e.kind == "custom" else None, "item": e.item,
        })
        for e in talk().stream({"name": "ann"}, checkpointer=MemoryCheckpointer(), run_id="local")
    ]
    expected = [shown(event) for event in TALK]
    loud = slice(14, 17)
    assert local[:14] + local[17:] == expected[:14] + expected[17:]
    assert sorted(local[loud], key=repr) == expected[loud]


def test_parallel_batch_items_fan_out_over_two_workers_behind_a_proxy_and_survive_one_killed(
    server: Server, workers: Workers
) -> None:
    ports = [free_port(), free_port()]
    first, second = workers.start(ports[0]), workers.start(ports[1])
    proxy = Proxy(free_port(), ports)
    try:
        # One deployment: the proxy in front of both workers.
        server.register(proxy.port)
        code, body = server.call("/spread/run-6/run/send", {"n": 300})
        assert code in (200, 202), body

        def ended() -> int:
            return sum(line.startswith("exec-end item ") for line in workers.lines())

        until("150 items to end", lambda: ended() >= 150, timeout=30)
        workers.kill(first)
        code, output = server.attach("spread", "run-6")
        assert code == 200, f"{output}\n{server.log()}"
        assert server.status("spread", "run-6") == {"status": "finished"}
    finally:
        proxy.stop()
    assert proxy.connections[ports[0]] >= 1 and proxy.connections[ports[1]] >= 1, proxy.connections
    out = json.loads(output)["out"]
    # Every item, in order, each from one of the two workers: both took some.
    assert [i for i, _ in out] == list(range(300))
    by = collections.Counter(pid for _, pid in out)
    assert set(by) == {first.pid, second.pid}, by
    assert by[first.pid] >= 10 and by[second.pid] >= 10, by
    # Items ran once, but those in flight on the killed worker: started there
    # first, again on the other one, which wrote their result.
    starts: dict[int, list[int]] = collections.defaultdict(list)
    for line in workers.lines():
        what, pid = line.rsplit(" pid=", 1)
        if what.startswith("exec-start item "):
            starts[int(what.split()[-1])].append(int(pid))
    assert sorted(starts) == list(range(300))
    twice = {i: pids for i, pids in starts.items() if len(pids) > 1}
    assert all(pids == [first.pid, second.pid] for pids in twice.values()), twice
    assert all(out[i][1] == second.pid for i in twice), twice
    assert len(twice) < 50, twice  # in flight: at most a few rounds of 4 at once
    # Each worker ran at most 4 items at once (the node's max_workers), and got there.
    running: collections.Counter[int] = collections.Counter()
    most: collections.Counter[int] = collections.Counter()
    for line in workers.lines():
        what, pid = line.rsplit(" pid=", 1)
        running[int(pid)] += 1 if what.startswith("exec-start") else -1
        most[int(pid)] = max(most[int(pid)], running[int(pid)])
    assert most == {first.pid: 4, second.pid: 4}, most


def test_an_exec_that_fails_after_its_retries_fails_the_run_naming_the_node(server: Server, workers: Workers) -> None:
    port = free_port()
    workers.start(port)
    server.register(port)
    code, body = server.call("/Checkout/run-3/run/send", {})
    assert code in (200, 202), body

    code, output = server.attach("Checkout", "run-3")
    error = "exec of node `Charge` in flow `Checkout` failed after 3 attempts: ValueError: card declined"
    assert code >= 400 and error in output, (code, output)
    assert server.status("Checkout", "run-3") == {"status": f"failed: {error}"}
    # The node's 3 attempts ran in one step, which Restate did not run again;
    # the run went no further.
    counts = workers.counts()
    assert counts["exec-start charge"] == 3, counts
    assert counts["exec-start ship"] == 0, counts
    # Its events go as far as the failed node's start.
    events = {"events": [started("Checkout", "Charge")], "next": 1, "status": f"failed: {error}"}
    assert server.events("Checkout", "run-3") == events
    # A prep that fails fails the run too, naming its node.
    code, body = server.call("/broken/run-4/run/send", {})
    assert code in (200, 202), body
    code, output = server.attach("broken", "run-4")
    error = "KeyError: 'missing' (in node `Read` of flow `broken`)"
    assert code >= 400 and error in output, (code, output)
    assert server.status("broken", "run-4") == {"status": f"failed: {error}"}


def test_minllm_runs_without_the_sdk_and_minllm_restate_says_what_to_install() -> None:
    blocked = "import sys; sys.modules['restate'] = None\n"
    plain = subprocess.run([sys.executable, "-c", blocked + "import minllm; print(minllm.Flow)"], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    served = subprocess.run([sys.executable, "-c", blocked + "import minllm.restate"], capture_output=True, text=True)
    assert served.returncode != 0
    assert "ImportError: minllm.restate needs" in served.stderr and "pip install restate-sdk hypercorn" in served.stderr


def test_two_flows_of_one_name_are_refused_with_what_to_do() -> None:
    from minllm import Flow, Node
    from minllm.restate import app, workflow

    with pytest.raises(ValueError, match="two workflows are named 'Flow': name them with workflow"):
        app(Flow(start=Node()), Flow(start=Node()))
    assert callable(app(Flow(start=Node()), workflow(Flow(start=Node()), "other")))
