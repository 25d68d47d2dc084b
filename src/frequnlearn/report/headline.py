"""What a report says first about each finding: one `Headline` per finding, built from its declared
primary endpoint, and the verdict words (each with one meaning, as PROTOCOL.md defines them).

The statistics produce headlines; the page renders them as the boxes of the first screen and
findings.json stores them, so every place that states a verdict states the same one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# supported: the interval lies on the predicted side; opposite: it lies on the other side;
# inconclusive: it covers zero; no estimate: the comparison point was not reached, or nothing moved;
# descriptive: fewer than the minimum items per arm, or no targeted forgetting at a level.
SUPPORTED, OPPOSITE, INCONCLUSIVE, NO_ESTIMATE, DESCRIPTIVE = (
    "supported",
    "opposite",
    "inconclusive",
    "no estimate",
    "descriptive",
)
VERDICTS = (SUPPORTED, OPPOSITE, INCONCLUSIVE, NO_ESTIMATE, DESCRIPTIVE)


@dataclass
class Headline:
    """One finding's primary endpoint as the report's first screen states it."""

    finding: str  # "1" (frequency) or "2" (misalignment)
    claim: str  # the paper's claim in words, e.g. "frequent facts are harder to unlearn"
    verdict: str  # one of VERDICTS
    measured: str  # what was measured: the endpoint, probe, selection, method, level of forgetting
    estimate: float  # NaN when there is no estimate
    lo: float  # 95% interval (NaN when none)
    hi: float
    unit: str  # the estimate's unit in words
    n_items: int  # items per arm entering the estimate (smallest arm)
    n_people: int
    n_seeds: int  # pretraining seeds (models) entering the interval
    budget: str  # the step budget or stopping rule, in words
    meaning: str  # one sentence: what the verdict means for this run
    n_worlds: int = 1  # generated worlds (data seeds)
    exploratory: int = 0  # how many exploratory comparisons the finding's family made (Holm-adjusted)
    notes: list[str] = field(default_factory=list)  # censoring, preconditions not met, ...

    def record(self) -> dict[str, Any]:
        """As findings.json stores it (NaN as null)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
