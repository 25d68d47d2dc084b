"""The counting backends by name: importing this module registers every built-in backend.

`available_backends()` is the only list of backend names: `count.backend` is validated against it
and `frequnlearn count --backend` takes its choices from it. A new backend is one module that
decorates its factory with `register_backend` and is listed in the import below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from frequnlearn.errors import ConfigError

# Imported for their registration; each keeps its heavy imports inside functions.
from frequnlearn.frequency import ground_truth, infinigram_api, infinigram_local, scan  # noqa: F401
from frequnlearn.frequency.base import BACKENDS, Counter

if TYPE_CHECKING:
    from frequnlearn.config.count import CountConfig


def available_backends() -> list[str]:
    """Registered backend names, sorted."""
    return sorted(BACKENDS)


def check_backend(name: str) -> None:
    """Stop with one line naming the choices unless `name` is a registered backend."""
    if name not in BACKENDS:
        raise ConfigError(
            f"count.backend: unknown backend {name!r}; choose from {', '.join(available_backends())}"
        )


def make_counter(cfg: CountConfig) -> Counter:
    """The backend `cfg.backend` names, built from `cfg`."""
    check_backend(cfg.backend)
    return BACKENDS[cfg.backend](cfg)
