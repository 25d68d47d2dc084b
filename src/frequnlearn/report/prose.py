"""The words of the report: each finding's `Headline` and sentences, built from the estimands' tables.

Every sentence that states a verdict gives its direction, size in stated units, 95% interval, n
(items per arm, people, seeds, worlds) and the step budget or stopping rule, and uses the verdict
words of `report.headline` with one meaning each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from frequnlearn.report import estimands as E
from frequnlearn.report.headline import DESCRIPTIVE, INCONCLUSIVE, NO_ESTIMATE, OPPOSITE, SUPPORTED, Headline

UNITS = {
    "budget": "difference in net drop, in shares of the step budget (net drop: the share of the compared "
    "steps a target item spent no longer generated, minus the same for control items of its level)",
    "efold": "net drop per e-fold of frequency (shares of the step budget)",
    "ratio": "hazard ratio of losing an item, high vs low (< 1: frequent items are lost later)",
    "share_efold": "change in the share of forgotten items still preferred by likelihood, per e-fold of "
    "parameters",
}


def short_ci(x: float, lo: float, hi: float) -> str:
    """`x [lo, hi]` for tables and figure legends; no interval where too few items were resampled."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if math.isnan(lo) or math.isnan(hi):
        return f"{x:+.3f} [no interval]"
    return f"{x:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def ci_text(x: float, lo: float, hi: float) -> str:
    if math.isnan(x):
        return "no estimate"
    if math.isnan(lo) or math.isnan(hi):
        return f"{x:+.3f} (no interval: too few items or sizes to resample)"
    return f"{x:+.3f} (95% CI {lo:+.3f} to {hi:+.3f})"


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


def budget(unlearn: dict[str, Any], last_steps: Sequence[float] = ()) -> str:
    """The step budget and stopping rule in words, from the recorded `unlearn:` section (a stopping
    rule's fields `stop_forget_level` and `stop_retain_drop` where the config has them)."""
    if not unlearn:
        return "step budget not recorded (no unlearn section in study.json)"
    steps = sorted({int(s) for s in last_steps if s == s})
    ran = (
        f"runs ended at step {steps[0]}"
        if len(steps) == 1
        else f"runs ended at steps {steps[0]}-{steps[-1]}"
        if steps
        else ""
    )
    max_steps = unlearn.get("max_steps")
    cap = f"at most {max_steps} steps" if max_steps else f"{unlearn.get('epochs', '?')} epochs"
    level, drop = unlearn.get("stop_forget_level"), unlearn.get("stop_retain_drop")
    if level is not None or drop is not None:
        parts = []
        if level is not None:
            parts.append(f"the targets' normalised generation accuracy is <= {level}")
        if drop is not None:
            parts.append(
                f"retain accuracy has dropped by more than {drop}"
                + (" (then back to the last evaluated step within it" if unlearn.get("stop_restore") else "")
                + (
                    f"; the first {unlearn['stop_backtrack']} such crossings go on from there at "
                    f"{unlearn.get('stop_backtrack_factor', 0.5):g} times the rate"
                    if unlearn.get("stop_restore") and unlearn.get("stop_backtrack")
                    else ""
                )
                + (")" if unlearn.get("stop_restore") else "")
            )
        s_max = f"{max_steps} steps" if max_steps else f"{unlearn.get('epochs', '?')} epochs"
        named = f"L = {_off(level)}, T = {_off(drop)}, S_max = {s_max}"
        rule = f"stopping rule ({named}): stop when {' or '.join(parts)}, else after {cap}"
    else:
        rule = f"fixed budget of {cap}, no stopping rule"
    return rule + (f" ({ran})" if ran else "")


def _off(x: Any) -> str:
    return "off" if x is None else f"{x:g}"


def _n_text(h: Headline) -> str:
    worlds = f", {h.n_worlds} world{'s' if h.n_worlds != 1 else ''}"
    return (
        f"n = {h.n_items} items in the smallest arm, {h.n_people} people, {h.n_seeds} "
        f"seed{'s' if h.n_seeds != 1 else ''}{worlds}"
    )


