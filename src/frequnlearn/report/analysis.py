"""From per-item verdicts to the study's numbers and its verdicts.

Everything here is a pure function of DataFrames, so every number in the report can be recomputed
from the per-item scores the study wrote. The input is one row per (run, step, item, probe) with the
run's identity (`RUN_COLUMNS`), the item's `role` in the run (`forget`: the target half that is
unlearned, `control`: the other half of the same level, never unlearned, `retain`, `utility`) and the
verdicts of `frequnlearn.evaluate.misalignment.verdicts` (`gen_known`, `prob_known`, `truth_ratio`,
`logprob_per_token`, `margin`).

Three choices keep the verdicts from flattering themselves:
- curves are normalised to their start: accuracy over the items generated at the first evaluated
  step, so a level that starts lower does not look "forgotten sooner";
- the frequency effect subtracts, per level, the drop of control items that were never unlearned;
- only `known` selections with a control arm carry verdicts; `all` cells are descriptive.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

RUN_COLUMNS = ["run_id", "model", "size", "seed", "method", "level", "selection"]
CELL = ["size", "method", "selection", "probe"]
TARGET, CONTROL = "forget", "control"
# Misalignment's third view: the true answer's log-prob per token is still within this many nats of
# its value before unlearning.
LOGPROB_MARGIN = 0.5
# Margin matching pairs items whose baseline margins differ by at most this many pooled SDs (the usual
# caliper of nearest-neighbour matching).
CALIPER_SD = 0.2
# The matched forgetting level of the misalignment measure: normalised generation accuracy <= this.
MATCHED_LEVEL = 0.5
VIEWS = {
    "rank1": "still ranked first",
    "truth_ratio": "truth ratio < 1",
    "logprob": f"log-prob within {LOGPROB_MARGIN} of baseline",
}
# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (normal beyond).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]  # fmt: skip


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval across seeds (NaN bounds with a single value)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, math.nan, math.nan)
    half = t95(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
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


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile (normal beyond 30 degrees of freedom)."""
    return _T95[df - 1] if df <= len(_T95) else 1.96


def expanded_interval(boot: np.ndarray, n: int) -> tuple[float, float]:
    """95% expanded percentile interval (Hesterberg 2015) of bootstrap replicates from `n` items.

    The plain percentile interval is too narrow for the small samples of a CPU study (a null study
    was called supported about 5% of the time instead of 2.5%); widening the tail probability to
    Phi(-sqrt(n/(n-1)) t_{n-1}) gives the t-interval's width in the normal case. `n` is the smallest
    stratum resampled."""
    if n < 2 or len(boot) == 0:
        return (math.nan, math.nan)
    tail = 0.5 * math.erfc(math.sqrt(n / (n - 1)) * t95(n - 1) / math.sqrt(2))
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    return (float(lo), float(hi))


def wilson(k: float, n: float) -> tuple[float, float]:
    """95% Wilson interval of a proportion k/n (NaN for n = 0): the band of an accuracy curve."""
    if n <= 0:
        return (math.nan, math.nan)
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _trapz_weights(steps: Sequence[float]) -> np.ndarray:
    """Weights w such that values @ w is the trapezoid area over sorted `steps` divided by the budget."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 1 or s[-1] == s[0]:
        return np.full(len(s), 1.0 / len(s))
    d = np.diff(s)
    w = np.zeros(len(s))
    w[:-1] += d / 2
    w[1:] += d / 2
    return w / (s[-1] - s[0])


def normalised_auc(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a curve over the step budget, divided by the budget: the curve's mean level."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 0:
        return math.nan
    order = np.argsort(s)
    return float(np.asarray(values, dtype=float)[order] @ _trapz_weights(s[order]))


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """First evaluated step at which the curve is at or below `threshold` (NaN if never: censored)."""
    for step, value in sorted(zip(steps, values)):
        if value <= threshold:
            return float(step)
    return math.nan


def kaplan_meier(times: Sequence[float], observed: Sequence[bool]) -> list[tuple[float, float]]:
    """Kaplan-Meier survival estimate: (time, S(time)) at each time an event was observed.

    Censored runs (threshold never reached within the budget) count as at risk up to their last step
    and are never given an invented time. (scipy.stats.ecdf does the same but is no dependency here.)
    """
    t = np.asarray(times, dtype=float)
    e = np.asarray(observed, dtype=bool)
    out, surv = [], 1.0
    for time in np.unique(t[e]):
        at_risk = int(np.sum(t >= time))
        events = int(np.sum((t == time) & e))
        surv *= 1.0 - events / at_risk
        out.append((float(time), surv))
    return out


def km_median(times: Sequence[float], observed: Sequence[bool]) -> float:
    """First time at which the Kaplan-Meier survival falls to 0.5 or below (NaN: not reached)."""
    return next((time for time, s in kaplan_meier(times, observed) if s <= 0.5), math.nan)


# ---------------------------------------------------------------------------------------------- curves


def _first_step(v: pd.DataFrame) -> pd.Series:
    return v.groupby("run_id")["step"].transform("min")


def known_at_start(v: pd.DataFrame) -> pd.Series:
    """Per row: was the item generated at its run's first evaluated step (per probe)?"""
    base = v[v["step"] == _first_step(v)]
    known = base.set_index(["run_id", "probe", "item_id"])["gen_known"].astype(bool)
    idx = pd.MultiIndex.from_frame(v[["run_id", "probe", "item_id"]])
    return pd.Series(known.reindex(idx).fillna(False).to_numpy(dtype=bool), index=v.index)


