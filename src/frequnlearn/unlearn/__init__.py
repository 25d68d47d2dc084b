"""Unlearning: forget losses (GA, NPO, SimNPO, IDK) with retain terms (GD, KL) in one loop."""

from frequnlearn.unlearn.loop import UnlearnResult, unlearn

__all__ = ["UnlearnResult", "unlearn"]