def sentence(h: Headline) -> str:
    """The headline as the report's first sentence about its finding."""
    est = "no estimate" if math.isnan(h.estimate) else ci_text(h.estimate, h.lo, h.hi)
    s = (
        f"Finding {h.finding} ({h.claim}): {h.verdict}. Primary endpoint: {h.measured}: {est}; unit: {h.unit}; "
        f"{_n_text(h)}; {h.budget}. {h.meaning}"
    )
    if h.exploratory:
        s += f" {h.exploratory} exploratory comparisons, Holm-adjusted within the finding."
    return s + "".join(f" {n}" for n in h.notes)


def _meaning_1(
    word: str, row: dict[str, Any] | None, high: str, low: str, why: str, grid: bool = False
) -> str:
    """What the verdict means in one sentence; on an exposure grid the estimate is a slope per e-fold
    of frequency, not a difference between the top and bottom levels, and is said so."""
    if row is not None and "why" in row:
        return f"Descriptive only: {row['why']}."
    if word == NO_ESTIMATE:
        return f"No estimate: {why or 'nothing was unlearned in any run, so there is nothing to compare'}."
    if word == DESCRIPTIVE:
        return f"Descriptive only: {why}."
    x = row["estimate"]
    if grid and word in (SUPPORTED, OPPOSITE):
        less = "less" if word == SUPPORTED else "more"
        reading = (
            "frequent facts were harder to unlearn" if word == SUPPORTED else "the opposite of the claim"
        )
        return (
            f"Per e-fold of frequency (from {low} to {high} copies), target items spent {abs(x):.3f} of "
            f"the budget {less} forgotten beyond what their untargeted controls lost: {reading}, and "
            "the interval excludes zero (no difference)."
        )
    if word == SUPPORTED:
        return (
            f"{high} items spent {abs(x):.3f} of the budget less forgotten than {low} items beyond what "
            "their untargeted controls lost: frequent facts were harder to unlearn, and the interval "
            "excludes zero (no difference)."
        )
    if word == OPPOSITE:
        return (
            f"{high} items were forgotten {abs(x):.3f} of the budget more than {low} items beyond their "
            "controls: the opposite of the claim, and the interval excludes zero (no difference)."
        )
    return "The interval (or the seeds' interval) covers no difference: this study cannot tell."


def _why_not(row: dict[str, Any] | None, high: str, low: str, src: pd.Series | None) -> str:
    if row is None:
        return "the primary cell is not in this run (it needs known items with a control arm)"
    if not row["moved"]:
        return "no item changed its generation verdict in any run (nothing moved)"
    if not math.isfinite(row["estimate"]):
        return "the comparison point was not reached"
    if row["n_min"] < E.MIN_ITEMS:
        return f"the smallest arm has {int(row['n_min'])} items, fewer than the {E.MIN_ITEMS} a verdict needs"
    if not row["targeted"] and src is not None:
        lv = [
            lv
            for lv, col in ((high, "net_drop_high"), (low, "net_drop_low"))
            if col in src and not src[col] > 0
        ]
        if lv:
            return (
                f"no targeted forgetting at {', '.join(lv)} (the target arm did not lose more than its "
                "control)"
            )
        return "no targeted forgetting at some level (the target arm did not lose more than its control)"
    return ""


