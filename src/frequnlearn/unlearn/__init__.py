"""Unlearning: every forget loss (GA, NPO, SimNPO, IDK, DPO, RMU, UNDIAL, WGA, SatImp, FGA) with a
retain term (GD, KL, activations) in one loop; the losses live in `unlearn.losses`, one file each."""

from __future__ import annotations

from typing import Any

__all__ = ["UnlearnResult", "unlearn"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `frequnlearn --help` (which imports unlearn.cli) does not pay for torch.
    if name in __all__:
        from frequnlearn.unlearn import loop

        return getattr(loop, name)
    raise AttributeError(name)
