"""TOML config files -> frozen dataclasses, with every key and type checked; ``host:port`` parsing.

:Status: used by every role's ``config.py``.

The defaults live in code, in frozen dataclasses; a file only overrides them. ``load_config`` reads the file with
:mod:`tomllib`, deep-merges ``overrides`` (a nested mapping, e.g. from the command line or a test) over it and
builds the dataclass, recursing into nested dataclasses for TOML tables. Supported field types: ``int``,
``float`` (an int is accepted), ``str``, ``bool``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, nested
dataclasses and ``X | None``. An unknown key, a missing required key or a value of the wrong type raises
:class:`ConfigError` naming the dotted key, e.g. ``comet.limits.max_key_bytes: expected int, got str``. Booleans are
not ints here, in either direction.

After a dataclass is built, its ``check(self) -> None`` method is called when it defines one (inner tables
first); a ``ValueError`` raised there becomes a ConfigError prefixed with the table's dotted name.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the key."""


def load_config(cls: type[T], path: str | None, overrides: Mapping[str, Any] | None = None) -> T:
    """Build ``cls`` from its defaults, the TOML file at ``path`` (if any) and ``overrides``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
    if overrides:
        data = _merge(data, overrides)
    built: T = _build_dataclass(cls, data, "")
    return built


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[ipv6]:port"`` -> ``(host, port)``; port 0 means "any free port" for a listener."""
    if not isinstance(text, str):
        raise ConfigError(f"address must be a string, got {type(text).__name__}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"address {text!r}: expected host:port")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        raise ConfigError(f"address {text!r}: port must be 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"address {text!r}: {host!r} is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ConfigError(f"address {text!r}: bad host {host!r} (write IPv6 addresses as [addr]:port)")
    return host, int(port_text)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dotted(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(value: Any) -> str:
    return {dict: "table", list: "array", type(None): "none"}.get(type(value), type(value).__name__)


def _build_dataclass(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {_type_name(data)}")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise ConfigError(f"{_dotted(where, str(key))}: unknown key")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key = _dotted(where, name)
        hint = hints[name]
        if name in data:
            values[name] = _convert(hint, data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hint):
                values[name] = _convert(hint, {}, key)
            else:
                raise ConfigError(f"{key}: missing required key")
    try:
        built = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    _run_check(built, where)
    return built


def _run_check(obj: Any, where: str) -> None:
    check = getattr(obj, "check", None)
    if check is None:
        return
    try:
        check()
    except ValueError as exc:  # ConfigError included
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):  # an override may pass a ready-made section
            return value
        return _build_dataclass(hint, value, key)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        choices = [arg for arg in args if arg is not type(None)]
        if len(choices) != 1:
            raise TypeError(f"{key}: unsupported config type {hint!r}")
        return _convert(choices[0], value, key)
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected array, got {_type_name(value)}")
        item_type = args[0] if args else Any
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{key}: only tuple[X, ...] is supported, got {hint!r}")
        items = [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected table, got {_type_name(value)}")
        key_type, value_type = args if args else (str, Any)
        if key_type is not str:
            raise TypeError(f"{key}: dict keys must be str, got {hint!r}")
        return {str(k): _convert(value_type, v, _dotted(key, str(k))) for k, v in value.items()}
    return _convert_scalar(hint, value, key)


def _convert_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{key}: unsupported config type {hint!r}")
    raise ConfigError(f"{key}: expected {hint.__name__}, got {_type_name(value)}")
