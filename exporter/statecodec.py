"""Generic frozen-dataclass <-> JSON, driven by the classes' type hints (exporter/storage.py).

`encode` turns a value into JSON-able data: dataclasses by field, dates as ISO text, mappings
with other than str keys as [key, value] pairs, sets sorted when they can be. `decode` reads
it back as the hinted type — None, bool, int, float, str, date, datetime, tuple[...],
frozenset[...], Mapping[K, V] (as a read-only MappingProxyType), unions, nested dataclasses —
and raises CodecError for anything that does not fit, so a foreign or damaged file never
becomes a state the poller would trip over. A new state field of these types needs no change.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from types import MappingProxyType

__all__ = ["CodecError", "decode", "encode"]


class CodecError(ValueError):
    """The JSON does not fit the state's types."""


def encode(value):
    """A JSON-able form of `value` (dataclasses by field; mappings with other than str keys
    as [key, value] pairs; sets sorted when they can be)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {key: encode(item) for key, item in value.items()}
        return [[encode(key), encode(item)] for key, item in value.items()]
    if isinstance(value, frozenset | set):
        items = [encode(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    raise CodecError(f"cannot store a {type(value).__name__}")


_HINTS: dict[type, dict[str, object]] = {}


def _hints(cls: type) -> dict[str, object]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _plain(obj):
    """Untyped JSON back to immutable Python (lists become tuples): a bare `tuple` hint."""
    if isinstance(obj, list):
        return tuple(_plain(item) for item in obj)
    if isinstance(obj, dict):
        return MappingProxyType({key: _plain(item) for key, item in obj.items()})
    return obj


def decode(obj, hint):
    """`obj` (parsed JSON) as a value of type `hint`; CodecError when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return _plain(obj)
    if origin is typing.Union or origin is types.UnionType:
        if obj is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(obj, arg)
            except CodecError:
                continue
        raise CodecError(f"{obj!r:.40} fits none of {hint}")
    if hint is type(None):
        if obj is None:
            return None
        raise CodecError("expected null")
    if hint is bool:
        if isinstance(obj, bool):
            return obj
        raise CodecError(f"expected a bool, got {obj!r:.40}")
    if hint is int:
        if isinstance(obj, int) and not isinstance(obj, bool):
            return obj
        raise CodecError(f"expected an int, got {obj!r:.40}")
    if hint is float:
        if isinstance(obj, int | float) and not isinstance(obj, bool):
            return float(obj)
        raise CodecError(f"expected a number, got {obj!r:.40}")
    if hint is str:
        if isinstance(obj, str):
            return obj
        raise CodecError(f"expected a string, got {obj!r:.40}")
    if hint in (date, datetime):
        if not isinstance(obj, str):
            raise CodecError(f"expected an ISO date, got {obj!r:.40}")
        try:
            return hint.fromisoformat(obj)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(obj, hint)
    if hint is tuple or hint is list:
        if not isinstance(obj, list):
            raise CodecError(f"expected a list, got {obj!r:.40}")
        return _plain(obj)
    if origin is tuple:
        if not isinstance(obj, list):
            raise CodecError(f"expected a list, got {obj!r:.40}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(item, args[0]) for item in obj)
        if len(args) != len(obj):
            raise CodecError(f"expected {len(args)} items, got {len(obj)}")
        return tuple(decode(item, arg) for item, arg in zip(obj, args, strict=True))
    if origin in (frozenset, set, typing.AbstractSet) or hint in (frozenset, set):
        if not isinstance(obj, list):
            raise CodecError(f"expected a list, got {obj!r:.40}")
        item_hint = args[0] if args else typing.Any
        try:
            return frozenset(decode(item, item_hint) for item in obj)
        except TypeError as exc:  # an unhashable item
            raise CodecError(str(exc)) from None
    if origin in (Mapping, dict, typing.Mapping) or hint in (dict, Mapping):
        key_hint, value_hint = args if args else (typing.Any, typing.Any)
        if isinstance(obj, dict):
            items = obj.items()
        elif isinstance(obj, list) and all(isinstance(item, list) and len(item) == 2 for item in obj):
            items = obj
        else:
            raise CodecError(f"expected a mapping, got {obj!r:.40}")
        try:
            out = {decode(key, key_hint): decode(item, value_hint) for key, item in items}
        except TypeError as exc:
            raise CodecError(str(exc)) from None
        return out if origin is dict or hint is dict else MappingProxyType(out)
    raise CodecError(f"no decoding for {hint}")


def _decode_dataclass(obj, cls: type):
    if not isinstance(obj, dict):
        raise CodecError(f"expected an object for {cls.__name__}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in obj and f.init:
            try:
                kwargs[f.name] = decode(obj[f.name], hints[f.name])
            except CodecError as exc:
                raise CodecError(f"{cls.__name__}.{f.name}: {exc}") from None
    try:
        value = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a field without a default is missing
        raise CodecError(f"{cls.__name__}: {exc}") from None
    return _same_shapes(value)


def _same_shapes(value):
    """Fields that are histograms of other bucket bounds than the code's (the code changed
    them since the save, or the file lies) go back to their defaults."""
    changes = {}
    for f in dataclasses.fields(value):
        current = getattr(value, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        bounds = getattr(default, "bounds", None)
        if bounds is not None and (getattr(current, "bounds", None) != bounds
                                   or len(getattr(current, "counts", ())) != len(bounds)):
            changes[f.name] = default
    return replace(value, **changes) if changes else value
