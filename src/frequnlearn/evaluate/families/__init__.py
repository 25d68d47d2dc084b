"""Metric families, one file each, registered by name (the registry is the only list of names).

Built in: prob, gen, tf, mia (membership inference scores), extract (probabilistic extraction)
(per-item rows), bio (biography probes for prob and gen) and utility (lm-eval, per run). `evaluate.metrics` is validated against the registry, `frequnlearn evaluate
--metrics` lists it, and `evaluate.columns` derives the row columns from it. A new family is one
file with one `@register_family` class, imported here.
"""

# Each module registers itself; registration order is the order of row columns and of rows.
# isort: off
from frequnlearn.evaluate.families import prob, gen, tf, bio, utility, mia, extract  # noqa: F401

# isort: on
from frequnlearn.evaluate.families.base import (
    FAMILIES,
    NEEDS,
    Context,
    Encoder,
    Family,
    Probe,
    check_lengths,
    check_metrics,
    family_names,
    metric_columns,
    register_family,
)

__all__ = [
    "FAMILIES",
    "NEEDS",
    "Context",
    "Encoder",
    "Family",
    "Probe",
    "check_lengths",
    "check_metrics",
    "family_names",
    "metric_columns",
    "register_family",
]