def curves(v: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per run, role, probe and step: raw (over all items, descriptive) and normalised (over
    the items generated at the first step), with 95% Wilson bands on the normalised curve."""
    v = v.assign(
        gen=v["gen_known"].astype(float),
        prob=v["prob_known"].astype(float),
        known0=known_at_start(v),
    )
    v = v.assign(gen_k=v["gen"].where(v["known0"]), prob_k=v["prob"].where(v["known0"]))
    keys = RUN_COLUMNS + ["role", "probe", "step"]
    out = (
        v.groupby(keys, dropna=False)
        .agg(
            n=("item_id", "nunique"),
            acc_raw=("gen", "mean"),
            prob_raw=("prob", "mean"),
            n_known0=("known0", "sum"),
            k_norm=("gen_k", "sum"),
            acc_norm=("gen_k", "mean"),
            prob_norm=("prob_k", "mean"),
        )
        .reset_index()
    )
    bands = [wilson(k, n) for k, n in zip(out["k_norm"], out["n_known0"])]
    out["acc_norm_lo"] = [b[0] for b in bands]
    out["acc_norm_hi"] = [b[1] for b in bands]
    return out.sort_values(keys).reset_index(drop=True)


def item_table(v: pd.DataFrame) -> pd.DataFrame:
    """One row per target or control item of a run and probe: known at the first step (`known0`), the
    baseline margin, the normalised AUC of its generation verdict, `drop` = 1 - AUC, and the first step
    at which it was no longer generated."""
    f = v[v["role"].isin([TARGET, CONTROL])]
    cols = RUN_COLUMNS + [
        "probe",
        "role",
        "item_id",
        "frequency",
        "known0",
        "margin0",
        "auc",
        "drop",
        "first_lost",
    ]
    if f.empty:
        return pd.DataFrame(columns=cols)
    runs = ["run_id", "probe"]
    weights = pd.concat(
        [
            pd.DataFrame({"run_id": r, "probe": p, "step": steps, "_w": _trapz_weights(steps)})
            for (r, p), steps in f.groupby(runs, sort=True)["step"].unique().map(np.sort).items()
        ],
        ignore_index=True,
    )
    f = f.merge(weights, on=[*runs, "step"]).sort_values([*runs, "item_id", "step"], kind="stable")
    gen = f["gen_known"].astype(float)
    f = f.assign(_area=gen * f["_w"], _lost=f["step"].where(gen == 0))
    keys = [*runs, "item_id"]
    first = f.drop_duplicates(keys).set_index(keys)
    agg = f.groupby(keys, sort=True).agg(auc=("_area", "sum"), first_lost=("_lost", "min"))
    # An item missing a step (e.g. a non-finite row dropped) has no AUC rather than a partial one.
    n_steps = f.groupby(keys, sort=True)["step"].size()
    full = f.groupby(runs)["step"].nunique().reindex(n_steps.index.droplevel("item_id")).to_numpy()
    agg.loc[n_steps.to_numpy() != full, "auc"] = np.nan
    out = first.loc[agg.index, [c for c in RUN_COLUMNS + ["role"] if c not in runs]].join(agg)
    out["known0"] = first.loc[agg.index, "gen_known"].astype(bool)
    out["margin0"] = first.loc[agg.index, "margin"].astype(float) if "margin" in first else np.nan
    out["drop"] = 1.0 - out["auc"]
    # The item's pre-training frequency (exposure in the synthetic setting, a corpus count otherwise).
    out["frequency"] = first.loc[agg.index, "frequency"].astype(float) if "frequency" in first else np.nan
    return out.reset_index()[cols]


def run_summaries(c: pd.DataFrame, forget_threshold: float, retain_tolerance: float) -> pd.DataFrame:
    """One row per (run, probe): the normalised forget curve's AUC and steps to `forget_threshold`
    (censored when never reached), the control arm's AUC, and forget accuracy at the last step where
    normalised retain accuracy was still within `retain_tolerance` of its start."""
    rows = []
    for keys, fc in c[c["role"] == TARGET].groupby(RUN_COLUMNS + ["probe"], dropna=False):
        fc = fc.sort_values("step")
        run = c[c["run_id"] == keys[0]]
        steps, acc = fc["step"].to_numpy(), fc["acc_norm"].to_numpy()
        reached = steps_to_threshold(steps, acc, forget_threshold)
        row = dict(zip(RUN_COLUMNS + ["probe"], keys))
        row.update(
            n_items=int(fc["n"].max()),
            n_known0=int(fc["n_known0"].iloc[0]),
            forget_start=float(fc["acc_raw"].iloc[0]),
            forget_auc_raw=normalised_auc(steps, fc["acc_raw"].to_numpy()),
            forget_auc=normalised_auc(steps, acc),
            forget_end=float(acc[-1]),
            censored=bool(math.isnan(reached)),
            steps_to_threshold=reached,
            max_step=float(steps.max()),
        )
        cc = run[(run["role"] == CONTROL) & (run["probe"] == keys[-1])].sort_values("step")
        row["control_auc"] = normalised_auc(cc["step"], cc["acc_norm"]) if len(cc) else math.nan
        # Retain damage is read on the trained (question) probe whatever probe the forget row uses.
        rc = run[(run["role"] == "retain") & (run["probe"] == "question")].sort_values("step")
        if len(rc) and rc["n_known0"].iloc[0] > 0:
            r_steps, r_acc = rc["step"].to_numpy(), rc["acc_norm"].to_numpy()
            ok = r_acc >= 1.0 - retain_tolerance
            last_ok = r_steps[ok].max() if ok.any() else r_steps[0]
            row.update(
                retain_end=float(r_acc[-1]),
                matched_retain_step=float(last_ok),
                forget_at_matched_retain=float(np.interp(last_ok, steps, acc)),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def headline(summaries: pd.DataFrame, items: pd.DataFrame, levels: Sequence[str], n_boot: int = 1000):
    """Per (size, method, selection, probe, level): normalised forget AUC with a bootstrap CI over
    items known at the start, the control arm's AUC, Kaplan-Meier median steps to threshold (runs that
    never reached it are censored) and forget accuracy at matched retain."""
    rows = []
    known = items[items["known0"]] if len(items) else items
    by_cell = {cell: g for cell, g in known.groupby(CELL, dropna=False)} if len(known) else {}
    for cell, s in summaries.groupby(CELL, dropna=False):
        it = by_cell.get(cell, known.iloc[0:0])
        for level in levels:
            sl = s[s["level"] == level]
            if sl.empty:
                continue
            lv = it[it["level"] == level]
            auc = bootstrap_mean(lv.loc[lv["role"] == TARGET, "auc"].to_numpy(), n_boot=n_boot)
            ctrl = lv.loc[lv["role"] == CONTROL, "auc"]
            row = dict(zip(CELL, cell))
            row.update(
                level=level,
                seeds=int(sl["seed"].nunique()),
                n_items=int(sl["n_items"].sum()),
                n_known0=int(sl["n_known0"].sum()),
                forget_start=float(sl["forget_start"].mean()),
                forget_auc_raw=float(sl["forget_auc_raw"].mean()),
                forget_auc=auc[0],
                forget_auc_lo=auc[1],
                forget_auc_hi=auc[2],
                control_auc=float(ctrl.mean()) if len(ctrl) else math.nan,
                runs_censored=int(sl["censored"].sum()),
                km_median_steps=km_median(sl["steps_to_threshold"].fillna(sl["max_step"]), ~sl["censored"]),
                forget_at_matched_retain=float(sl["forget_at_matched_retain"].mean())
                if "forget_at_matched_retain" in sl
                else math.nan,
            )
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ frequency effect


def _rng(seed: int, key: Any) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)


def match_on_margin(items: pd.DataFrame, high: str, low: str, caliper_sd: float = CALIPER_SD) -> pd.DataFrame:
    """Items of `high` and `low` paired 1:1 on baseline margin, within each model and role.

    Greedy nearest-neighbour matching: closest pairs first, each item used once, pairs further apart
    than `caliper_sd` pooled standard deviations dropped. Items without a finite margin are dropped.
    """
    keep = []
    ok = items[np.isfinite(items["margin0"].to_numpy(dtype=float))]
    for _, g in ok.groupby(["model", "role", "probe", "method", "selection"], sort=True):
        h, lo_ = g[g["level"] == high], g[g["level"] == low]
        if h.empty or lo_.empty:
            continue
        sd = float(g["margin0"].std(ddof=1)) if len(g) > 1 else 0.0
        caliper = caliper_sd * sd if sd > 0 else 0.0
        d = np.abs(h["margin0"].to_numpy()[:, None] - lo_["margin0"].to_numpy()[None, :])
        order = np.argsort(d, axis=None, kind="stable")
        used_h, used_l = set(), set()
        for flat in order:
            i, j = divmod(int(flat), d.shape[1])
            if d[i, j] > caliper:
                break
            if i in used_h or j in used_l:
                continue
            used_h.add(i)
            used_l.add(j)
        keep += [h.index[i] for i in sorted(used_h)] + [lo_.index[j] for j in sorted(used_l)]
    return items.loc[sorted(keep)]


def frequency_effect(
    items: pd.DataFrame, high: str, low: str, n_boot: int = 1000, seed: int = 0, matched: bool = False
) -> pd.DataFrame:
    """Per cell: net drop of `high` minus net drop of `low` (negative = frequent facts are harder to
    remove), where a level's net drop is its target items' mean drop minus its control items' mean drop
    in the same run, averaged over seeds.

    The 95% interval over items resamples target and control items within each run (percentile
    bootstrap); the seed interval is a t-interval of the per-seed effects. With `matched`, only items
    paired on baseline margin (`match_on_margin`) count.
    """
    # Items without an AUC (a step lost to non-finite logits) cannot give a drop.
    k = items[items["known0"] & items["drop"].notna()]
    if matched:
        k = match_on_margin(k, high, low)
    rows = []
    for cell, g in k.groupby(CELL, dropna=False, sort=True):
        has_control = bool((g["role"] == CONTROL).any())
        rng = _rng(seed, cell)
        per_level = _level_nets(g, (high, low), n_boot, rng)
        runs = [r for lv in (high, low) for r in per_level[lv].values()]
        smallest = min((min(nt, nc or math.inf) for _, _, nt, nc in runs), default=math.inf)
        counts = {
            (lv, role): sum(r[2 if role == TARGET else 3] for r in per_level[lv].values())
            for lv in (high, low)
            for role in (TARGET, CONTROL)
        }
        seeds = sorted(set(per_level[high]) & set(per_level[low]))
        if not seeds:
            continue
        net = {lv: np.mean([per_level[lv][s][0] for s in seeds]) for lv in (high, low)}
        boot = np.mean([per_level[high][s][1] - per_level[low][s][1] for s in seeds], axis=0)
        lo_ci, hi_ci = expanded_interval(boot, int(smallest))
        seed_ci = t_interval([per_level[high][s][0] - per_level[low][s][0] for s in seeds])
        rows.append(
            {
                **dict(zip(CELL, cell)),
                "matched": matched,
                "control": has_control,
                "seeds": len(seeds),
                "n_high": counts.get((high, TARGET), 0),
                "n_low": counts.get((low, TARGET), 0),
                "n_control_high": counts.get((high, CONTROL), 0),
                "n_control_low": counts.get((low, CONTROL), 0),
                "net_drop_high": float(net[high]),
                "net_drop_low": float(net[low]),
                "effect": float(net[high] - net[low]),
                "effect_lo": float(lo_ci),
                "effect_hi": float(hi_ci),
                "effect_seed_lo": seed_ci[1],
                "effect_seed_hi": seed_ci[2],
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["verdict"] = [
            verdict(e, lo, hi, expected=-1) if sel == "known" and ctl else "descriptive"
            for e, lo, hi, sel, ctl in zip(
                out["effect"], out["effect_lo"], out["effect_hi"], out["selection"], out["control"]
            )
        ]
    return out


def level_exposure(level: str, frequencies: pd.Series) -> float:
    """Where a level sits on the frequency axis: its items' median frequency (exposure or corpus
    count), else the level's own name when it is a number (an exposure grid); NaN when neither is a
    positive number, so the level cannot enter a slope against log frequency."""
    f = frequencies.to_numpy(dtype=float)
    f = f[np.isfinite(f)]
    if len(f) and np.median(f) > 0:
        return float(np.median(f))
    try:
        x = float(level)
    except ValueError:
        return math.nan
    return x if x > 0 else math.nan


def _level_nets(
    g: pd.DataFrame, levels: Sequence[str], n_boot: int, rng: np.random.Generator
) -> dict[str, dict[int, tuple]]:
    """Per level of `levels` (in that order, which fixes the resampling stream), per seed: the
    control-subtracted mean drop, its bootstrap replicates (target and control items resampled within
    the run), n target and n control. A cell with a control arm needs both arms in every run."""
    has_control = bool((g["role"] == CONTROL).any())
    out: dict[str, dict[int, tuple]] = {}
    for level in levels:
        out[level] = {}
        for run_seed, r in g[g["level"] == level].groupby("seed", sort=True):
            t = r.loc[r["role"] == TARGET, "drop"].to_numpy(dtype=float)
            c = r.loc[r["role"] == CONTROL, "drop"].to_numpy(dtype=float)
            if len(t) == 0 or (has_control and len(c) == 0):
                continue
            point = t.mean() - (c.mean() if len(c) else 0.0)
            boot = _boot_means(t, n_boot, rng) - (_boot_means(c, n_boot, rng) if len(c) else 0.0)
            out[level][int(run_seed)] = (point, boot, len(t), len(c))
    return out


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y on x; y may carry replicates in its last axis (one slope per replicate)."""
    xc = x - x.mean()
    return np.tensordot(xc, y - y.mean(axis=0), axes=(0, 0)) / (xc @ xc)


