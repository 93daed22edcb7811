"""Typed, frozen, nested dataclass configs: conversion to and from plain JSON dicts.

Every config in the project (VQ-VAE, priors, training) is a frozen dataclass. `to_dict` gives JSON-ready
data (tuples become lists); `from_dict` rebuilds the dataclass, converting nested dataclasses and tuples back,
and rejects unknown keys so that a typo in a config file is an error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from openjukebox.errors import OpenJukeboxError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def from_dict(cls: type[T], data: dict[str, Any], *, where: str | None = None) -> T:
    """Rebuild dataclass `cls` from `data`; unknown keys raise OpenJukeboxError. Missing keys take defaults."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise OpenJukeboxError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise OpenJukeboxError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise OpenJukeboxError(f"{where}: {e}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(args[0], value, where) if len(args) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise OpenJukeboxError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v, where) for v in value)
    return value
