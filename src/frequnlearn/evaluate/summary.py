"""Aggregates of per-item rows with bootstrap confidence intervals over items.

Every summary is computed from the per-item table. Within a group each item counts once (its rows are
averaged first), and items, not rows, are resampled, since items are the independent units.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from frequnlearn.evaluate.columns import numeric_metrics

# n_nonfinite: items of the group left out because a row of theirs was not finite (NaN logits).
SUMMARY_COLUMNS = ["metric", "n", "mean", "ci_low", "ci_high", "n_nonfinite"]


def bootstrap_ci(values: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of the mean, from `n_boot` resamples drawn at once."""
    if n_boot == 0 or len(values) == 0:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(
    df: pd.DataFrame,
    by: Sequence[str] = ("model", "step", "probe", "group"),
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Mean of each metric per group of `by`, with a bootstrap CI: one row per (group, metric).

    `metrics` defaults to every numeric metric column present; a metric is summarised over the rows
    where it is defined (its family's). Items with a non-finite row (`finite` False) are left out
    of the group and counted in `n_nonfinite`. Each (group, metric) draws from its own generator seeded by
    `seed` and the group's key, so adding a group never changes another's interval.
    """
    by = list(by)
    metrics = [m for m in (metrics or numeric_metrics()) if m in df.columns]
    rows = []
    for key, grp in df.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n_nonfinite = 0
        if "finite" in grp.columns:
            broken = grp.loc[~grp["finite"].astype(bool), "item_id"].unique()
            n_nonfinite = len(broken)
            grp = grp[~grp["item_id"].isin(broken)]
        per_item = grp.groupby("item_id", sort=True)[metrics].mean()
        for metric in metrics:
            values = per_item[metric].dropna().to_numpy(dtype="float64")
            if len(values) == 0:
                continue
            low, high = bootstrap_ci(values, n_boot, ci, _rng(seed, key, metric))
            rows.append(
                {
                    **dict(zip(by, key)),
                    "metric": metric,
                    "n": len(values),
                    "mean": float(values.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n_nonfinite": n_nonfinite,
                }
            )
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


def _rng(seed: int, key: tuple, metric: str) -> np.random.Generator:
    plain = [v.item() if isinstance(v, np.generic) else v for v in key]
    return np.random.default_rng([seed, zlib.crc32(repr((plain, metric)).encode())])
