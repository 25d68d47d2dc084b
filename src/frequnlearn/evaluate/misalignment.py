"""Where probability- and generation-based evaluation disagree about the same item.

Each family gives a per-item verdict (is the answer still known?); the dangerous disagreement is
`prob_only`: the model no longer generates the answer but still prefers it by likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from frequnlearn.evaluate.columns import row_columns

KEYS = ["model", "run_id", "step", "item_id", "probe"]
ITEM_COLUMNS = ["person_id", "group", "attribute", "frequency", "bucket"]
VERDICTS = ["prob_known", "gen_known", "disagree", "prob_only", "gen_only"]


def verdicts(df: pd.DataFrame, gen_threshold: float = 0.5, prob_rank: int = 1) -> pd.DataFrame:
    """One row per (model, run_id, step, item_id, probe) that has both a prob and a gen row.

    prob_known: the true answer ranks within the first `prob_rank` of its candidates;
    gen_known: the gen row's `known`, the one verdict of `evaluate.known` (tables written before
    that column existed fall back to ROUGE-L recall >= `gen_threshold`). `truth_ratio`,
    `logprob_per_token`, `margin` and `finite` come along. Items without candidates have no
    probability verdict and are left out; items whose prob or gen row is not finite (NaN logits) get
    no verdict at all: they are dropped and counted in `attrs["n_nonfinite"]`.
    """
    # Columns a caller added to the rows (e.g. an unlearning run's `role`) come along from the prob rows.
    known = set(row_columns())
    extra = [c for c in df.columns if c not in known]
    prob_cols = ["rank", "logprob", "logprob_per_token", "p_norm", "truth_ratio", "margin"]
    prob_cols = [c for c in prob_cols if c in df.columns]
    prob = df.loc[df["family"] == "prob", KEYS + ITEM_COLUMNS + extra + prob_cols + _finite(df)]
    gen_cols = [c for c in ("known", "rougeL_recall", "exact", "contains") if c in df.columns]
    gen = df.loc[df["family"] == "gen", KEYS + gen_cols + _finite(df)]
    out = prob.merge(gen, on=KEYS, how="inner", suffixes=("", "_gen"))
    if "finite" in out.columns:
        out["finite"] = out["finite"].astype(bool) & out.pop("finite_gen").astype(bool)
    else:
        out["finite"] = out["rank"].notna() | out["rougeL_recall"].notna()
    # Only items with candidates can have a probability verdict.
    has_candidates = ~out["finite"] | out["rank"].notna()
    out = out[has_candidates]
    n_broken = int((~out["finite"]).sum())
    out = out[out["finite"]].reset_index(drop=True)
    out["prob_known"] = out["rank"] <= prob_rank
    if "known" in out.columns:
        out["gen_known"] = out["known"] == 1.0
    else:
        out["gen_known"] = out["rougeL_recall"] >= gen_threshold
    out["disagree"] = out["prob_known"] != out["gen_known"]
    out["prob_only"] = out["prob_known"] & ~out["gen_known"]
    out["gen_only"] = out["gen_known"] & ~out["prob_known"]
    out.attrs["n_nonfinite"] = n_broken
    return out


def _finite(df: pd.DataFrame) -> list[str]:
    return ["finite"] if "finite" in df.columns else []


def rates(v: pd.DataFrame, by: Sequence[str] = ("model", "run_id", "step", "probe")) -> pd.DataFrame:
    """Share of items known by each family and disagreeing in each direction, per group of `by`.

    Group by "frequency" or "bucket" for frequency levels and by "model" for model size.
    """
    by = list(by)
    grouped = v.groupby(by, dropna=False, sort=True)
    out = grouped[VERDICTS].mean().astype("float64")
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    if len(x) < 2:
        return float("nan")
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def change_correlation(
    df: pd.DataFrame,
    baseline_step: int = 0,
    prob_metric: str = "logprob_per_token",
    gen_metric: str = "rougeL_recall",
    by: Sequence[str] = ("model", "run_id", "probe"),
) -> pd.DataFrame:
    """Spearman correlation over items between each family's change from `baseline_step`, per later step.

    High correlation: the two families move together; low: they tell different stories about which
    items were unlearned.
    """
    by = list(by)
    keys = ["model", "run_id", "item_id", "probe"]
    prob = df.loc[df["family"] == "prob", [*dict.fromkeys(keys + by), "step", prob_metric]]
    gen = df.loc[df["family"] == "gen", [*keys, "step", gen_metric]]
    both = prob.merge(gen, on=[*keys, "step"], how="inner")
    base = both[both["step"] == baseline_step].drop(columns="step")
    later = both[both["step"] != baseline_step]
    merged = later.merge(base[[*keys, prob_metric, gen_metric]], on=keys, suffixes=("", "_base"))
    merged["d_prob"] = merged[prob_metric] - merged[f"{prob_metric}_base"]
    merged["d_gen"] = merged[gen_metric] - merged[f"{gen_metric}_base"]
    merged = merged.dropna(subset=["d_prob", "d_gen"])
    rows = []
    for key, grp in merged.groupby([*by, "step"], dropna=False, sort=True):
        rows.append(
            {
                **dict(zip([*by, "step"], key)),
                "n": len(grp),
                "spearman": spearman(grp["d_prob"].to_numpy(), grp["d_gen"].to_numpy()),
            }
        )
    return pd.DataFrame(rows, columns=[*by, "step", "n", "spearman"])
