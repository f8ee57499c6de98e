"""The events' wire codec: a frozen dataclass event to a compact JSON-able dict or bytes and back, by a registry.

Several nodes carry domain events between them (a Redis transport); this is what they say on the wire. An
``EventCodec`` knows the event classes registered with it (``register(cls)``, or ``register_module(module)``:
every frozen dataclass defined in that module) by their class name, and converts each field by its type
hint: ``str``, ``int``, ``float``, ``bool``, ``None`` (and ``X | None``), ``Literal``, ``tuple[X, ...]`` and
fixed tuples, ``Mapping``/``dict`` with ``str`` keys, enums (their value), ``datetime`` (ISO 8601), nested
frozen dataclasses, and ``Any`` (a JSON value: tuples become lists there). A field equal to its default is
left out (compact). Decoding builds the event with its constructor (its checks run): an unknown type name,
a malformed payload or a value the event refuses raises ``CodecError``, never anything else, so that a
reader can log the entry and go on. Unknown field names are ignored (a newer node may send more fields).

Pure: no I/O. Imports no package of ours.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

Convert = Callable[[Any], Any]


class CodecError(ValueError):
    """An event that cannot be encoded, or a payload that is not one of the registered events."""


class EventCodec:
    """Registered event classes by name; ``encode``/``decode`` (bytes) and ``to_dict``/``from_dict``."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._names: dict[type, str] = {}
        self._fields: dict[type, tuple[_Field, ...]] = {}

    def register(self, cls: type) -> type:
        """Know ``cls`` (a frozen dataclass) by its class name; two classes of one name are refused."""
        if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
            raise TypeError(f"{cls!r} is not a dataclass")
        if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__} is not frozen")
        name = cls.__name__
        known = self._classes.get(name)
        if known is cls:
            return cls
        if known is not None:
            raise ValueError(f"two event classes named {name}: {known.__module__} and {cls.__module__}")
        plan = self._plan(cls)  # first: a class whose hints have no wire form is not registered at all
        self._classes[name] = cls
        self._names[cls] = name
        self._fields[cls] = plan
        return cls

    def register_module(self, module: types.ModuleType) -> tuple[type, ...]:
        """Register every frozen dataclass defined in ``module`` (not those it imports); returns them."""
        found = tuple(obj for obj in vars(module).values()
                      if isinstance(obj, type) and dataclasses.is_dataclass(obj)
                      and obj.__module__ == module.__name__ and obj.__dataclass_params__.frozen)  # type: ignore[attr-defined]
        for cls in found:
            self.register(cls)
        return found

    @property
    def classes(self) -> tuple[type, ...]:
        return tuple(self._classes.values())

    def name_of(self, event: object) -> str:
        """The wire name of ``event``'s class (``CodecError`` if not registered)."""
        name = self._names.get(type(event))
        if name is None:
            raise CodecError(f"{type(event).__name__} is not a registered event class")
        return name

    def to_dict(self, event: object) -> dict[str, Any]:
        """The event's fields as a JSON-able dict (defaults left out)."""
        fields = self._fields.get(type(event))
        if fields is None:
            raise CodecError(f"{type(event).__name__} is not a registered event class")
        out: dict[str, Any] = {}
        for f in fields:
            value = getattr(event, f.name)
            if f.has_default and _same(value, f.default()):
                continue
            try:
                out[f.name] = f.encode(value)
            except CodecError as exc:
                raise CodecError(f"{type(event).__name__}.{f.name}: {exc}") from None
        return out

    def from_dict(self, name: str, body: object) -> object:
        """The event of class ``name`` with the fields of ``body`` (``CodecError`` if it cannot be)."""
        cls = self._classes.get(name) if isinstance(name, str) else None
        if cls is None:
            raise CodecError(f"unknown event type {name!r:.60}")
        if not isinstance(body, dict):
            raise CodecError(f"{name}: the body is not an object")
        kwargs: dict[str, Any] = {}
        for f in self._fields[cls]:
            if f.name not in body:
                if not f.has_default:
                    raise CodecError(f"{name}.{f.name} is missing")
                continue
            try:
                kwargs[f.name] = f.decode(body[f.name])
            except CodecError as exc:
                raise CodecError(f"{name}.{f.name}: {exc}") from None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{name}: refused: {exc}") from None

    def encode(self, event: object) -> tuple[str, bytes]:
        """``(type name, body)``: the body is compact JSON (UTF-8)."""
        body = self.to_dict(event)
        try:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{type(event).__name__}: not JSON-able: {exc}") from None
        return self.name_of(event), data

    def decode(self, name: str | bytes, body: bytes | str) -> object:
        """The event ``encode`` made (``CodecError`` for anything else)."""
        try:
            type_name = name.decode() if isinstance(name, bytes) else name
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            raise CodecError(f"malformed payload: {exc.__class__.__name__}") from None
        return self.from_dict(type_name, data)

    # -- converters by type hint ------------------------------------------------------------------------

    def _plan(self, cls: type) -> tuple[_Field, ...]:
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:  # a hint naming something the module does not define
            raise TypeError(f"{cls.__name__}: cannot resolve its type hints: {exc}") from None
        plan = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            encode, decode = self._converters(hints[f.name])
            if f.default is not dataclasses.MISSING:
                default_value = f.default
                plan.append(_Field(f.name, encode, decode, True, lambda v=default_value: v))
            elif f.default_factory is not dataclasses.MISSING:
                plan.append(_Field(f.name, encode, decode, True, f.default_factory))
            else:
                plan.append(_Field(f.name, encode, decode, False, _no_default))
        return tuple(plan)

    def _converters(self, hint: Any) -> tuple[Convert, Convert]:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is Any or hint is object:
            return _any_out, _identity
        if hint is type(None):
            return _exact(type(None)), _exact(type(None))
        if hint is bool:
            return _exact(bool), _exact(bool)
        if hint is int:
            return _exact(int), _exact(int)
        if hint is float:
            return _float, _float
        if hint is str:
            return _exact(str), _exact(str)
        if hint is datetime:
            return _datetime_out, _datetime_in
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return _enum_out(hint), _enum_in(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            self.register(hint)
            return self._nested_out(hint), self._nested_in(hint)
        if origin is typing.Literal:
            return _literal(args), _literal(args)
        if origin is typing.Union or origin is types.UnionType:
            parts = [self._converters(a) for a in args]
            return _first(p[0] for p in parts), _first(p[1] for p in parts)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                out, into = self._converters(args[0])
                return _seq_out(out), _seq_in(into)
            convs = [self._converters(a) for a in args]
            return _fixed_out([c[0] for c in convs]), _fixed_in([c[1] for c in convs])
        if origin in (dict, Mapping):
            if args and args[0] is not str:
                raise TypeError(f"mapping keys must be str on the wire, not {args[0]!r}")
            val_out, val_in = self._converters(args[1]) if args else (_any_out, _identity)
            return _map_out(val_out), _map_in(val_in)
        raise TypeError(f"no wire form for the type {hint!r}")

    def _nested_out(self, cls: type) -> Convert:
        def out(value: Any) -> Any:
            if type(value) is not cls:
                raise CodecError(f"expected {cls.__name__}, got {type(value).__name__}")
            return self.to_dict(value)
        return out

    def _nested_in(self, cls: type) -> Convert:
        name = cls.__name__

        def into(value: Any) -> Any:
            return self.from_dict(name, value)
        return into


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    encode: Convert
    decode: Convert
    has_default: bool
    default: Callable[[], Any]


def _no_default() -> Any:
    raise AssertionError("no default")


def _same(a: Any, b: Any) -> bool:
    """``a`` is its field's default ``b`` (then it is left off the wire)."""
    try:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return dict(a) == dict(b)
        return type(a) is type(b) and bool(a == b)
    except Exception:  # an odd value's __eq__: just send it
        return False


def _identity(value: Any) -> Any:
    return value


def _exact(kind: type) -> Convert:
    def check(value: Any) -> Any:
        if type(value) is not kind and not (kind is str and isinstance(value, str)):
            raise CodecError(f"expected {kind.__name__}, got {type(value).__name__}")
        return str(value) if kind is str else value  # a StrEnum goes on the wire as its plain value
    return check


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise CodecError(f"expected float, got {type(value).__name__}")


def _datetime_out(value: Any) -> str:
    if not isinstance(value, datetime):
        raise CodecError(f"expected datetime, got {type(value).__name__}")
    return value.isoformat()


def _datetime_in(value: Any) -> datetime:
    if not isinstance(value, str):
        raise CodecError(f"expected an ISO 8601 string, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise CodecError(f"not an ISO 8601 time: {value!r:.40}") from None


def _enum_out(kind: type[enum.Enum]) -> Convert:
    def out(value: Any) -> Any:
        if not isinstance(value, kind):
            raise CodecError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value.value
    return out


def _enum_in(kind: type[enum.Enum]) -> Convert:
    def into(value: Any) -> Any:
        try:
            return kind(value)
        except (ValueError, TypeError):
            raise CodecError(f"not a {kind.__name__}: {value!r:.40}") from None
    return into


def _literal(allowed: tuple[Any, ...]) -> Convert:
    def check(value: Any) -> Any:
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise CodecError(f"expected one of {allowed!r:.80}, got {value!r:.40}")
        return value
    return check


def _first(converters: Iterable[Convert]) -> Convert:
    options = tuple(converters)

    def convert(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except CodecError:
                continue
        raise CodecError(f"no alternative of the union takes {type(value).__name__}")
    return convert


def _seq_out(item: Convert) -> Convert:
    def out(value: Any) -> Any:
        if not isinstance(value, tuple):
            raise CodecError(f"expected a tuple, got {type(value).__name__}")
        return [item(v) for v in value]
    return out


def _seq_in(item: Convert) -> Convert:
    def into(value: Any) -> Any:
        if not isinstance(value, list):
            raise CodecError(f"expected a list, got {type(value).__name__}")
        return tuple(item(v) for v in value)
    return into


def _fixed_out(items: list[Convert]) -> Convert:
    def out(value: Any) -> Any:
        if not isinstance(value, tuple) or len(value) != len(items):
            raise CodecError(f"expected a tuple of {len(items)}")
        return [c(v) for c, v in zip(items, value, strict=True)]
    return out


def _fixed_in(items: list[Convert]) -> Convert:
    def into(value: Any) -> Any:
        if not isinstance(value, list) or len(value) != len(items):
            raise CodecError(f"expected a list of {len(items)}")
        return tuple(c(v) for c, v in zip(items, value, strict=True))
    return into


def _map_out(item: Convert) -> Convert:
    def out(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise CodecError(f"expected a mapping, got {type(value).__name__}")
        if not all(isinstance(k, str) for k in value):
            raise CodecError("mapping keys must be strings")
        return {str(k): item(v) for k, v in value.items()}
    return out


def _map_in(item: Convert) -> Convert:
    def into(value: Any) -> Any:
        if not isinstance(value, dict):
            raise CodecError(f"expected an object, got {type(value).__name__}")
        return {k: item(v) for k, v in value.items()}
    return into


def _any_out(value: Any) -> Any:
    """A JSON value for an ``Any`` field: tuples as lists, mappings as objects with string keys, enums by value."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, enum.Enum):
        return _any_out(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_any_out(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise CodecError("mapping keys must be strings")
        return {str(k): _any_out(v) for k, v in value.items()}
    raise CodecError(f"no wire form for a {type(value).__name__}")
