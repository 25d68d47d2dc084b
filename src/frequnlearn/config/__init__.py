"""Config machinery; each stage's typed config lives in a module of its own beside this file."""

from frequnlearn.config.base import (
    ConfigError,
    check,
    config_hash,
    from_dict,
    load_config,
    load_yaml,
    parse_overrides,
    to_dict,
)

__all__ = [
    "ConfigError",
    "check",
    "config_hash",
    "from_dict",
    "load_config",
    "load_yaml",
    "parse_overrides",
    "to_dict",
]
