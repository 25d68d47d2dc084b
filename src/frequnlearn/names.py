"""The tables of registered names (metric families, "known" rules, counting backends, unlearning losses),
importing nothing, so that a config checks a name without importing the stage that registers it.

A registry keeps its entries in its table here (`table(kind)` returns the dict itself, so the registry
is still the only list of its names) and fills it when it is imported. A config checks its names
against the tables (`check`); every command imports the registries whose names its config holds
before reading it (`study` imports them all). Where a registry was not imported (a config built in a
library call), the config leaves that name to its stage, which checks it against its own registry
when it runs, before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

METRIC_FAMILY = "metric family"
KNOWN_RULE = "known rule"
COUNT_BACKEND = "count backend"
FORGET_LOSS = "forget loss"
RETAIN_LOSS = "retain loss"

# A registry that takes plugins (code from outside the package that registers more names) leaves
# its loader here, under its kind: `load_plugins(kind, specs, key)`.
PLUGIN_LOADER = "plugin loader"

_TABLES: dict[str, dict[str, Any]] = {}


def table(kind: str) -> dict[str, Any]:
    """The registry of `kind` (created empty on first use): name -> whatever the registry keeps."""
    return _TABLES.setdefault(kind, {})


def registered(kind: str) -> list[str] | None:
    """The names of `kind` in registration order, or None when its registry was not imported."""
    return list(_TABLES[kind]) if kind in _TABLES else None


def unknown(kind: str, names: list[str] | tuple[str, ...]) -> str | None:
    """The first of `names` that `kind`'s registry does not hold (None if all are known, or if the
    registry was not imported: its stage checks when it runs)."""
    known = registered(kind)
    if known is None:
        return None
    return next((n for n in names if n not in known), None)


def load_plugins(kind: str, specs: Sequence[str], key: str) -> bool:
    """Import the plugins `specs` with the loader of `kind`'s registry (`key` names the setting in its
    errors); False when that registry was not imported, so it has left no loader (its stage loads the
    plugins when it runs)."""
    loader: Callable[..., Any] | None = _TABLES.get(PLUGIN_LOADER, {}).get(kind)
    if loader is None:
        return False
    loader(specs, key=key)
    return True
