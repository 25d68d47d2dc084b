"""Per-item evaluation: probability- and generation-based metrics, misalignment, summaries, utility."""

from frequnlearn.evaluate.runner import COLUMNS, evaluate_items

__all__ = ["COLUMNS", "evaluate_items"]
