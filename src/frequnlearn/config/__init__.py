"""Config machinery; each stage's typed config lives in a module of its own beside this file.

`load_config("configs/tiny.yaml")` reads a study file; `load_config(path, overrides, section="unlearn")`
one stage's section of it.
"""

from frequnlearn.config.base import (
    ConfigError,
    check,
    config_hash,
    did_you_mean,
    from_dict,
    load_config,
    load_yaml,
    parse_overrides,
    section_class,
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
