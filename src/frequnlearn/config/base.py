"""Typed configs: dataclasses read from YAML with `key=value` overrides, validated on the way in.

Every error a user can cause here becomes one `ConfigError` line naming the key and what is allowed,
so the CLI can print it without a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from frequnlearn.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "check",
    "config_hash",
    "did_you_mean",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_overrides",
    "to_dict",
]


def check(condition: bool, key: str, message: str) -> None:
    """Raise a one-line `ConfigError` about `key` unless `condition` holds (for `validate()` methods)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


# Seeds feed numpy's generators, which take integers from 0 to 2^32 - 1.
SEED_LIMIT = 2**32
# Upper bounds of step and epoch counts: far above any run this tool makes, far below what overflows
# or allocates without end.
MAX_STEPS = 10**9
MAX_EPOCHS = 100_000


def check_seed(value: Any, key: str) -> None:
    """A seed (or each of a list of seeds) is an integer in [0, 2^32)."""
    for seed in value if isinstance(value, (list, tuple)) else [value]:
        check(
            isinstance(seed, int) and 0 <= seed < SEED_LIMIT,
            key,
            f"{seed!r} is not a seed; use an integer from 0 to {SEED_LIMIT - 1} (2^32 - 1)",
        )


def check_range(value: float | None, key: str, low: float, high: float, what: str = "") -> None:
    """`value` (when set) lies in [low, high]; the message names both bounds."""

    def text(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

    if value is not None:
        check(
            low <= value <= high,
            key,
            f"must be between {text(low)} and {text(high)}{what}, got {text(value)}",
        )


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        args = get_args(tp)
        return f"a mapping of {_type_name(args[1])}" if args else "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; convert only where no information is lost."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1 and isinstance(value, dict):  # `X | None` given a mapping: X's own error
            raise errors[0]
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (arg,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        vt = get_args(tp)[1] if get_args(tp) else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string; a number is still what was meant.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            # inf/NaN pass every `>=` check the other way round (NaN) or blow up training (inf).
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def did_you_mean(key: str, names: typing.Sequence[str]) -> list[str]:
    """The names a mistyped `key` most likely meant: those it starts with (`lrate` -> `lr`) or spells
    the initials of (`learning_rate` -> `lr`), else difflib's closest spelling."""
    initials = "".join(word[:1] for word in key.split("_"))
    found = sorted((m for m in names if len(m) >= 2 and key.startswith(m)), key=len, reverse=True)
    found += [m for m in names if "_" in key and m == initials and m not in found]
    return found[:2] or difflib.get_close_matches(key, names, n=1, cutoff=0.5)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build `cls` from a mapping: unknown keys and wrong types stop with the key's full name."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = did_you_mean(str(key), list(fields))
            hint = " (did you mean " + " or ".join(f"'{prefix}{c}'" for c in close) + "?)" if close else ""
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{key}: unknown key{hint}; allowed keys: {allowed}")
    # A class may act on its raw mapping before any field is read (the study imports its plugins).
    preload = getattr(cls, "preload", None)
    if callable(preload):
        preload(data)
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    for name in ("seed", "seeds"):
        if name in kwargs:
            check_seed(kwargs[name], prefix + name)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as err:
            # validate() names keys relative to its own section; give the full path.
            msg = str(err)
            raise ConfigError(prefix + msg if prefix and not msg.startswith(prefix) else msg) from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain, JSON-ready dict of a config (lists, not tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def config_hash(*parts: Any) -> str:
    """Stable short hash of configs and other JSON-able inputs, used to key cached stage outputs."""
    blob = json.dumps(
        [to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last one
    silently, so an edit above would be overridden by a forgotten line below)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then a key of the base: an override, as YAML means it
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:
                continue  # an unhashable key: the base constructor says what is wrong
            if twice:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (also on line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"config: {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of keys to values at the top level")
    return data


def parse_overrides(overrides: typing.Iterable[str]) -> dict[str, Any]:
    """`a.b=3 c=[1,2]` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}': the key is empty")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    section: str | None = None,
) -> T:
    """Read `cls` from a YAML file (or only its `section` of a study file) plus overrides.

    Overrides may name keys relative to the section (`n_people=600`) or with the section prefix
    (`generate.n_people=600`). `frequnlearn.config.load_config` also takes a path first.
    """
    data: dict[str, Any] = load_yaml(path) if path else {}
    if section is not None:
        data = data.get(section, {}) if section in data else {}
        if not isinstance(data, dict):
            raise ConfigError(f"{section}: expected a mapping")
    extra = parse_overrides(overrides)
    if section is not None and section in extra and isinstance(extra[section], dict):
        extra = _merge({k: v for k, v in extra.items() if k != section}, extra[section])
    prefix = f"{section}." if section else ""
    return from_dict(cls, _merge(data, extra), prefix=prefix)
