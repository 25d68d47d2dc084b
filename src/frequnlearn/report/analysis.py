"""From per-item records to the study's numbers: curves, per-run summaries, headline comparisons.

Everything here is a pure function of DataFrames, so every number in the report can be recomputed
from the per-item scores the study wrote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

RUN_COLUMNS = ["run_id", "model", "size", "seed", "method", "level", "selection"]
# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (normal beyond).
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval across seeds (NaN bounds with a single value)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, math.nan, math.nan)
    t = _T95[len(x) - 2] if len(x) - 1 <= len(_T95) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (mean, mean - half, mean + half)


def bootstrap_mean(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap interval over items (NaNs dropped)."""
    from frequnlearn.evaluate.summary import bootstrap_ci

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    lo, hi = bootstrap_ci(x, n_boot, 0.95, np.random.default_rng(seed))
    return (float(x.mean()), lo, hi)


def normalised_auc(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a curve over the step budget, divided by the budget: the curve's mean level."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(s)
    s, v = s[order], v[order]
    if len(s) == 0:
        return math.nan
    if len(s) == 1 or s[-1] == s[0]:
        return float(v.mean())
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(s)) / (s[-1] - s[0]))


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """First evaluated step at which the curve is at or below `threshold` (NaN if never)."""
    for step, value in sorted(zip(steps, values)):
        if value <= threshold:
            return float(step)
    return math.nan


