"""Frequency buckets: counts split at quantiles (the paper's tertiles) or at explicit thresholds.

Every bucket but the last has an inclusive upper edge; a count goes to the first bucket whose edge it
does not exceed. Consequences, on purpose:
- ties: equal counts always share a bucket, so with many ties a bucket can be small or empty
  (an empty bucket is reported in `sizes`, never filled by splitting a tie);
- all counts equal (e.g. all zero): every edge equals that count, so every item is in the lowest bucket;
- quantile buckets need at least as many items as buckets: with fewer, the edges would be
  interpolations between one or two counts and the buckets meaningless, so it is an error
  (explicit thresholds work for any number of items).
Quantile edges are numpy's linear-interpolation quantiles at 1/k, ..., (k-1)/k of the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frequnlearn.errors import DataError


@dataclass
class Buckets:
    labels: list[str]
    edges: list[float]
    sizes: dict[str, int]


def quantile_edges(values: Sequence[float], n_buckets: int) -> list[float]:
    if len(values) < n_buckets:
        raise DataError(
            f"count.buckets: {n_buckets} quantile buckets need at least {n_buckets} counted items, "
            f"got {len(values)}; use fewer buckets or bucket_method: thresholds"
        )
    qs = [i / n_buckets for i in range(1, n_buckets)]
    return [float(e) for e in np.quantile(np.asarray(values, dtype=float), qs)]


def assign_buckets(
    values: Sequence[float],
    names: Sequence[str] = ("low", "medium", "high"),
    method: str = "quantile",
    thresholds: Sequence[float] = (),
) -> Buckets:
    """Label each count with a bucket name; `thresholds` are the edges when `method` is thresholds."""
    if method == "quantile":
        edges = quantile_edges(values, len(names))
    elif method == "thresholds":
        edges = [float(t) for t in thresholds]
        if len(edges) != len(names) - 1:
            raise DataError(f"count.thresholds: {len(names)} buckets need {len(names) - 1} thresholds")
    else:
        raise DataError(f"count.bucket_method: unknown method {method!r}; use quantile or thresholds")
    if any(not np.isfinite(v) for v in values):
        raise DataError("count: a count is missing or not finite; every item needs a count to be bucketed")
    idx = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="left")
    labels = [names[i] for i in idx.tolist()]
    sizes = {name: labels.count(name) for name in names}
    return Buckets(labels=labels, edges=edges, sizes=sizes)