def dose_response(
    items: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finding 1 as a curve: per cell, each level's net drop (target minus control mean drop, averaged
    over seeds) against the log of the level's frequency, and the least-squares slope with a 95%
    bootstrap interval over items (resampled within each run) and, with >= 2 seeds, a t-interval over
    the per-seed slopes. A negative slope means that the more often a fact was seen, the less of it is
    unlearned. Returns (points, slopes); a cell needs >= 2 levels at distinct frequencies."""
    k = items[items["known0"] & items["drop"].notna()]
    points, slopes = [], []
    for cell, g in k.groupby(CELL, dropna=False, sort=True):
        has_control = bool((g["role"] == CONTROL).any())
        exposure = {
            str(lv): level_exposure(str(lv), r.loc[r["role"] == TARGET, "frequency"])
            for lv, r in g.groupby("level", sort=True)
        }
        placed = sorted((lv for lv in exposure if not math.isnan(exposure[lv])), key=lambda lv: exposure[lv])
        nets = _level_nets(g, placed, n_boot, _rng(seed, ("dose", cell)))
        levels = [lv for lv in placed if nets[lv]]
        seeds = sorted(set.intersection(*(set(nets[lv]) for lv in levels))) if levels else []
        for lv in levels:
            own = sorted(nets[lv])
            boot = np.mean([nets[lv][s][1] for s in own], axis=0)
            lo, hi = expanded_interval(boot, min(nets[lv][s][2] for s in own))
            points.append(
                {
                    **dict(zip(CELL, cell)),
                    "level": lv,
                    "exposure": exposure[lv],
                    "seeds": len(own),
                    "n_target": sum(nets[lv][s][2] for s in own),
                    "n_control": sum(nets[lv][s][3] for s in own),
                    "net_drop": float(np.mean([nets[lv][s][0] for s in own])),
                    "net_drop_lo": float(lo),
                    "net_drop_hi": float(hi),
                }
            )
        if not seeds or len({exposure[lv] for lv in levels}) < 2:
            continue
        x = np.log([exposure[lv] for lv in levels])
        y = np.array([np.mean([nets[lv][s][0] for s in seeds]) for lv in levels])
        boot = np.array([np.mean([nets[lv][s][1] for s in seeds], axis=0) for lv in levels])
        smallest = min(min(nets[lv][s][2], nets[lv][s][3] or math.inf) for lv in levels for s in seeds)
        lo, hi = expanded_interval(_slope(x, boot), int(smallest))
        per_seed = [float(_slope(x, np.array([nets[lv][s][0] for lv in levels]))) for s in seeds]
        seed_ci = t_interval(per_seed)
        slopes.append(
            {
                **dict(zip(CELL, cell)),
                "control": has_control,
                "levels": len(levels),
                "seeds": len(seeds),
                "n_target": sum(nets[lv][s][2] for lv in levels for s in seeds),
                "n_control": sum(nets[lv][s][3] for lv in levels for s in seeds),
                "exposure_min": float(min(exposure[lv] for lv in levels)),
                "exposure_max": float(max(exposure[lv] for lv in levels)),
                "slope": float(_slope(x, y)),
                "slope_lo": float(lo),
                "slope_hi": float(hi),
                "slope_seed_lo": seed_ci[1],
                "slope_seed_hi": seed_ci[2],
            }
        )
    pts, out = pd.DataFrame(points), pd.DataFrame(slopes)
    if len(out):
        out["verdict"] = [
            verdict(v, lo, hi, expected=-1) if sel == "known" and ctl else "descriptive"
            for v, lo, hi, sel, ctl in zip(
                out["slope"], out["slope_lo"], out["slope_hi"], out["selection"], out["control"]
            )
        ]
    return pts, out


def verdict(effect: float, lo: float, hi: float, expected: int) -> str:
    """'supported' when the 95% interval excludes zero on the expected side; 'not supported' when the
    effect is absent (exactly zero everywhere) or its interval lies on the opposite side; otherwise
    'inconclusive'."""
    if any(math.isnan(x) for x in (effect, lo, hi)):
        return "no estimate"
    if max(abs(effect), abs(lo), abs(hi)) < 1e-12:
        return "not supported"
    if expected * lo > 0 and expected * hi > 0:
        return "supported"
    if expected * lo < 0 and expected * hi < 0:
        return "not supported"
    return "inconclusive"


# --------------------------------------------------------------------------------------- misalignment


def misalignment_items(v: pd.DataFrame, matched_level: float = MATCHED_LEVEL) -> pd.DataFrame:
    """Per target and control item known at the first step, at its run's matched forgetting step (the
    first evaluated step at which the target items' normalised generation accuracy is <= `matched_level`):
    whether it is no longer generated (`forgotten`) and, for each probability view, whether the model
    still prefers the true answer. Runs that never reach the matched level have no rows."""
    f = v[v["role"].isin([TARGET, CONTROL])]
    f = f[known_at_start(f)]
    if f.empty:
        return pd.DataFrame(columns=RUN_COLUMNS + ["probe", "role", "item_id", "step", "forgotten", *VIEWS])
    tgt = f[f["role"] == TARGET].groupby(["run_id", "probe", "step"])["gen_known"].mean().reset_index()
    tgt = tgt.sort_values("step")
    matched = tgt[tgt["gen_known"] <= matched_level].groupby(["run_id", "probe"])["step"].first()
    base_lp = (
        f[f["step"] == _first_step(f)].set_index(["run_id", "probe", "item_id"])["logprob_per_token"]
        if "logprob_per_token" in f
        else None
    )
    at = f.merge(matched.rename("matched_step").reset_index(), on=["run_id", "probe"])
    at = at[at["step"] == at["matched_step"]].copy()
    at["forgotten"] = ~at["gen_known"].astype(bool)
    at["rank1"] = at["prob_known"].astype(bool)
    at["truth_ratio"] = at["truth_ratio"] < 1.0
    if base_lp is not None:
        idx = pd.MultiIndex.from_frame(at[["run_id", "probe", "item_id"]])
        at["logprob"] = at["logprob_per_token"].to_numpy() >= base_lp.reindex(idx).to_numpy() - LOGPROB_MARGIN
    else:
        at["logprob"] = np.nan
    return at[RUN_COLUMNS + ["probe", "role", "item_id", "step", "forgotten", *VIEWS]].reset_index(drop=True)


Strata = dict[str, list[tuple[str, np.ndarray, np.ndarray]]]


def _strata(mi: pd.DataFrame, by: list[str]) -> dict[tuple, dict[str, Strata]]:
    """Per value of `by`, per view, per role: (run, forgotten, forgotten & view) indicator arrays, one
    per run and probe: the strata the bootstrap resamples within."""
    den = mi["forgotten"].to_numpy(dtype=bool)
    nums = {
        view: den & mi[view].fillna(False).to_numpy(dtype=bool) for view in VIEWS if mi[view].notna().any()
    }
    out: dict[tuple, dict[str, Strata]] = {}
    for key, pos in mi.groupby([*by, "run_id", "role"], sort=True).indices.items():
        *group, run, role = key
        for view, num in nums.items():
            roles = out.setdefault(tuple(group), {}).setdefault(view, {TARGET: [], CONTROL: []})
            roles[role].append((f"{run}/{group[by.index('probe')]}/{role}", den[pos], num[pos]))
    return out


def _pool(parts: list[dict[str, Strata]]) -> dict[str, Strata]:
    """Strata of several groups (e.g. both levels) as one."""
    out: dict[str, Strata] = {}
    for part in parts:
        for view, roles in part.items():
            for role, strata in roles.items():
                out.setdefault(view, {TARGET: [], CONTROL: []})[role] += strata
    return out


def _counts(idx: np.ndarray) -> np.ndarray:
    """[resample, item] how often each item was drawn, from [resample, draw] item indices."""
    rows, n = idx.shape
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def _share(
    strata: list[tuple[str, np.ndarray, np.ndarray]], n_boot: int, rng, draws: dict[str, np.ndarray]
) -> tuple[float, np.ndarray, int]:
    """Pooled P(view | forgotten) over runs, its bootstrap replicates and the number forgotten.

    `draws` keeps each run's resamples (as counts of each item per resample: a resample's sums are
    one matrix product), so every view and pooling of a run is computed on the same resamples. With no forgotten item the share is 0: nothing lost its generation, so there is
    no disagreement of this kind to subtract (a control arm whose items all stay generated)."""
    den = sum(int(d.sum()) for _, d, _ in strata)
    num = sum(int(n.sum()) for _, _, n in strata)
    bd, bn = np.zeros(n_boot), np.zeros(n_boot)
    for run, d, n in strata:
        if len(d):
            if run not in draws:
                draws[run] = _counts(rng.integers(0, len(d), size=(n_boot, len(d))))
            bd += draws[run] @ d
            bn += draws[run] @ n
    share = num / den if den else 0.0
    boot = np.divide(bn, bd, out=np.zeros(n_boot), where=bd > 0)
    return share, boot, den


def misalignment(mi: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per cell, level (and both levels pooled) and view: P(still preferred | no longer generated) on
    target items minus the same on control items, with a 95% bootstrap interval over items."""
    rows = []
    if mi.empty:
        return pd.DataFrame(rows)
    draws: dict[str, np.ndarray] = {}
    rng = _rng(seed, "misalignment")
    strata = _strata(mi, [*CELL, "level"])
    cells: dict[tuple, list[tuple]] = {}
    for key in strata:
        cells.setdefault(key[:-1], []).append(key)
    for cell, keys in sorted(cells.items()):
        groups = [(k[-1], strata[k]) for k in keys]
        if len(keys) > 1:
            groups.append(("both", _pool([strata[k] for k in keys])))
        for level, views in groups:
            for view, roles in views.items():
                t, tb, nt = _share(roles[TARGET], n_boot, rng, draws)
                c, cb, nc = _share(roles[CONTROL], n_boot, rng, draws)
                lo, hi = expanded_interval(tb - cb, min(nt, nc) if nc else nt)
                rows.append(
                    {
                        **dict(zip(CELL, cell)),
                        "level": level,
                        "view": view,
                        "n_forgotten": nt,
                        "control": bool(roles[CONTROL]),
                        "n_control_forgotten": nc,
                        "target_share": t if nt else math.nan,
                        "control_share": c if nc else math.nan,
                        "diff": (t - c) if nt else math.nan,
                        "diff_lo": lo,
                        "diff_hi": hi,
                    }
                )
    return pd.DataFrame(rows)