def curves(v: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per run, role, probe and step from per-item verdicts."""
    v = v.assign(
        misaligned=(v["prob_known"] & ~v["gen_known"]).astype(float),
        reverse=(~v["prob_known"] & v["gen_known"]).astype(float),
    )
    keys = RUN_COLUMNS + ["role", "probe", "step"]
    out = (
        v.groupby(keys, dropna=False)
        .agg(
            acc_gen=("gen_known", "mean"),
            acc_prob=("prob_known", "mean"),
            misaligned=("misaligned", "mean"),
            reverse=("reverse", "mean"),
            n=("item_id", "nunique"),
        )
        .reset_index()
    )
    return out.sort_values(keys).reset_index(drop=True)


def run_summaries(c: pd.DataFrame, forget_threshold: float, retain_tolerance: float) -> pd.DataFrame:
    """One row per (run, probe): how fast and how far the forget set fell, and what it cost."""
    rows = []
    for keys, fc, rc in _iter_runs(c):
        steps = fc["step"].to_numpy()
        acc = fc["acc_gen"].to_numpy()
        row = dict(zip(RUN_COLUMNS + ["probe"], keys))
        row.update(
            n_items=int(fc["n"].max()),
            forget_start=float(acc[0]),
            forget_end=float(acc[-1]),
            forget_auc=normalised_auc(steps, acc),
            forget_prob_auc=normalised_auc(steps, fc["acc_prob"].to_numpy()),
            steps_to_threshold=steps_to_threshold(steps, acc, forget_threshold),
            max_step=float(steps.max()),
            misaligned_peak=float(fc["misaligned"].max()),
            misaligned_peak_step=float(fc.loc[fc["misaligned"].idxmax(), "step"]),
            misaligned_mean=float(fc["misaligned"].mean()),
        )
        if rc is not None and len(rc):
            r_steps, r_acc = rc["step"].to_numpy(), rc["acc_gen"].to_numpy()
            row.update(retain_start=float(r_acc[0]), retain_end=float(r_acc[-1]))
            ok = r_acc >= r_acc[0] - retain_tolerance
            # Forget accuracy at the last step where retain accuracy was still within tolerance.
            last_ok = r_steps[ok].max() if ok.any() else r_steps[0]
            row["forget_at_matched_retain"] = float(np.interp(last_ok, steps, acc))
            row["matched_retain_step"] = float(last_ok)
        rows.append(row)
    return pd.DataFrame(rows)


def _iter_runs(c: pd.DataFrame):
    for keys, fc in c[c["role"] == "forget"].groupby(RUN_COLUMNS + ["probe"], dropna=False):
        fc = fc.sort_values("step")
        run_id = keys[0]
        # Retain damage is read on the trained (question) probe whatever probe the forget row uses.
        rc = c[(c["run_id"] == run_id) & (c["role"] == "retain") & (c["probe"] == "question")]
        yield keys, fc, rc.sort_values("step") if len(rc) else None


def item_aucs(v: pd.DataFrame) -> pd.DataFrame:
    """Per forget item: normalised AUC of its generation verdict over the run's steps."""
    f = v[v["role"] == "forget"].sort_values("step")
    rows = []
    for keys, g in f.groupby(RUN_COLUMNS + ["probe", "item_id"], dropna=False):
        rows.append(
            (
                *keys,
                normalised_auc(g["step"], g["gen_known"].astype(float)),
                normalised_auc(g["step"], g["prob_known"].astype(float)),
            )
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["probe", "item_id", "auc_gen", "auc_prob"])


def headline(
    summaries: pd.DataFrame, aucs: pd.DataFrame, levels: Sequence[str], n_boot: int = 1000
) -> pd.DataFrame:
    """Per (size, method, selection, probe, level): forget AUC with CIs over items and over seeds,
    steps to threshold, misalignment peak, forget at matched retain."""
    rows = []
    keys = ["size", "method", "selection", "probe"]
    for cell, s in summaries.groupby(keys, dropna=False):
        for level in levels:
            sl = s[s["level"] == level]
            if sl.empty:
                continue
            a = aucs[(aucs[keys].apply(tuple, axis=1) == cell) & (aucs["level"] == level)]
            auc_items = bootstrap_mean(a["auc_gen"].to_numpy(), n_boot=n_boot)
            auc_seeds = t_interval(sl["forget_auc"].tolist())
            row = dict(zip(keys, cell))
            row.update(
                level=level,
                seeds=int(sl["seed"].nunique()),
                n_items=int(sl["n_items"].sum()),
                forget_start=float(sl["forget_start"].mean()),
                forget_auc=auc_items[0],
                forget_auc_lo=auc_items[1],
                forget_auc_hi=auc_items[2],
                forget_auc_seed_lo=auc_seeds[1],
                forget_auc_seed_hi=auc_seeds[2],
                steps_to_threshold=float(sl["steps_to_threshold"].fillna(sl["max_step"] * 2).mean())
                if sl["steps_to_threshold"].notna().any()
                else math.nan,
                reached_threshold=float(sl["steps_to_threshold"].notna().mean()),
                forget_end=float(sl["forget_end"].mean()),
                misaligned_peak=float(sl["misaligned_peak"].mean()),
                retain_start=float(sl["retain_start"].mean()) if "retain_start" in sl else math.nan,
                retain_end=float(sl["retain_end"].mean()) if "retain_end" in sl else math.nan,
                forget_at_matched_retain=float(sl["forget_at_matched_retain"].mean())
                if "forget_at_matched_retain" in sl
                else math.nan,
            )
            rows.append(row)
    return pd.DataFrame(rows)


def frequency_effect(head: pd.DataFrame, high: str, low: str) -> pd.DataFrame:
    """Per cell: forget AUC of the high level minus the low level (positive = frequent is harder)."""
    keys = ["size", "method", "selection", "probe"]
    rows = []
    for cell, h in head.groupby(keys, dropna=False):
        hi = h[h["level"] == high]
        lo = h[h["level"] == low]
        if hi.empty or lo.empty:
            continue
        hi, lo = hi.iloc[0], lo.iloc[0]
        rows.append(
            {
                **dict(zip(keys, cell)),
                "auc_high": hi["forget_auc"],
                "auc_low": lo["forget_auc"],
                "auc_diff": hi["forget_auc"] - lo["forget_auc"],
                "ci_disjoint": bool(hi["forget_auc_lo"] > lo["forget_auc_hi"]),
                "steps_high": hi["steps_to_threshold"],
                "steps_low": lo["steps_to_threshold"],
                "matched_high": hi["forget_at_matched_retain"],
                "matched_low": lo["forget_at_matched_retain"],
            }
        )
    return pd.DataFrame(rows)


def seed_differences(summaries: pd.DataFrame, high: str, low: str) -> pd.DataFrame:
    """AUC(high) - AUC(low) per seed and cell, with a t-interval across seeds."""
    keys = ["size", "method", "selection", "probe"]
    rows = []
    for cell, s in summaries.groupby(keys, dropna=False):
        diffs = []
        for _, g in s.groupby("seed"):
            hi = g.loc[g["level"] == high, "forget_auc"]
            lo = g.loc[g["level"] == low, "forget_auc"]
            if len(hi) and len(lo):
                diffs.append(float(hi.iloc[0] - lo.iloc[0]))
        mean, lo_ci, hi_ci = t_interval(diffs)
        rows.append(
            {
                **dict(zip(keys, cell)),
                "seeds": len(diffs),
                "diff_mean": mean,
                "diff_lo": lo_ci,
                "diff_hi": hi_ci,
                "positive_seeds": sum(d > 0 for d in diffs),
            }
        )
    return pd.DataFrame(rows)


def misalignment_by_size(v: pd.DataFrame) -> pd.DataFrame:
    """Share of forget items 'not generated but still preferred by likelihood', peak over steps,
    per model size, level and probe (mean over seeds and methods)."""
    c = curves(v)
    f = c[c["role"] == "forget"]
    peaks = f.groupby(RUN_COLUMNS + ["probe"], dropna=False)["misaligned"].max().reset_index()
    out = (
        peaks.groupby(["size", "level", "probe"], dropna=False)["misaligned"]
        .agg(["mean", "count"])
        .reset_index()
    )
    return out.rename(columns={"mean": "misaligned_peak", "count": "runs"})


def describe_findings(
    effect: pd.DataFrame, seeds: pd.DataFrame, mis: pd.DataFrame, sizes: Sequence[str], high: str, low: str
) -> list[str]:
    """Plain sentences written from the numbers (no claim without the number behind it)."""
    out = []
    main = effect[effect["probe"] == "question"] if (effect["probe"] == "question").any() else effect
    if main.empty:
        return ["No comparison could be made: a level had no unlearning run."]
    n_pos = int((main["auc_diff"] > 0).sum())
    n_sig = int(((main["auc_diff"] > 0) & main["ci_disjoint"]).sum())
    mean_diff = float(main["auc_diff"].mean())
    verdict = (
        "holds"
        if n_pos == len(main) and mean_diff > 0
        else ("partly holds" if n_pos > len(main) / 2 else "does not hold")
    )
    out.append(
        f"Finding 1 (frequency) {verdict} in this run: on the trained questions, {high} kept more of the "
        f"forgotten attribute than {low} over the unlearning budget in {n_pos} of {len(main)} "
        f"(model size, method, selection) cells (forget-accuracy AUC difference {mean_diff:+.3f} on average; "
        f"item-level 95% intervals disjoint in {n_sig})."
    )
    sd = seeds[(seeds["probe"] == "question") & (seeds["seeds"] >= 2)]
    if len(sd):
        pos = int((sd["diff_lo"] > 0).sum())
        out.append(
            f"Across seeds, the AUC difference's 95% interval lies above zero in {pos} of {len(sd)} cells."
        )
    for probe in ("paraphrase", "bio"):
        sub = effect[effect["probe"] == probe]
        if len(sub):
            out.append(
                f"On the {probe} probe the difference is {float(sub['auc_diff'].mean()):+.3f} on average "
                f"({int((sub['auc_diff'] > 0).sum())} of {len(sub)} cells positive)."
            )
    m = mis[mis["probe"] == "question"] if (mis["probe"] == "question").any() else mis
    by_size = m.groupby("size")["misaligned_peak"].mean()
    ordered = [s for s in sizes if s in by_size.index]
    if len(ordered) >= 2:
        vals = [float(by_size[s]) for s in ordered]
        grows = all(b >= a for a, b in zip(vals, vals[1:])) and vals[-1] > vals[0]
        # A rise smaller than a couple of items' worth is not read as support.
        verdict = (
            ("holds" if vals[-1] - vals[0] >= 0.05 else "is only marginal") if grows else "does not hold"
        )
        desc = ", ".join(f"{s} {v:.2f}" for s, v in zip(ordered, vals))
        out.append(
            f"Finding 2 (misalignment grows with size) {verdict} in this run: "
            f"peak share of forget items no longer generated but still ranked first by likelihood, by size "
            f"(smallest first): {desc}."
        )
    elif len(ordered) == 1:
        out.append(
            f"Finding 2 needs two model sizes; the one size here peaked at {float(by_size.iloc[0]):.2f}."
        )
    return out


def as_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A small dependency-free markdown table."""
    if df.empty:
        return "_(no rows)_"
    cols = list(df.columns)

    def cell(x: Any) -> str:
        if isinstance(x, float):
            return "" if math.isnan(x) else format(x, floatfmt)
        return str(x)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
