"""The two headlines read off the analysis's tables, for an analysis that returns tables only.

Finding 1: the first row of `frequency_effect` in reading order on the trained question probe, known
selection, all known items (not margin-matched). Finding 2: the rank-1 row of `size_trend` on the same
probe and selection, levels pooled where both reached the matched forgetting level. The tables' verdict
words are mapped onto `headline.VERDICTS` ('not supported' is 'opposite' when the interval lies on the
other side, 'no estimate' when nothing moved); the numbers are the tables' own.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from frequnlearn.report.context import Layout
from frequnlearn.report.headline import (
    DESCRIPTIVE,
    INCONCLUSIVE,
    NO_ESTIMATE,
    OPPOSITE,
    SUPPORTED,
    VERDICTS,
    Headline,
)

CLAIMS = {
    "1": "frequent facts are harder to unlearn",
    "2": "misalignment grows with model size",
}


def _word(verdict: str, estimate: float, lo: float, hi: float) -> str:
    if verdict in VERDICTS:
        return verdict
    if verdict == "not supported":  # the analysis's word for both "nothing moved" and "the other side"
        nothing = all(abs(x) < 1e-12 for x in (estimate, lo, hi) if not math.isnan(x))
        return NO_ESTIMATE if nothing or math.isnan(estimate) else OPPOSITE
    return NO_ESTIMATE


def _budget(study: dict[str, Any]) -> str:
    unlearn = study.get("config", {}).get("unlearn", {})
    steps, evals = unlearn.get("max_steps"), unlearn.get("eval_steps")
    if not steps:
        return "the unlearning runs' configured epochs"
    return f"{steps} unlearning steps" + (
        f", evaluated at steps {', '.join(map(str, evals))}" if evals else ""
    )


def _first(df: pd.DataFrame, lay: Layout, **match: Any) -> pd.Series | None:
    if df is None or df.empty:
        return None
    rows = df
    for col, value in match.items():
        if col not in rows.columns:
            return None
        rows = rows[rows[col] == value]
    rows = lay.sorted(rows)
    return rows.iloc[0] if len(rows) else None


def _people(traj: pd.DataFrame, items: pd.DataFrame) -> int:
    """Distinct people among `items` (item ids), as the trajectories name them."""
    if items.empty or "person_id" not in traj.columns:
        return 0
    ids = set(items["item_id"])
    return int(traj.loc[traj["item_id"].isin(ids), "person_id"].nunique())


MEANING = {
    ("1", SUPPORTED): "Facts seen more often in pre-training lost less of their generation under the same "
    "unlearning, beyond what the untargeted control items lost.",
    ("1", OPPOSITE): "Here the frequent facts were easier to unlearn: the interval lies on the other side "
    "of the paper's claim.",
    ("1", INCONCLUSIVE): "The interval covers zero: this run cannot tell whether frequency changes how much "
    "is unlearned.",
    ("1", NO_ESTIMATE): "No estimate: nothing moved, or too few items to resample an interval.",
    ("1", DESCRIPTIVE): "No verdict: the comparison has no control arm or too few items; the number is "
    "descriptive only.",
    ("2", SUPPORTED): "Larger models kept preferring more of the answers they no longer generate: "
    "misalignment grows with size.",
    ("2", OPPOSITE): "Misalignment shrank with size here, the opposite of the paper's claim.",
    ("2", INCONCLUSIVE): "The interval covers zero: this run cannot tell whether misalignment changes with "
    "size.",
    ("2", NO_ESTIMATE): "No estimate: the matched forgetting level was not reached at two or more sizes, or "
    "too few items to resample an interval.",
    ("2", DESCRIPTIVE): "No verdict: the comparison has no control arm; the number is descriptive only.",
}


def headlines(
    tables: dict[str, pd.DataFrame], lay: Layout, study: dict[str, Any], traj: pd.DataFrame
) -> list[Headline]:
    """One `Headline` per finding from `frequency_effect` and `size_trend`."""
    probe = "question" if "question" in lay.probes else (lay.probes[0] if lay.probes else "question")
    budget = _budget(study)
    out = []
    e = _first(tables.get("frequency_effect"), lay, probe=probe, selection="known", matched=False)
    if e is not None:
        word = _word(str(e["verdict"]), float(e["effect"]), float(e["effect_lo"]), float(e["effect_hi"]))
        arms = [int(e["n_high"]), int(e["n_low"])]
        if bool(e.get("control", False)):
            arms += [int(e["n_control_high"]), int(e["n_control_low"])]
        items = tables.get("items", pd.DataFrame())
        cell = (
            items[
                (items["size"] == e["size"])
                & (items["method"] == e["method"])
                & (items["selection"] == "known")
                & (items["probe"] == probe)
                & items["known0"].astype(bool)
                & items["level"].isin([lay.high, lay.low])
            ]
            if len(items)
            else items
        )
        out.append(
            Headline(
                finding="1",
                claim=CLAIMS["1"],
                verdict=word,
                measured=f"net drop of {lay.high} minus net drop of {lay.low}: {probe} probe, known items, "
                f"{e['method']}, {e['size']}",
                estimate=float(e["effect"]),
                lo=float(e["effect_lo"]),
                hi=float(e["effect_hi"]),
                unit="net drop, high minus low; negative: frequent facts are harder to unlearn",
                n_items=min(arms),
                n_people=_people(traj, cell),
                n_seeds=int(e["seeds"]),
                budget=budget,
                meaning=MEANING[("1", word)],
            )
        )
    else:
        out.append(
            _missing(
                "1",
                f"net drop of {lay.high} minus net drop of {lay.low}: {probe} probe, known items",
                f"no known cell has both levels on the {probe} probe",
                budget,
            )
        )
    trend = tables.get("size_trend", pd.DataFrame())
    pooled = "both" if len(trend) and "level" in trend and (trend["level"] == "both").any() else None
    level = {"level": pooled} if pooled else {}
    t = _first(trend, lay, probe=probe, selection="known", view="rank1", **level)
    if t is not None:
        word = _word(str(t["verdict"]), float(t["slope"]), float(t["slope_lo"]), float(t["slope_hi"]))
        where = "levels pooled" if t["level"] == "both" else f"level {t['level']}"
        out.append(
            Headline(
                finding="2",
                claim=CLAIMS["2"],
                verdict=word,
                measured=f"slope of misalignment (still ranked first, target minus control) against log "
                f"parameters at the matched forgetting level: {probe} probe, known items, {t['method']}, "
                f"{where}, {int(t['sizes'])} sizes",
                estimate=float(t["slope"]),
                lo=float(t["slope_lo"]),
                hi=float(t["slope_hi"]),
                unit="change in misaligned share per e-fold of parameters",
                n_items=int(t["n_forgotten"]),
                n_people=0,
                n_seeds=int(traj["seed"].nunique()) if "seed" in traj else 0,
                budget=budget,
                meaning=MEANING[("2", word)],
            )
        )
    else:
        why = (
            f"it needs two or more model sizes, this run has {len(lay.sizes)}"
            if len(lay.sizes) < 2
            else "no known target items reached the matched forgetting level at two or more sizes"
        )
        what = (
            "slope of misalignment (still ranked first, target minus control) against log parameters at "
            f"the matched forgetting level: {probe} probe, known items"
        )
        out.append(_missing("2", what, why, budget))
    return out


def _missing(finding: str, measured: str, why: str, budget: str) -> Headline:
    return Headline(
        finding=finding,
        claim=CLAIMS[finding],
        verdict=NO_ESTIMATE,
        measured=measured,
        estimate=math.nan,
        lo=math.nan,
        hi=math.nan,
        unit="",
        n_items=0,
        n_people=0,
        n_seeds=0,
        budget=budget,
        meaning=f"No estimate: {why}.",
    )
