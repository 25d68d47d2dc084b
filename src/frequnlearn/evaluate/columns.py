"""The columns of per-item evaluation rows: the contract every later stage reads (no heavy imports).

Identity columns are fixed here; metric columns are those the registered families declare, so a new
family's columns join the contract where the family is registered.
"""

from __future__ import annotations

from frequnlearn.evaluate.families import metric_columns

IDENTITY = [
    "model",
    "run_id",
    "step",
    "item_id",
    "person_id",
    "group",
    "attribute",
    "frequency",
    "bucket",
    "probe",
    "family",
    # False when a logit the row's metrics read was not finite; its metrics are then NaN (rank too).
    "finite",
]


def row_columns() -> list[str]:
    """Identity columns, then every registered family's metric columns."""
    return IDENTITY + list(metric_columns())


def numeric_metrics() -> list[str]:
    """Every numeric metric column (text ones such as `generation` left out)."""
    return [col for col, kind in metric_columns().items() if kind is float]


# The rows of the built-in families, as every score table is written.
COLUMNS = row_columns()