def headline_frequency(
    primary: E.Primary,
    row: dict[str, Any] | None,
    tables: dict[str, pd.DataFrame],
    family: pd.DataFrame,
    high: str,
    low: str,
    budget_text: str,
) -> Headline:
    """Finding 1's headline from its primary row (`estimands.families`)."""
    table = "dose_response" if primary.grid else "frequency_effect"
    src = tables[table].loc[row["row_index"]] if row is not None and "row_index" in row else None
    where = "every size pooled" if primary.size == "all" else f"size {primary.size}"
    measured = (
        f"{'slope of the net drop against log frequency' if primary.grid else f'total frequency effect (net drop of {high} minus net drop of {low})'}"
        f", {primary.probe} probe, known items, {primary.method}, {where}"
    )
    word = row["verdict"] if row is not None else NO_ESTIMATE
    notes = []
    if row is None:
        row, word, src = _descriptive_stand_in(tables.get(table, pd.DataFrame()), primary, high, low)
    elif src is not None and row["moved"]:
        if row["n_seed_units"] >= 2 and math.isfinite(row["seed_lo"]):
            rule = (
                "; a verdict needs it to agree"
                if row["n_seed_units"] >= E.MIN_SEEDS_FOR_SEED_RULE
                else f"; with fewer than {E.MIN_SEEDS_FOR_SEED_RULE} seeds it does not enter the verdict"
            )
            notes.append(
                f"Seed-level interval ({row['n_seed_units']} models): {row['seed_lo']:+.3f} to "
                f"{row['seed_hi']:+.3f}{rule}."
            )
        notes += _mediation_note(tables.get("mediation", pd.DataFrame()), primary)
        notes += _survival_note(
            tables.get("hazard_ratio", pd.DataFrame()), tables.get("items"), primary, high
        )
        if not primary.grid:
            notes += _per_efold_note(tables.get("dose_response", pd.DataFrame()), primary)
        notes += _horizon_note(tables.get("items"))
    repeats = family[(family["finding"] == "1") & (family["role"] == "repeat")] if len(family) else family
    if len(repeats):
        notes.append(_repeat_note(repeats, tables.get("duplicates", pd.DataFrame())))
    return Headline(
        finding="1",
        claim="frequent facts are harder to unlearn",
        verdict=word,
        measured=measured,
        estimate=row["estimate"] if row is not None else math.nan,
        lo=row["lo"] if row is not None else math.nan,
        hi=row["hi"] if row is not None else math.nan,
        unit=UNITS["efold" if primary.grid else "budget"],
        n_items=int(row["n_min"]) if row is not None else 0,
        n_people=int(row["n_people"]) if row is not None else 0,
        n_seeds=int(row["n_seeds"]) if row is not None else 0,
        n_worlds=int(src["n_worlds"]) if src is not None else 1,
        budget=budget_text,
        meaning=_meaning_1(word, row, high, low, _why_not(row, high, low, src), grid=primary.grid),
        exploratory=int(family[(family["finding"] == "1")]["counted"].sum()) if len(family) else 0,
        notes=notes,
    )


def _descriptive_stand_in(df: pd.DataFrame, primary: E.Primary, high: str, low: str):
    """Where the primary cell carries no verdict because the study has no `known` selection with a
    control arm: the same comparison on what it has, labelled descriptive (else no estimate)."""
    if df is None or df.empty:
        return None, NO_ESTIMATE, None
    est = "slope" if primary.grid else "effect"
    cand = df[
        (df["method"] == primary.method)
        & (df["probe"] == primary.probe)
        & (df["size"].astype(str) == primary.size)
    ]
    if "matched" in cand:
        cand = cand[~cand["matched"].astype(bool)]
    if cand.empty:
        return None, NO_ESTIMATE, None
    r = cand.iloc[0]
    why = (f"this study has no `known` selection with a control arm; the {r['selection']} selection"
           f"{'' if bool(r['control']) else ' without a control arm'} gives the number")  # fmt: skip
    n_min = int(r["n_min"]) if "n_min" in r else int(min(r.get("n_high", 0), r.get("n_low", 0)))
    row = {"estimate": float(r[est]), "lo": float(r[f"{est}_lo"]), "hi": float(r[f"{est}_hi"]), "n_min": n_min,
           "n_people": int(r.get("n_people", 0)), "n_seeds": int(r.get("n_seeds", 0)), "moved": bool(r["moved"]),
           "targeted": bool(r["targeted"]), "n_seed_units": int(r.get("seeds", 0)), "why": why}  # fmt: skip
    return row, DESCRIPTIVE, r


def _primary_cell(df: pd.DataFrame, primary: E.Primary) -> pd.DataFrame:
    if df is None or df.empty:
        return pd.DataFrame()
    return df[
        (df["selection"] == "known")
        & (df["method"] == primary.method)
        & (df["probe"] == primary.probe)
        & (df["size"].astype(str) == primary.size)
    ]


def _mediation_note(med: pd.DataFrame, primary: E.Primary) -> list[str]:
    m = _primary_cell(med, primary)
    if m.empty:
        return []
    r = m.iloc[0]
    share = float(r["share_mediated"])  # NaN where the total's interval holds zero (estimands.mediation)
    return [
        f"Through baseline margin (a mediator of frequency; targets' mean margin {r['margin_high']:.2f} nats at "
        f"high vs {r['margin_low']:.2f} at low): total {short_ci(r['total'], r['total_lo'], r['total_hi'])}, direct "
        f"(at equal margin) {short_ci(r['direct'], r['direct_lo'], r['direct_hi'])}, indirect "
        f"{short_ci(r['indirect'], r['indirect_lo'], r['indirect_hi'])}"
        + (f" ({share:.0%} of the total)." if math.isfinite(share) else ".")
    ]


