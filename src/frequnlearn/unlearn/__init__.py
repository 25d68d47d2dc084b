"""Unlearning: forget losses (GA, NPO, SimNPO, IDK) with retain terms (GD, KL) in one loop."""

from __future__ import annotations

from typing import Any

__all__ = ["UnlearnResult", "unlearn"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `frequnlearn --help` (which imports unlearn.cli) does not pay for torch.
    if name in __all__:
        from frequnlearn.unlearn import loop

        return getattr(loop, name)
    raise AttributeError(name)
