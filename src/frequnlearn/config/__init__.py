"""Config machinery; each stage's typed config lives in a module of its own beside this file.

`load_config("configs/tiny.yaml")` reads a study file; `load_config(path, overrides, section="unlearn")`
one stage's section of it; `load_config(UnlearnConfig, path, overrides, section="unlearn")` names the
class.
"""

from __future__ import annotations

import typing
from typing import Any

from frequnlearn.config import base
from frequnlearn.config.base import (
    ConfigError,
    check,
    config_hash,
    did_you_mean,
    from_dict,
    load_yaml,
    parse_overrides,
    to_dict,
)

__all__ = [
    "ConfigError",
    "check",
    "config_hash",
    "did_you_mean",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_overrides",
    "section_class",
    "to_dict",
]


def load_config(
    cls: Any = None,
    path: Any = None,
    overrides: typing.Iterable[str] = (),
    section: str | None = None,
) -> Any:
    """A config from a YAML file (or only its `section` of a study file) plus `key=value` overrides.

    `load_config("configs/tiny.yaml")` reads a whole study file (a `StudyConfig`), and
    `load_config("configs/tiny.yaml", ["lr=0.001"], section="unlearn")` one stage's section (an
    `UnlearnConfig`); the path may be None (the defaults). `load_config(UnlearnConfig, path, overrides,
    section="unlearn")` names the class. Overrides may name keys relative to the section
    (`n_people=600`) or with the section prefix (`generate.n_people=600`).
    """
    if not isinstance(cls, type):  # load_config(PATH_OR_NONE, [OVERRIDES], section=...)
        path, overrides = cls, (path if path is not None else overrides)
        cls = section_class(section)
    return base.load_config(cls, path, overrides, section)


def section_class(section: str | None) -> type:
    """The config class of a study file's section (`StudyConfig` for the whole file)."""
    from frequnlearn.config.study import StudyConfig

    if section is None:
        return StudyConfig
    hints = typing.get_type_hints(StudyConfig)
    if section not in hints:
        close = did_you_mean(section, list(hints))
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"section '{section}': not a section of a study file{hint}; use one of {', '.join(hints)}"
        )
    return hints[section]