def _survival_note(hr: pd.DataFrame, items: pd.DataFrame | None, primary: E.Primary, high: str) -> list[str]:
    h = _primary_cell(hr, primary)
    if h.empty or not math.isfinite(h.iloc[0]["hr"]):
        return []
    r = h.iloc[0]
    never = ""
    if items is not None and len(items):
        it = items[
            items["known0"].astype(bool)
            & (items["role"] == E.TARGET)
            & (items["level"] == high)
            & (items["method"] == primary.method)
            & (items["probe"] == primary.probe)
            & (items["selection"] == "known")
        ]
        if primary.size != "all":
            it = it[it["size"].astype(str) == primary.size]
        if len(it):
            never = (
                f"; {it['first_lost'].isna().mean():.0%} of {high} targets were never lost within their run"
            )
    return [
        f"Time to first loss: hazard ratio high vs low {short_ci(r['hr'], r['hr_lo'], r['hr_hi'])} "
        f"(Cox, stratified by model, people as clusters; {int(r['events_high'])} and {int(r['events_low'])} "
        f"losses among {int(r['n_high'])} and {int(r['n_low'])} targets{never})."
    ]


def _per_efold_note(dose: pd.DataFrame, primary: E.Primary) -> list[str]:
    d = _primary_cell(dose, primary)
    if d.empty or not bool(d.iloc[0]["per_efold_of_effect"]):
        return []
    r = d.iloc[0]
    return [
        f"Per e-fold of frequency the same effect is {short_ci(r['slope'], r['slope_lo'], r['slope_hi'])} "
        f"({r['exposure_min']:g} to {r['exposure_max']:g}: the effect divided by their log ratio, not a "
        "second result)."
    ]


def _horizon_note(items: pd.DataFrame | None) -> list[str]:
    if items is None or items.empty or "horizon" not in items:
        return []
    cut = items[items["horizon"] < items["last_step"]]
    if cut.empty:
        return []
    return [
        f"Runs of one model ended at different steps; levels are compared up to the step every run "
        f"reached ({int(cut['horizon'].min())}-{int(cut['horizon'].max())})."
    ]


def _repeat_note(repeats: pd.DataFrame, dups: pd.DataFrame) -> str:
    pairs = sorted(
        {(r.method, r.same_as) for r in repeats.itertuples(index=False) if isinstance(r.same_as, str)}
        | {
            (r.probe, r.same_probe_as)
            for r in repeats.itertuples(index=False)
            if isinstance(r.same_probe_as, str)
        }
    )
    parts = []
    for a, b in pairs:
        d = dups[(dups["value"] == a) & (dups["same_as"] == b)] if len(dups) else dups
        stat = (
            f" (per-item drops r = {d['correlation'].min():.2f}, {d['identical'].min():.0%} identical)"
            if len(d)
            else ""
        )
        parts.append(f"{a} repeats {b}{stat}")
    return "; ".join(parts) + ": shown once, not counted again."