def size_trend(mi: pd.DataFrame, params: dict[str, float], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method, selection, probe, level (and both pooled) and view: the least-squares slope of
    control-subtracted misalignment against log(parameters) over sizes, with a 95% bootstrap interval
    (items resampled within each run). Needs >= 2 sizes with an estimate."""
    rows = []
    if mi.empty:
        return pd.DataFrame(rows)
    mi = mi[mi["size"].isin(list(params))]
    if mi.empty:
        return pd.DataFrame(rows)
    draws: dict[str, np.ndarray] = {}
    rng = _rng(seed, "size_trend")
    strata = _strata(mi, ["method", "selection", "probe", "level", "size"])
    tree: dict[tuple, dict[str, dict[str, dict[str, Strata]]]] = {}
    for (*key, level, size), views in strata.items():
        tree.setdefault(tuple(key), {}).setdefault(level, {})[size] = views
    for key, by_level in sorted(tree.items()):
        groups = sorted(by_level.items())
        if len(groups) > 1:
            sizes = sorted({size for by_size in by_level.values() for size in by_size})
            pooled = {
                size: _pool([by_size[size] for by_size in by_level.values() if size in by_size])
                for size in sizes
            }
            groups.append(("both", pooled))
        for level, by_size in groups:
            for view in VIEWS:
                xs, pts, boots, n, smallest, control = [], [], [], 0, math.inf, False
                for size in sorted(by_size):
                    roles = by_size[size].get(view)
                    if roles is None:
                        continue
                    t, tb, nt = _share(roles[TARGET], n_boot, rng, draws)
                    c, cb, nc = _share(roles[CONTROL], n_boot, rng, draws)
                    if nt == 0:
                        continue
                    smallest = min(smallest, nt, nc if nc else nt)
                    control = control or bool(roles[CONTROL])
                    xs.append(math.log(params[size]))
                    pts.append(t - c)
                    boots.append(tb - cb)
                    n += nt
                if len(xs) < 2:
                    continue
                x = np.asarray(xs) - np.mean(xs)
                slope = float(x @ np.asarray(pts) / (x @ x))
                boot_slopes = (x @ (np.asarray(boots) - np.asarray(boots).mean(axis=0))) / (x @ x)
                lo, hi = expanded_interval(boot_slopes, int(smallest))
                rows.append(
                    {
                        "method": key[0],
                        "selection": key[1],
                        "probe": key[2],
                        "level": level,
                        "view": view,
                        "control": control,
                        "sizes": len(xs),
                        "n_forgotten": n,
                        "slope": slope,
                        "slope_lo": float(lo),
                        "slope_hi": float(hi),
                    }
                )
    out = pd.DataFrame(rows)
    if len(out):
        out["verdict"] = [
            verdict(s, lo, hi, expected=1) if sel == "known" and ctl else "descriptive"
            for s, lo, hi, sel, ctl in zip(
                out["slope"], out["slope_lo"], out["slope_hi"], out["selection"], out["control"]
            )
        ]
    return out


# ---------------------------------------------------------------------------------------- the verdicts


def _ci(x: float, lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return f"{x:+.3f} (no interval: too few items or sizes to resample)"
    return f"{x:+.3f} (95% CI {lo:+.3f} to {hi:+.3f})"


def describe_findings(
    effect: pd.DataFrame,
    matched: pd.DataFrame,
    trend: pd.DataFrame,
    sizes: Sequence[str],
    high: str,
    low: str,
    probe: str = "question",
    dose: pd.DataFrame | None = None,
) -> list[str]:
    """One sentence per verdict, each with direction, size, CI, n and its word: 'supported',
    'inconclusive' (the interval covers zero) or 'not supported' (absent or opposite). Only `known`
    cells with a control arm carry verdicts. A run with a dose-response (`dose`) leads with it."""
    out = describe_dose(dose, probe) if dose is not None else []
    out += _describe_effect(effect, matched, high, low, probe)
    return out + _describe_trend(trend, sizes, probe)


def _describe_effect(
    effect: pd.DataFrame, matched: pd.DataFrame, high: str, low: str, probe: str
) -> list[str]:
    """Finding 1 cell by cell: high minus low net drop, and the same on margin-matched items."""
    out = []
    known = effect[(effect["selection"] == "known") & effect["control"]] if len(effect) else effect
    known = known[known["probe"] == probe] if len(known) else known
    if known.empty:
        out.append(
            "Finding 1 (frequency): no verdict: it needs `known` selections with a control arm, and this run "
            "has none (cells of `all` selections are descriptive only)."
        )
    else:
        words = known["verdict"].value_counts()
        out.append(
            f"Finding 1 (frequency: {high} harder to unlearn than {low}) is supported in "
            f"{int(words.get('supported', 0))} of {len(known)} known cells on the {probe} probe "
            f"({int(words.get('inconclusive', 0))} inconclusive, {int(words.get('not supported', 0))} not supported)."
        )
        mt = matched.set_index(CELL) if len(matched) else None
        for row in known.itertuples(index=False):
            direction = "less" if row.effect < 0 else "more"
            s = (
                f"{row.size}, {row.method}: {high} items lost {abs(row.effect):.3f} {direction} of their "
                f"generation (normalised AUC, control-subtracted) than {low}: high minus low "
                f"{_ci(row.effect, row.effect_lo, row.effect_hi)}, n = {row.n_high} + {row.n_low} target and "
                f"{row.n_control_high} + {row.n_control_low} control items, {row.seeds} seed(s): {row.verdict}."
            )
            key = (row.size, row.method, row.selection, row.probe)
            if mt is not None and key in mt.index:
                m = mt.loc[key]
                s += (
                    f" Matched on baseline margin: {_ci(m['effect'], m['effect_lo'], m['effect_hi'])}, "
                    f"n = {int(m['n_high'])} + {int(m['n_low'])}: {m['verdict']}."
                )
            out.append(s)
    return out


def _describe_trend(trend: pd.DataFrame, sizes: Sequence[str], probe: str) -> list[str]:
    """Finding 2: the slope of control-subtracted misalignment against log parameters, per method."""
    out = []
    t = trend[(trend["selection"] == "known") & (trend["probe"] == probe)] if len(trend) else trend
    tv = t[t["verdict"] != "descriptive"] if len(t) else t
    if len(sizes) < 2:
        out.append(
            f"Finding 2 (misalignment grows with size): no verdict: it needs >= 2 model sizes, this run has {len(sizes)}."
        )
    elif len(t) and tv.empty:
        out.append(
            "Finding 2 (misalignment grows with size): no verdict: it needs `known` selections with a control "
            "arm, and this run has none (the misalignment tables are descriptive only)."
        )
    elif tv.empty:
        out.append(
            "Finding 2 (misalignment grows with size) is not supported: no known target item reached the "
            f"matched forgetting level (normalised generation accuracy <= {MATCHED_LEVEL}) at two or more sizes, "
            "so there is no misalignment to compare."
        )
    else:
        pooled = "both" if (tv["level"] == "both").any() else None
        for (method, level), tm in tv.groupby(["method", "level"], sort=True):
            if pooled and level != pooled:
                continue
            parts = [
                f"{VIEWS[r.view]}: slope {_ci(r.slope, r.slope_lo, r.slope_hi)} per e-fold of parameters, "
                f"{r.sizes} sizes, n = {r.n_forgotten}: {r.verdict}"
                for r in tm.itertuples(index=False)
            ]
            where = "levels pooled" if level == "both" else f"level {level}"
            out.append(
                f"Finding 2 (misalignment grows with size), {method}, {where}: share of known items no longer "
                "generated but still preferred, target minus control: " + "; ".join(parts) + "."
            )
    return out


def describe_dose(dose: pd.DataFrame, probe: str = "question") -> list[str]:
    """Finding 1 as a curve: one sentence per size and method (known cells with a control arm)."""
    d = (
        dose[(dose["selection"] == "known") & dose["control"] & (dose["probe"] == probe)]
        if len(dose)
        else dose
    )
    if d.empty:
        return []
    words = d["verdict"].value_counts()
    out = [
        f"Finding 1 as a dose-response (net drop, target minus control, against log frequency; a negative "
        f"slope means frequent facts are harder to unlearn) is supported in {int(words.get('supported', 0))} "
        f"of {len(d)} known cells on the {probe} probe ({int(words.get('inconclusive', 0))} inconclusive, "
        f"{int(words.get('not supported', 0))} not supported)."
    ]
    for r in d.itertuples(index=False):
        seeds = (
            f", seed interval {r.slope_seed_lo:+.3f} to {r.slope_seed_hi:+.3f}"
            if not math.isnan(r.slope_seed_lo)
            else ""
        )
        out.append(
            f"{r.size}, {r.method}: slope {_ci(r.slope, r.slope_lo, r.slope_hi)} per e-fold of frequency "
            f"({r.levels} levels, {r.exposure_min:g} to {r.exposure_max:g}; n = {r.n_target} target and "
            f"{r.n_control} control items, {r.seeds} seed(s){seeds}): {r.verdict}."
        )
    return out


def verdict_table(effect: pd.DataFrame, matched: pd.DataFrame, mis: pd.DataFrame, probe: str = "question"):
    """One row per size and method (known selection, `probe`): the numbers behind the verdicts."""
    if effect.empty:
        return pd.DataFrame()
    e = effect[(effect["selection"] == "known") & (effect["probe"] == probe)]
    rows = []
    for r in e.itertuples(index=False):
        m = (
            matched[
                (matched["size"] == r.size)
                & (matched["method"] == r.method)
                & (matched["selection"] == "known")
                & (matched["probe"] == probe)
            ]
            if len(matched)
            else matched
        )
        mm = (
            mis[
                (mis["size"] == r.size)
                & (mis["method"] == r.method)
                & (mis["selection"] == "known")
                & (mis["probe"] == probe)
                & (mis["level"] == "both")
                & (mis["view"] == "rank1")
            ]
            if len(mis)
            else mis
        )
        rows.append(
            {
                "size": r.size,
                "method": r.method,
                "n (high+low)": f"{r.n_high}+{r.n_low}",
                "net drop high": f"{r.net_drop_high:.3f}",
                "net drop low": f"{r.net_drop_low:.3f}",
                "effect [95% CI]": short_ci(r.effect, r.effect_lo, r.effect_hi),
                "Finding 1": r.verdict,
                "matched [95% CI]": short_ci(
                    m["effect"].iloc[0], m["effect_lo"].iloc[0], m["effect_hi"].iloc[0]
                )
                if len(m)
                else "",
                "misaligned, rank 1 [95% CI]": short_ci(
                    mm["diff"].iloc[0], mm["diff_lo"].iloc[0], mm["diff_hi"].iloc[0]
                )
                if len(mm)
                else "",
            }
        )
    return pd.DataFrame(rows)


def short_ci(x: float, lo: float, hi: float) -> str:
    """`x [lo, hi]` for tables and figure legends; no interval where too few items were resampled."""
    if math.isnan(x):
        return ""
    if math.isnan(lo) or math.isnan(hi):
        return f"{x:+.3f} [no interval]"
    return f"{x:+.3f} [{lo:+.3f}, {hi:+.3f}]"


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


def with_run_identity(df: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Per-item rows of one unlearning run, with the run's identity (from its stage record) as columns."""
    df["run_id"] = info["task"]
    df["model"] = info["model"]
    df["size"] = info["size"]
    df["seed"] = int(info["seed"])
    df["method"] = info["method"]
    df["level"] = str(info["level"])
    df["selection"] = info["selection"]
    return df
