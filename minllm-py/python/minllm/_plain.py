"""Values as plain data for checkpoints: JSON with tags for tuples, bytes and
dicts, so that loading a checkpoint never runs code; other types only when
registered (:func:`register`) or when the checkpointer allows pickle."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any, Callable

from . import _minllm

CheckpointError = _minllm.CheckpointError

_registered: dict[type, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {}
_by_name: dict[str, tuple[type, Callable[[Any], Any]]] = {}


def register(cls: type, dump: Callable[[Any], Any], load: Callable[[Any], Any], name: str | None = None) -> None:
    """Lets values of ``cls`` go into checkpoints: ``dump(value)`` gives plain data
    (None, bool, int, float, str, bytes, list, tuple, dict), ``load(data)`` makes the
    value again. ``name`` (default ``module.QualName``) is what the checkpoint stores.

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Ticket:
    ...     id: int
    >>> register(Ticket, dataclasses.asdict, lambda d: Ticket(**d))
    """
    key = name or f"{cls.__module__}.{cls.__qualname__}"
    _registered[cls] = (key, dump, load)
    _by_name[key] = (cls, load)


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_JSON = json.JSONEncoder(separators=(",", ":"))
_SCALARS = frozenset({int, str, bool, float, type(None)})


class NotPlain(TypeError):
    """A value that is not plain data (nor registered, nor allowed to be
    pickled): ``type_name`` names the type found."""

    def __init__(self, message: str, type_name: str) -> None:
        super().__init__(message)
        self.type_name = type_name


class _Codec:
    """Plain data to JSON and back, for one checkpointer (which may allow pickle).
    ``pickle_hint`` says how its owner allows pickle, for the error that refuses
    a value."""

    def __init__(self, allow_pickle: bool, pickle_hint: str = "SqliteCheckpointer(path, allow_pickle=True)") -> None:
        self.allow_pickle, self.pickle_hint = allow_pickle, pickle_hint

    def dump(self, value: Any, where: str) -> Any:
        t = type(value)
        if value is None or t is bool or t is int or t is str:
            return value
        if t is float:
            return value
        if t is list:
            return [self.dump(v, where) for v in value]
        if t is tuple:
            return {"__t": [self.dump(v, where) for v in value]}
        if t is bytes:
            return {"__b": base64.b64encode(value).decode("ascii")}
        if t is dict:
            return {"__d": [[self.dump(k, where), self.dump(v, where)] for k, v in value.items()]}
        found = _registered.get(t)
        if found is not None:
            name, dump, _ = found
            return {"__r": name, "v": self.dump(dump(value), where)}
        if self.allow_pickle:
            return {"__p": base64.b64encode(pickle.dumps(value)).decode("ascii")}
        raise NotPlain(
            f"{where} holds a {_type_name(value)}, which cannot be checkpointed: use plain data (None, bool, "
            f"int, float, str, bytes, list, tuple, dict), register the type with minllm.register(cls, dump, load), "
            f"or allow pickle with {self.pickle_hint}",
            _type_name(value),
        )

    def load(self, data: Any) -> Any:
        if isinstance(data, list):
            return [self.load(v) for v in data]
        if not isinstance(data, dict):
            return data
        if "__t" in data:
            return tuple(self.load(v) for v in data["__t"])
        if "__b" in data:
            return base64.b64decode(data["__b"])
        if "__d" in data:
            return {self.load(k): self.load(v) for k, v in data["__d"]}
        if "__r" in data:
            found = _by_name.get(data["__r"])
            if found is None:
                raise CheckpointError(
                    f"the checkpoint holds a {data['__r']}, which is not registered: call "
                    f"minllm.register({data['__r'].rsplit('.', 1)[-1]}, dump, load) before resuming"
                )
            return found[1](self.load(data["v"]))
        if "__p" in data:
            if not self.allow_pickle:
                raise CheckpointError(
                    "the checkpoint holds a pickled value, and this checkpointer does not allow pickle "
                    "(loading it could run any code); open it with allow_pickle=True only if you trust the file"
                )
            return pickle.loads(base64.b64decode(data["__p"]))
        raise CheckpointError(f"the checkpoint holds an unknown value {json.dumps(data)[:80]}")

    def encode(self, value: Any, where: str) -> bytes:
        if type(value) in _SCALARS:
            return _JSON.encode(value).encode()
        return _JSON.encode(self.dump(value, where)).encode()

    def decode(self, data: bytes) -> Any:
        return self.load(json.loads(data))