def headline_misalignment(
    primary: E.Primary,
    row: dict[str, Any] | None,
    trend: pd.DataFrame,
    family: pd.DataFrame,
    sizes: Sequence[str],
    n_params: int,
    budget_text: str,
    reach: pd.DataFrame,
) -> Headline:
    """Finding 2's headline: the slope of the raw share against log parameters at the declared level of
    forgetting and view."""
    measured = (
        f"slope of P({E.VIEWS[primary.view]} | no longer generated) against log parameters, read at "
        f"forgetting level {primary.forgetting:g} (normalised generation accuracy of the targets), "
        f"frequency levels averaged, {primary.misalignment_probe} probe, known items, {primary.method}, "
        f"{len(sizes)} size{'s' if len(sizes) != 1 else ''}"
    )
    notes = []
    if len(sizes) < 2 or n_params < 2:
        word, meaning = (
            NO_ESTIMATE,
            (
                f"No estimate: a size trend needs >= 2 model sizes with a parameter count, "
                f"this study has {min(len(sizes), n_params)}; configs/scale-30x.yaml (sizes of one family "
                "pretrained to equal knowledge) and configs/pythia.yaml (a real suite) are the studies that test it."
            ),
        )
    elif row is None:
        word, meaning = (
            NO_ESTIMATE,
            (
                f"No estimate: no run reached forgetting level {primary.forgetting:g} on this probe and method."
            ),
        )
    else:
        word = row["verdict"]
        src = trend.loc[row["row_index"]]
        if word == NO_ESTIMATE:
            meaning = "No estimate: " + (
                f"not every level reached forgetting level {primary.forgetting:g} at "
                f"every size ({src['censored']})."
                if src["censored"]
                else "the share is 0/0 somewhere."
            )
        elif word == DESCRIPTIVE:
            meaning = "Descriptive only: " + (
                f"the smallest size-level point has {int(row['n_min'])} forgotten "
                f"items, fewer than {E.MIN_ITEMS}."
                if row["n_min"] < E.MIN_ITEMS
                else "no targeted forgetting at some size and level (controls lost as much as targets)."
            )
        elif word == SUPPORTED:
            meaning = "Misalignment grew with model size; the interval excludes zero (no trend)."
        elif word == OPPOSITE:
            meaning = "Misalignment fell with model size: the opposite of the claim."
        else:
            meaning = "The interval (or the seeds' interval) covers no trend: this study cannot tell."
        if src["points"]:
            notes.append(f"Shares per size: {src['points']}.")
        if row["n_seed_units"] >= 2 and math.isfinite(row["seed_lo"]):
            notes.append(
                f"Seed-level interval ({row['n_seed_units']} seeds): {row['seed_lo']:+.3f} to "
                f"{row['seed_hi']:+.3f}."
            )
    notes += reach_notes(reach, primary, sizes)
    return Headline(
        finding="2",
        claim="misalignment grows with model size",
        verdict=word,
        measured=measured,
        estimate=row["estimate"] if row is not None else math.nan,
        lo=row["lo"] if row is not None else math.nan,
        hi=row["hi"] if row is not None else math.nan,
        unit=UNITS["share_efold"],
        n_items=int(row["n_min"]) if row is not None else 0,
        n_people=int(row["n_people"]) if row is not None else 0,
        n_seeds=int(row["n_seeds"]) if row is not None else 0,
        n_worlds=int(trend.loc[row["row_index"], "n_worlds"]) if row is not None else 1,
        budget=budget_text,
        meaning=meaning,
        exploratory=int(family[(family["finding"] == "2")]["counted"].sum()) if len(family) else 0,
        notes=notes,
    )


def reach_notes(reach: pd.DataFrame, primary: E.Primary, sizes: Sequence[str] = ()) -> list[str]:
    """Per frequency level, one sentence: at each size, whether and at which steps its runs reached the
    level of forgetting the finding is read at; a size where some run never reached it is named as
    censored, with where its runs ended, and has no estimate for that level."""
    if reach is None or reach.empty:
        return []
    r = reach[
        (reach["method"] == primary.method)
        & (reach["probe"] == primary.misalignment_probe)
        & (reach["selection"] == "known")
        & (reach["forgetting"] == primary.forgetting)
    ]
    order = {s: i for i, s in enumerate(sizes)}
    out = []
    for level, part in r.groupby("level", sort=True):
        bits = []
        by_size = sorted(part.groupby("size"), key=lambda kv: (order.get(kv[0], len(order)), str(kv[0])))
        for size, runs in by_size:
            hit = runs[runs["reached"].astype(bool)]
            if len(hit) == len(runs):
                bits.append(f"at {size} reached in {_all_runs(len(runs))} ({_steps(hit['read_step'])})")
            else:
                bits.append(
                    f"at {size} censored: {len(hit)} of {len(runs)} runs reached it "
                    f"({'the others' if len(hit) else 'it' if len(runs) == 1 else 'they'} ended at "
                    f"accuracy {_range(runs.loc[~runs['reached'].astype(bool), 'forgetting_end'], '.2f')} "
                    f"after {int(runs['last_step'].max())} steps), so {level} at {size} has no estimate"
                )
        out.append(
            f"{level}, forgetting level {primary.forgetting:g} ({primary.method}): " + "; ".join(bits) + "."
        )
    return out


