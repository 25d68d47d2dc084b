"""Per-item evaluation: probability- and generation-based metrics, misalignment, summaries, utility.

`evaluate_items` is imported on first use, so reading scores (misalignment, summaries) needs no torch.
"""

from __future__ import annotations

from typing import Any

from frequnlearn.evaluate.columns import COLUMNS

__all__ = ["COLUMNS", "evaluate_items"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_items":
        from frequnlearn.evaluate.runner import evaluate_items

        return evaluate_items
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
