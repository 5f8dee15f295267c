"""The checkpoint backends as Python sees them: the Rust engine's own (one
implementation for both languages), with the plain-data codec of each."""

from __future__ import annotations

import os
from typing import Any

from . import _minllm
from ._plain import CheckpointError, _Codec

class CheckpointInfo:
    """A line of a run's history: ``seq`` (its number), ``parent`` (the checkpoint it
    follows), ``step``, ``node`` (``outer > inner > node``), ``status``
    (``"running"``, ``"paused"``, ``"finished"``) and ``created`` (seconds since the epoch)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.seq: int = d["seq"]
        self.parent: int | None = d["parent"]
        self.step: int = d["step"]
        self.node: str = d["node"]
        self.status: str = d["status"]
        self.created: float = d["created_ms"] / 1000

    def __repr__(self) -> str:
        return f"CheckpointInfo(seq={self.seq}, step={self.step}, node={self.node!r}, status={self.status!r})"


class _Checkpointer:
    _cp: Any
    _codec: _Codec

    def history(self, run_id: str) -> list[CheckpointInfo]:
        """The run's checkpoints, oldest first."""
        return [CheckpointInfo(d) for d in self._cp.history(run_id)]

    def load(self, run_id: str, seq: int | None = None) -> dict[Any, Any]:
        """The store of checkpoint ``seq`` of the run (the newest when ``None``)."""
        found = self._cp.get(run_id, seq)
        if found is None:
            raise CheckpointError(f"run {run_id!r} has no checkpoint {seq if seq is not None else ''}".rstrip())
        return _fields_to_store(self._codec, found["fields"])


class SqliteCheckpointer(_Checkpointer):
    """Checkpoints in a SQLite file (WAL mode, no server). ``allow_pickle``: store
    values of other types with pickle (only for files you trust: loading a pickle
    can run any code)."""

    def __init__(self, path: str | os.PathLike[str], allow_pickle: bool = False) -> None:
        self.path = os.fspath(path)
        self._cp = _minllm._Checkpoints.sqlite(self.path)
        self._codec = _Codec(allow_pickle)

    def __repr__(self) -> str:
        return f"SqliteCheckpointer({self.path!r})"


class MemoryCheckpointer(_Checkpointer):
    """Checkpoints in memory, for tests: they end with the process."""

    def __init__(self, allow_pickle: bool = False) -> None:
        self._cp = _minllm._Checkpoints.memory()
        self._codec = _Codec(allow_pickle)


def _fields_to_store(codec: _Codec, fields: dict[str, bytes]) -> dict[Any, Any]:
    store = {}
    for name, data in fields.items():
        key = codec.decode(name[1:].encode()) if name.startswith("\0") else name
        store[key] = codec.decode(data)
    return store