def _all_runs(n: int) -> str:
    return "its run" if n == 1 else f"all {n} runs"


def _steps(steps: pd.Series) -> str:
    lo, hi = int(steps.min()), int(steps.max())
    return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"


def _range(values: pd.Series, fmt: str) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def exploratory_sentences(family: pd.DataFrame) -> list[str]:
    """One sentence per finding's family: how many comparisons it made and how they came out after
    Holm, then one sentence per comparison that came out on either side (the rest are in the
    `exploratory` table)."""
    out = []
    if family.empty:
        return out
    for finding, fam in family.groupby("finding", sort=True):
        counted = fam[fam["counted"]]
        words = counted["verdict"].value_counts()
        tally = ", ".join(f"{int(words[w])} {w}" for w in (SUPPORTED, OPPOSITE, INCONCLUSIVE) if w in words)
        untested = fam[(fam["role"] == "not tested")]
        s = (
            f"Finding {finding}, exploratory: {len(counted)} comparisons, Holm-adjusted within the finding"
            f"{': ' + tally if tally else ''}"
        )
        if len(untested):
            w2 = untested["verdict"].value_counts()
            s += "; not tested: " + ", ".join(
                f"{int(w2[w])} {w}" for w in (DESCRIPTIVE, NO_ESTIMATE) if w in w2
            )
        repeats = int((fam["role"] == "repeat").sum())
        if repeats:
            s += f"; {repeats} repeat{'s' if repeats != 1 else ''} of another result, not counted"
        out.append(s + ".")
        for r in counted[counted["verdict"].isin([SUPPORTED, OPPOSITE])].itertuples(index=False):
            where = f"{r.size}, " if r.size != "all" else ""
            out.append(
                f"Finding {finding} (exploratory), {r.comparison}, {where}{r.method}, {r.probe} probe: "
                f"{short_ci(r.estimate, r.lo, r.hi)}, Holm p = {r.p_holm:.3g}, n = {int(r.n_min)} in the "
                f"smallest arm: {r.verdict}."
            )
    return out


def verdict_table(
    effect: pd.DataFrame,
    mediation: pd.DataFrame,
    matched: pd.DataFrame,
    mis: pd.DataFrame,
    probe: str = "question",
) -> pd.DataFrame:
    """One row per size and method (known selection, `probe`): the numbers behind the verdicts."""
    if effect.empty:
        return pd.DataFrame()
    e = effect[
        (effect["selection"] == "known") & (effect["probe"] == probe) & ~effect["matched"].astype(bool)
    ]

    def pick(df: pd.DataFrame, r) -> pd.DataFrame:
        if df is None or df.empty:
            return pd.DataFrame()
        return df[
            (df["size"].astype(str) == str(r.size))
            & (df["method"] == r.method)
            & (df["selection"] == "known")
            & (df["probe"] == probe)
        ]

    rows = []
    for r in e.itertuples(index=False):
        m, md = pick(matched, r), pick(mediation, r)
        mm = pick(mis, r)
        if len(mm):
            mm = mm[(mm["level"] == "both") & (mm["view"] == "rank1") & (mm["forgetting"] == 0.5)]
        rows.append(
            {
                "size": r.size,
                "method": r.method,
                "role": getattr(r, "role", ""),
                "n (high+low)": f"{r.n_high}+{r.n_low}",
                "seeds": r.seeds,
                "net drop high": f"{r.net_drop_high:.3f}",
                "net drop low": f"{r.net_drop_low:.3f}",
                "effect [95% CI]": short_ci(r.effect, r.effect_lo, r.effect_hi),
                "Finding 1": r.verdict,
                "direct [95% CI]": short_ci(
                    md["direct"].iloc[0], md["direct_lo"].iloc[0], md["direct_hi"].iloc[0]
                )
                if len(md)
                else "",
                "matched [95% CI]": short_ci(
                    m["effect"].iloc[0], m["effect_lo"].iloc[0], m["effect_hi"].iloc[0]
                )
                if len(m)
                else "",
                "misaligned share, rank 1, at 0.5 [95% CI]": short_ci(
                    mm["share"].iloc[0], mm["share_lo"].iloc[0], mm["share_hi"].iloc[0]
                )
                if len(mm)
                else "",
            }
        )
    return pd.DataFrame(rows)
