"""The findings' estimands: from per-item verdicts to the numbers the verdicts are read from.

Everything here is a pure function of DataFrames, so every number in the report can be recomputed
from the per-item scores the study wrote. The input is one row per (run, step, item, probe) with the
run's identity (`RUN_COLUMNS`), the item's `role` in the run (`forget`: the target half that is
unlearned, `control`: the other half of the same level, never unlearned, `retain`, `utility`), its
person (`person_id`) and the verdicts of `frequnlearn.evaluate.misalignment.verdicts` (`gen_known`,
`prob_known`, `truth_ratio`, `logprob_per_token`, `margin`).

Choices that keep the verdicts from flattering themselves:
- curves are normalised to their start (accuracy over the items generated at the first step);
- the frequency effect subtracts, per level, the drop of control items that were never unlearned,
  and is compared over the step range every level's run covered;
- intervals resample what varies: generated worlds, pretraining seeds, people, items
  (`stats.hierarchical_weights`);
- margin is a mediator of frequency (frequency is randomised, margin follows from it), so the
  adjustment for it is a mediation analysis, not matching;
- misalignment is read at fixed levels of forgetting, never at a step count, and 0/0 is NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from frequnlearn.report import stats
from frequnlearn.report.headline import DESCRIPTIVE, INCONCLUSIVE, NO_ESTIMATE, OPPOSITE, SUPPORTED

RUN_COLUMNS = ["run_id", "model", "size", "seed", "world", "method", "level", "selection"]
CELL = ["size", "method", "selection", "probe"]
TARGET, CONTROL = "forget", "control"
# A verdict needs at least this many items in every arm; fewer make a row descriptive.
MIN_ITEMS = 20
# With at least this many pretraining seeds, a verdict also needs the seed-level interval to agree.
MIN_SEEDS_FOR_SEED_RULE = 3
# Misalignment's third view: the true answer's log-prob per token is still within this many nats of
# the item's own value before unlearning. The threshold is fixed in nats and relative to each item's
# start, and it is read at a fixed level of forgetting rather than at a step, so a model that needs
# more steps to forget is not judged against a bar that moved with the steps.
LOGPROB_MARGIN = 0.5
# Levels of forgetting (normalised generation accuracy of a run's target items) at which misalignment
# is read; each run is read at its first evaluated step at or below the level.
READ_LEVELS = (0.5, 0.25)
# Margin matching (exploratory) pairs items whose baseline margins differ by at most this many pooled
# SDs (the usual caliper of nearest-neighbour matching).
CALIPER_SD = 0.2
VIEWS = {
    "rank1": "still ranked first among the candidates",
    "truth_ratio": "truth ratio < 1",
    "logprob": f"log-prob per token within {LOGPROB_MARGIN} nats of the item's own start",
}
# Two methods (or probes) whose per-item drops correlate at least this much and are identical for at
# least this share of items are the same result: shown once, counted once.
SAME_CORRELATION, SAME_IDENTICAL = 0.95, 0.80
_PERSON_TAG = re.compile(r"^(p\d+)-")
# The order in which a probe that repeats another is attributed to the earlier one.
PROBE_ORDER = ("question", "paraphrase", "bio")


def with_run_identity(df: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Per-item rows of one unlearning run, with the run's identity (from its stage record) as columns;
    a run recorded before worlds (data seeds) were named is world 0."""
    df["run_id"] = info["task"]
    df["model"] = info["model"]
    df["size"] = info["size"]
    df["seed"] = int(info["seed"])
    df["world"] = int(info.get("world", 0) or 0)
    df["method"] = info["method"]
    df["level"] = str(info["level"])
    df["selection"] = info["selection"]
    return df


def person_of(item_ids: pd.Series) -> pd.Series:
    """A person per item where the rows do not say: the person tag of a synthetic item id
    (`p00011-birth_city` -> `p00011`), else the item itself (a fact of its own)."""
    ids = item_ids.astype(str)
    tag = ids.str.extract(_PERSON_TAG, expand=False)
    return tag.fillna(ids)


def ensure_identity(df: pd.DataFrame) -> pd.DataFrame:
    """`world` (0) and `person_id` (from the item id) where a frame predates them."""
    out = df
    if "world" not in out.columns:
        out = out.assign(world=0)
    derived = person_of(out["item_id"])
    if "person_id" not in out.columns:
        return out.assign(person_id=derived)
    if out["person_id"].isna().any():
        return out.assign(person_id=out["person_id"].astype(object).where(out["person_id"].notna(), derived))
    return out


# ---------------------------------------------------------------------------------------------- curves


def _first_step(v: pd.DataFrame) -> pd.Series:
    return v.groupby("run_id")["step"].transform("min")


def known_at_start(v: pd.DataFrame) -> pd.Series:
    """Per row: was the item generated at its run's first evaluated step (per probe)?"""
    base = v[v["step"] == _first_step(v)]
    known = base.set_index(["run_id", "probe", "item_id"])["gen_known"].astype(bool)
    known = known[~known.index.duplicated()]
    idx = pd.MultiIndex.from_frame(v[["run_id", "probe", "item_id"]])
    return pd.Series(known.reindex(idx).fillna(False).to_numpy(dtype=bool), index=v.index)


def curves(v: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per run, role, probe and step: raw (over all items, descriptive) and normalised (over
    the items generated at the first step), with 95% Wilson bands on the normalised curve."""
    v = ensure_identity(v)
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
    out["acc_norm_lo"], out["acc_norm_hi"] = stats.wilson_arrays(out["k_norm"], out["n_known0"])
    return out.sort_values(keys).reset_index(drop=True)


def _horizons(f: pd.DataFrame) -> pd.Series:
    """Per run: the last step that every run of its model, method and selection reached. Levels are
    compared over the same step range: a run that a stopping rule ended early does not make the
    other level's longer run look more forgotten."""
    by = ["world", "model", "method", "selection"]
    last = f.groupby(["run_id", *by], dropna=False)["step"].max().reset_index()
    common = last.groupby(by, dropna=False)["step"].transform("min")
    return pd.Series(common.to_numpy(), index=last["run_id"].to_numpy())


def item_table(v: pd.DataFrame) -> pd.DataFrame:
    """One row per target or control item of a run and probe: known at the first step (`known0`), the
    baseline margin (`margin0`), the normalised AUC of its generation verdict over the levels' common
    step range, `drop` = 1 - AUC (the share of that range over which it was no longer generated), the
    first step at which it was no longer generated (`first_lost`, NaN: never within the run) and the
    run's last step (`last_step`, where a never-lost item is censored)."""
    f = ensure_identity(v[v["role"].isin([TARGET, CONTROL])])
    cols = RUN_COLUMNS + [
        "probe",
        "role",
        "item_id",
        "person_id",
        "frequency",
        "known0",
        "margin0",
        "auc",
        "drop",
        "first_lost",
        "last_step",
        "horizon",
    ]
    if f.empty:
        return pd.DataFrame(columns=cols)
    runs = ["run_id", "probe"]
    last_step = f.groupby("run_id")["step"].max()
    horizon = _horizons(f)
    gen_all = f["gen_known"].astype(float)
    lost = f.assign(_lost=f["step"].where(gen_all == 0)).groupby([*runs, "item_id"], sort=True)["_lost"].min()
    f = f[f["step"] <= f["run_id"].map(horizon)]
    weights = pd.concat(
        [
            pd.DataFrame({"run_id": r, "probe": p, "step": steps, "_w": stats.trapz_weights(steps)})
            for (r, p), steps in f.groupby(runs, sort=True)["step"].unique().map(np.sort).items()
        ],
        ignore_index=True,
    )
    f = f.merge(weights, on=[*runs, "step"]).sort_values([*runs, "item_id", "step"], kind="stable")
    gen = f["gen_known"].astype(float)
    f = f.assign(_area=gen * f["_w"])
    keys = [*runs, "item_id"]
    first = f.drop_duplicates(keys).set_index(keys)
    agg = f.groupby(keys, sort=True).agg(auc=("_area", "sum"))
    # An item missing a step (e.g. a non-finite row dropped) has no AUC rather than a partial one.
    n_steps = f.groupby(keys, sort=True)["step"].size()
    full = f.groupby(runs)["step"].nunique().reindex(n_steps.index.droplevel("item_id")).to_numpy()
    agg.loc[n_steps.to_numpy() != full, "auc"] = np.nan
    agg["first_lost"] = lost.reindex(agg.index)
    out = first.loc[agg.index, [c for c in RUN_COLUMNS + ["role", "person_id"] if c not in runs]].join(agg)
    out["known0"] = first.loc[agg.index, "gen_known"].astype(bool)
    out["margin0"] = first.loc[agg.index, "margin"].astype(float) if "margin" in first else np.nan
    out["drop"] = 1.0 - out["auc"]
    # The item's pre-training frequency (exposure in the synthetic setting, a corpus count otherwise).
    out["frequency"] = first.loc[agg.index, "frequency"].astype(float) if "frequency" in first else np.nan
    out = out.reset_index()
    out["last_step"] = out["run_id"].map(last_step).astype(float)
    out["horizon"] = out["run_id"].map(horizon).astype(float)
    return out[cols]


def run_summaries(c: pd.DataFrame, forget_threshold: float, retain_tolerance: float) -> pd.DataFrame:
    """One row per (run, probe): the normalised forget curve's AUC and steps to `forget_threshold`
    (censored when never reached), the control arm's AUC, and forget accuracy at the last step where
    normalised retain accuracy was still within `retain_tolerance` of its start."""
    rows = []
    for keys, fc in c[c["role"] == TARGET].groupby(RUN_COLUMNS + ["probe"], dropna=False):
        fc = fc.sort_values("step")
        run = c[c["run_id"] == keys[0]]
        steps, acc = fc["step"].to_numpy(), fc["acc_norm"].to_numpy()
        reached = stats.steps_to_threshold(steps, acc, forget_threshold)
        row = dict(zip(RUN_COLUMNS + ["probe"], keys))
        row.update(
            n_items=int(fc["n"].max()),
            n_known0=int(fc["n_known0"].iloc[0]),
            forget_start=float(fc["acc_raw"].iloc[0]),
            forget_auc_raw=stats.normalised_auc(steps, fc["acc_raw"].to_numpy()),
            forget_auc=stats.normalised_auc(steps, acc),
            forget_end=float(acc[-1]),
            censored=bool(math.isnan(reached)),
            steps_to_threshold=reached,
            max_step=float(steps.max()),
        )
        cc = run[(run["role"] == CONTROL) & (run["probe"] == keys[-1])].sort_values("step")
        row["control_auc"] = stats.normalised_auc(cc["step"], cc["acc_norm"]) if len(cc) else math.nan
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


def _mean_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean and bootstrap interval over items (descriptive tables)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    boot = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = stats.expanded_interval(boot, len(x), float(x.mean()))
    return (float(x.mean()), lo, hi)


def level_summary(summaries: pd.DataFrame, items: pd.DataFrame, levels: Sequence[str], n_boot: int = 1000):
    """Per (size, method, selection, probe, level): normalised forget AUC with an interval over items
    known at the start, the control arm's AUC, Kaplan-Meier median steps to threshold (runs that never
    reached it are censored) and forget accuracy at matched retain. Descriptive."""
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
            auc = _mean_ci(
                lv.loc[lv["role"] == TARGET, "auc"].to_numpy(), n_boot, stats.rng_for(0, (cell, level))
            )
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
                km_median_steps=stats.km_median(
                    sl["steps_to_threshold"].fillna(sl["max_step"]), ~sl["censored"].astype(bool)
                ),
                forget_at_matched_retain=float(sl["forget_at_matched_retain"].mean())
                if "forget_at_matched_retain" in sl
                else math.nan,
            )
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- verdicts


def precondition(
    estimate: float, *, n_min: float = math.inf, targeted: bool = True, moved: bool = True
) -> str | None:
    """The word a comparison gets before its interval is looked at, or None when it may carry a
    verdict: no estimate (nothing moved in any run, e.g. lr = 0; or no estimate: the comparison point
    was not reached, no items), descriptive (fewer than MIN_ITEMS items in some arm, or no targeted
    forgetting at some level: the target arm did not lose more than its control)."""
    if not moved or not np.isfinite(estimate):
        return NO_ESTIMATE
    if n_min < MIN_ITEMS or not targeted:
        return DESCRIPTIVE
    return None


def _seeds_agree(side: int, expected: int, seed_lo: float, seed_hi: float, n_seeds: int) -> bool:
    """With >= MIN_SEEDS_FOR_SEED_RULE seeds, the seed-level interval must lie on the same side."""
    if n_seeds < MIN_SEEDS_FOR_SEED_RULE:
        return True
    if not (np.isfinite(seed_lo) and np.isfinite(seed_hi)):
        return False
    return expected * side * seed_lo > 0 and expected * side * seed_hi > 0


def _word(side: int) -> str:
    return SUPPORTED if side == 1 else OPPOSITE if side == -1 else INCONCLUSIVE


def verdict(
    estimate: float,
    lo: float,
    hi: float,
    expected: int,
    *,
    n_min: float = math.inf,
    targeted: bool = True,
    moved: bool = True,
    seed_lo: float = math.nan,
    seed_hi: float = math.nan,
    n_seeds: int = 0,
) -> str:
    """The verdict word of one comparison, each word with one meaning (`report.headline`): first the
    `precondition`s (no estimate, descriptive); then supported / opposite when the 95% interval lies
    on the predicted (`expected` sign) / the other side and, with >= MIN_SEEDS_FOR_SEED_RULE seeds,
    the seed-level interval lies there too; otherwise inconclusive (the interval covers zero, or the
    seeds disagree)."""
    pre = precondition(estimate, n_min=n_min, targeted=targeted, moved=moved)
    if pre is not None:
        return pre
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return INCONCLUSIVE
    side = (
        1 if expected * lo > 0 and expected * hi > 0 else -1 if expected * lo < 0 and expected * hi < 0 else 0
    )
    return _word(side if side and _seeds_agree(side, expected, seed_lo, seed_hi, n_seeds) else 0)


def adjusted_verdict(
    estimate: float,
    p_holm: float,
    expected: int,
    *,
    n_min: float = math.inf,
    targeted: bool = True,
    moved: bool = True,
    seed_lo: float = math.nan,
    seed_hi: float = math.nan,
    n_seeds: int = 0,
    alpha: float = 0.05,
) -> str:
    """An exploratory comparison's word: as `verdict`, with its Holm-adjusted p-value (< alpha, on the
    side of the estimate) in place of the interval."""
    pre = precondition(estimate, n_min=n_min, targeted=targeted, moved=moved)
    if pre is not None:
        return pre
    if not (np.isfinite(p_holm) and p_holm < alpha) or estimate == 0:
        return INCONCLUSIVE
    side = 1 if expected * estimate > 0 else -1
    return _word(side if _seeds_agree(side, expected, seed_lo, seed_hi, n_seeds) else 0)


# --------------------------------------------------------------------------------- resampled arms


def _weights(g: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> stats.Resamples:
    """The hierarchical bootstrap of the rows `g` (`stats.hierarchical_resamples`). Pretraining seeds
    are the model units; sizes are a fixed factor of the design, so a seed drawn brings all its sizes
    (a size never drops out of a resample)."""
    if g.empty:
        return stats.Resamples(np.ones((1, 0)), [], n_boot)
    return stats.hierarchical_resamples(
        g["world"].to_numpy(),
        g["seed"].to_numpy(),
        g["person_id"].to_numpy(),
        g["item_id"].to_numpy(),
        g["level"].to_numpy(),
        n_boot,
        rng,
    )


def _interval(rs: stats.Resamples, x: np.ndarray, n: float) -> tuple[float, float, float, float]:
    """(point, lo, hi, p) of a statistic computed on every row of `rs.weights`, `n` items in its
    smallest arm; NaN throughout when the point is NaN."""
    point, boot = rs.combine(x)
    point = float(point)
    if not np.isfinite(point) or not np.isfinite(n) or n < 2:
        return point, math.nan, math.nan, math.nan
    df = rs.df(x)
    lo, hi = stats.expanded_interval(boot, int(n), point, df=df)
    return point, lo, hi, stats.bootstrap_p(boot, point, int(n), df=df)


def _arm_means(g: pd.DataFrame, arms: list[tuple], keys: list[str], value: str, w: np.ndarray) -> np.ndarray:
    """[weights row, arm] weighted means of `value` per arm (a tuple of `keys` values)."""
    code = {a: i for i, a in enumerate(arms)}
    cols = [g[k].to_numpy() for k in keys]
    idx = np.fromiter((code.get(t, -1) for t in zip(*cols)), dtype=np.int64, count=len(g))
    keep = idx >= 0
    return stats.weighted_means(w[:, keep], g[value].to_numpy(dtype=float)[keep], idx[keep], len(arms))


def _seed_units(g: pd.DataFrame) -> list[tuple]:
    pairs = np.unique(
        np.column_stack([g["world"].to_numpy(dtype=np.int64), g["seed"].to_numpy(dtype=np.int64)]), axis=0
    )
    return [(int(a), int(b)) for a, b in pairs]


def _unit_matrix(g: pd.DataFrame) -> np.ndarray:
    """[model unit, row] indicator weights: a statistic computed with them is its value within each
    model unit (world, pretraining seed), the points of the seed-level interval."""
    world, seed = g["world"].to_numpy(), g["seed"].to_numpy()
    return (
        np.stack([((world == w) & (seed == s)).astype(float) for w, s in _seed_units(g)])
        if len(g)
        else np.ones((0, 0))
    )


def _counts(g: pd.DataFrame) -> dict[str, int]:
    world = g["world"].to_numpy()
    return {
        "n_people": len(np.unique(stats._codes(world, g["person_id"].to_numpy()))) if len(g) else 0,
        "n_seeds": int(g["seed"].nunique()),
        "n_worlds": int(g["world"].nunique()),
        "n_seed_units": len(_seed_units(g)) if len(g) else 0,
    }


def _arm_sizes(g: pd.DataFrame, arms: list[tuple]) -> dict[tuple, int]:
    level, role = g["level"].to_numpy(), g["role"].to_numpy()
    return {a: int(((level == a[0]) & (role == a[1])).sum()) for a in arms}


def _moved(drops: pd.Series) -> bool:
    return bool((drops.abs() > 1e-12).any())


# ------------------------------------------------------------------------------------ frequency effect


def _known_drops(items: pd.DataFrame) -> pd.DataFrame:
    """Known items with a drop (an item without an AUC, e.g. a step lost to non-finite logits, has none)."""
    if items.empty:
        return ensure_identity(items.assign(known0=pd.Series(dtype=bool)))
    k = ensure_identity(items)
    return k[k["known0"].astype(bool) & k["drop"].notna()]


def _cells(k: pd.DataFrame, pool_sizes: bool):
    """(cell, rows) per size, method, selection and probe; with `pool_sizes` also every size pooled
    (size "all"), the models of every size then units of one comparison."""
    for cell, g in k.groupby(CELL, dropna=False, sort=True):
        yield cell, g
    if pool_sizes and k["size"].nunique() > 1:
        for key, g in k.groupby(["method", "selection", "probe"], dropna=False, sort=True):
            if g["size"].nunique() > 1:
                yield ("all", *key), g


def _net(means: np.ndarray, arms: list[tuple], level: str, has_control: bool) -> np.ndarray:
    t = means[:, arms.index((level, TARGET))]
    return t - means[:, arms.index((level, CONTROL))] if has_control else t


def frequency_effect(
    items: pd.DataFrame,
    high: str,
    low: str,
    n_boot: int = 1000,
    seed: int = 0,
    matched: bool = False,
    pool_sizes: bool = False,
) -> pd.DataFrame:
    """Per cell: the total frequency effect, net drop of `high` minus net drop of `low` (negative =
    frequent facts are harder to remove), where a level's net drop is its target items' mean drop minus
    its control items' mean drop, pooled over the cell's runs (the difference in differences a
    regression of drop on level x role gives).

    Interval: hierarchical bootstrap (worlds, seeds, people, items), expanded for small arms and never
    narrower than the t-interval at the smallest arm's degrees of freedom; the seed-level interval is a
    t-interval of the per-seed effects. With `matched`, only items paired on baseline margin count
    (`match_on_margin`, exploratory: matching conditions on a mediator)."""
    k = _known_drops(items)
    k = k[k["level"].isin([high, low])]
    if matched:
        k = match_on_margin(k, high, low)
    rows = []
    arms = [(high, TARGET), (high, CONTROL), (low, TARGET), (low, CONTROL)]
    for cell, g in _cells(k, pool_sizes):
        has_control = bool((g["role"] == CONTROL).any())
        n = _arm_sizes(g, arms)
        if not n[(high, TARGET)] or not n[(low, TARGET)]:
            continue
        rs = _weights(g, n_boot, stats.rng_for(seed, ("effect", matched, cell)))
        means = _arm_means(g, arms, ["level", "role"], "drop", rs.weights)
        net_h, net_l = _net(means, arms, high, has_control), _net(means, arms, low, has_control)
        n_min = min(v for a, v in n.items() if has_control or a[1] == TARGET)
        eff, lo, hi, p_eff = _interval(rs, net_h - net_l, n_min)

        mu = _arm_means(g, arms, ["level", "role"], "drop", _unit_matrix(g))
        seed_ci = stats.t_interval(_net(mu, arms, high, has_control) - _net(mu, arms, low, has_control))
        nh = _interval(rs, net_h, min(n[(high, TARGET)], n[(high, CONTROL)] or math.inf))
        nl = _interval(rs, net_l, min(n[(low, TARGET)], n[(low, CONTROL)] or math.inf))
        rows.append(
            {
                **dict(zip(CELL, cell)),
                "matched": matched,
                "control": has_control,
                "seeds": len(_seed_units(g)),
                **_counts(g),
                "n_high": n[(high, TARGET)],
                "n_low": n[(low, TARGET)],
                "n_control_high": n[(high, CONTROL)],
                "n_control_low": n[(low, CONTROL)],
                "n_min": n_min,
                "drop_high": float(means[0, 0]),
                "drop_control_high": float(means[0, 1]),
                "drop_low": float(means[0, 2]),
                "drop_control_low": float(means[0, 3]),
                "net_drop_high": nh[0],
                "net_drop_high_lo": nh[1],
                "net_drop_high_hi": nh[2],
                "net_drop_low": nl[0],
                "net_drop_low_lo": nl[1],
                "net_drop_low_hi": nl[2],
                "effect": eff,
                "effect_lo": lo,
                "effect_hi": hi,
                "effect_p": p_eff,
                "effect_seed_lo": seed_ci[1],
                "effect_seed_hi": seed_ci[2],
                "moved": _moved(g["drop"]),
                "targeted": bool(net_h[0] > 0 and net_l[0] > 0),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["verdict"] = [
            verdict(
                r.effect,
                r.effect_lo,
                r.effect_hi,
                -1,
                n_min=r.n_min,
                targeted=r.targeted,
                moved=r.moved,
                seed_lo=r.effect_seed_lo,
                seed_hi=r.effect_seed_hi,
                n_seeds=r.seeds,
            )
            if r.selection == "known" and r.control
            else DESCRIPTIVE
            for r in out.itertuples(index=False)
        ]
    return out


def match_on_margin(items: pd.DataFrame, high: str, low: str, caliper_sd: float = CALIPER_SD) -> pd.DataFrame:
    """Items of `high` and `low` paired 1:1 on baseline margin, within each model and role.

    Greedy nearest-neighbour matching: closest pairs first, each item used once, pairs further apart
    than `caliper_sd` pooled standard deviations dropped. Items without a finite margin are dropped.
    Exploratory: margin follows from frequency, so matching on it keeps only the overlap of the two
    levels and conditions on a mediator (`mediation` is the adjustment the verdicts use)."""
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


# ------------------------------------------------------------------------------------------ mediation


def _design(
    g: pd.DataFrame, high: str, has_control: bool, centre: float
) -> tuple[np.ndarray, np.ndarray, list]:
    """Columns of the total-effect model (drop ~ high * target) and of the outcome model, which adds
    the baseline margin with a slope of its own for target and control items."""
    h = (g["level"] == high).to_numpy(dtype=float)
    m = g["margin0"].to_numpy(dtype=float) - centre
    one = np.ones(len(g))
    if not has_control:
        return np.column_stack([one, h]), np.column_stack([one, h, m]), ["const", "high", "margin"]
    t = (g["role"] == TARGET).to_numpy(dtype=float)
    total = np.column_stack([one, h, t, h * t])
    names = ["const", "high", "target", "high:target", "margin", "margin:target"]
    return total, np.column_stack([total, m, m * t]), names


def mediation(
    items: pd.DataFrame, high: str, low: str, n_boot: int = 1000, seed: int = 0, pool_sizes: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell: the frequency effect split through baseline margin (regression-based mediation).

    Frequency is randomised and the baseline margin (how far the true answer leads its best wrong
    candidate before unlearning) follows from it, so margin is a mediator, not a confounder. Total
    effect: the high:target coefficient of drop ~ high * target (the net-drop difference); direct
    effect: the same coefficient once margin enters with its own slope for targets and controls
    (drop ~ high * target + margin * target: the net-drop difference at equal margin); indirect =
    total - direct (the part carried by margin). OLS (statsmodels) for the point and its HC1 standard
    error; intervals from the hierarchical bootstrap (weighted least squares per replicate).

    Returns (effects, points): `points` holds, per cell, level and margin bin, the net drop and the
    outcome model's fitted net drop, the data of a figure of the effect against margin within levels."""
    import statsmodels.api as sm

    k = _known_drops(items)
    k = k[k["level"].isin([high, low]) & np.isfinite(k["margin0"].to_numpy(dtype=float))]
    rows, points = [], []
    for cell, g in _cells(k, pool_sizes):
        has_control = bool((g["role"] == CONTROL).any())
        n = g.groupby(["level", "role"]).size()
        if (high, TARGET) not in n or (low, TARGET) not in n or (has_control and len(n) < 4):
            continue
        n_min = int(n.min())
        centre = float(g["margin0"].mean())
        xt, xo, names = _design(g, high, has_control, centre)
        y = g["drop"].to_numpy(dtype=float)
        coef = names.index("high:target") if has_control else names.index("high")
        fit_t = sm.OLS(y, xt).fit(cov_type="HC1")
        # Margins that do not vary (within a role) leave the direct effect unidentified: no estimate.
        identified = np.linalg.matrix_rank(xo) == xo.shape[1]
        fit_o = sm.OLS(y, xo).fit(cov_type="HC1") if identified else None
        rs = _weights(g, n_boot, stats.rng_for(seed, ("mediation", cell)))
        bt = stats.batched_wls(rs.weights, xt, y)[:, coef]
        bo = stats.batched_wls(rs.weights, xo, y)[:, coef] if identified else np.full(len(bt), np.nan)
        total = float(fit_t.params[coef])
        direct = float(fit_o.params[coef]) if identified else math.nan
        coefs = {"total": bt, "direct": bo, "indirect": bt - bo}
        row = {**dict(zip(CELL, cell)), "control": has_control, "seeds": len(_seed_units(g)), **_counts(g)}
        row.update(n_high=int(n.get((high, TARGET), 0)), n_low=int(n.get((low, TARGET), 0)), n_min=n_min)
        units = _unit_matrix(g)
        # A model unit missing an arm has no per-seed coefficients (its design is rank-deficient).
        full = (
            _arm_means(
                g.assign(_one=1.0),
                [(lv, r) for lv in (high, low) for r in ((TARGET, CONTROL) if has_control else (TARGET,))],
                ["level", "role"],
                "_one",
                units,
            )
            == 1
        ).all(axis=1)
        ut = stats.batched_wls(units, xt, y)[:, coef]
        uo = stats.batched_wls(units, xo, y)[:, coef] if identified else np.full(len(ut), np.nan)
        per_unit = {"total": np.where(full, ut, np.nan), "direct": np.where(full, uo, np.nan)}
        per_unit["indirect"] = per_unit["total"] - per_unit["direct"]
        for name, x in coefs.items():
            est, lo, hi, p = _interval(rs, x, n_min)
            seed_ci = stats.t_interval(per_unit[name])
            row.update(
                {
                    name: est,
                    f"{name}_lo": lo,
                    f"{name}_hi": hi,
                    f"{name}_p": p,
                    f"{name}_seed_lo": seed_ci[1],
                    f"{name}_seed_hi": seed_ci[2],
                }
            )
        row["total_ols_se"] = float(fit_t.bse[coef])
        row["direct_ols_se"] = float(fit_o.bse[coef]) if identified else math.nan
        # A share of a total whose interval holds zero can be any number (230% of a placebo's -0.003):
        # it is estimated only where the total is told apart from zero.
        t_lo, t_hi = row["total_lo"], row["total_hi"]
        apart = math.isfinite(t_lo) and math.isfinite(t_hi) and (t_lo > 0 or t_hi < 0)
        row["share_mediated"] = (total - direct) / total if apart and abs(total) > 1e-9 else math.nan
        tg = g[g["role"] == TARGET]
        row["margin_high"] = float(tg.loc[tg["level"] == high, "margin0"].mean())
        row["margin_low"] = float(tg.loc[tg["level"] == low, "margin0"].mean())
        mi = names.index("margin")
        params = fit_o.params if identified else np.full(len(names), np.nan)
        row["margin_slope_control" if has_control else "margin_slope"] = float(params[mi])
        if has_control:
            row["margin_slope_target"] = float(params[mi] + params[names.index("margin:target")])
        row["moved"] = _moved(g["drop"])
        net = {
            lv: g.loc[(g["level"] == lv) & (g["role"] == TARGET), "drop"].mean()
            - (g.loc[(g["level"] == lv) & (g["role"] == CONTROL), "drop"].mean() if has_control else 0.0)
            for lv in (high, low)
        }
        row["targeted"] = bool(net[high] > 0 and net[low] > 0)
        rows.append(row)
        if identified:
            points += _mediation_points(g, cell, high, has_control, centre, fit_o.params, names)
    return pd.DataFrame(rows), pd.DataFrame(points)


def _mediation_points(g, cell, high, has_control, centre, params, names, bins: int = 5) -> list[dict]:
    """Net drop per level within margin bins (quantiles of the cell's margins) and the outcome
    model's fitted net drop at the bin's mean margin."""
    edges = np.unique(np.quantile(g["margin0"], np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return []
    b = np.clip(np.searchsorted(edges, g["margin0"], side="right") - 1, 0, len(edges) - 2)
    g = g.assign(_bin=b)
    p = dict(zip(names, params))
    out = []
    for (level, k), part in g.groupby(["level", "_bin"], sort=True):
        t = part.loc[part["role"] == TARGET, "drop"]
        c = part.loc[part["role"] == CONTROL, "drop"]
        m = float(part["margin0"].mean()) - centre
        h = float(level == high)
        fitted = (
            p["target"] + p["high:target"] * h + p["margin:target"] * m
            if has_control
            else p["const"] + p["high"] * h + p["margin"] * m
        )
        out.append(
            {
                **dict(zip(CELL, cell)),
                "level": level,
                "margin_lo": float(edges[k]),
                "margin_hi": float(edges[k + 1]),
                "margin": m + centre,
                "n_target": len(t),
                "n_control": len(c),
                "drop_target": float(t.mean()) if len(t) else math.nan,
                "drop_control": float(c.mean()) if len(c) else math.nan,
                "net_drop": float(t.mean() - (c.mean() if has_control else 0.0))
                if len(t) and (len(c) or not has_control)
                else math.nan,
                "fitted_net_drop": float(fitted),
            }
        )
    return out


# -------------------------------------------------------------------------------------------- survival


def survival(
    items: pd.DataFrame, high: str, low: str, pool_sizes: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time to first loss per known item (`first_lost`; censored at the run's last step when never
    lost): Kaplan-Meier curves per cell, level and role, and per cell the Cox hazard ratio of losing a
    target item, high vs low (< 1: frequent items are lost later), stratified by model, with a
    cluster-robust interval over people; the control arm's hazard ratio beside it says how much of the
    difference untargeted items show too. Returns (curves, hazard ratios)."""
    k = ensure_identity(items)
    k = k[k["known0"].astype(bool) & k["level"].isin([high, low])] if len(k) else k
    curves_, ratios = [], []
    if k.empty:
        return pd.DataFrame(), pd.DataFrame()
    if "last_step" not in k:
        # An item table written before it recorded each run's last step: the last loss seen in the run.
        k = k.assign(last_step=k.groupby("run_id")["first_lost"].transform("max"))
    k = k.assign(
        _event=k["first_lost"].notna(),
        _time=k["first_lost"].fillna(k["last_step"]).astype(float),
    )
    for cell, g in _cells(k, pool_sizes):
        for (level, role), part in g.groupby(["level", "role"], sort=True):
            km = stats.km_table(part["_time"], part["_event"])
            curves_ += [
                {
                    **dict(zip(CELL, cell)),
                    "level": level,
                    "role": role,
                    "step": t,
                    "surv": s,
                    "se": se,
                    "at_risk": int(r),
                    "n": len(part),
                    "events": int(part["_event"].sum()),
                }
                for t, s, se, r in zip(km["time"], km["surv"], km["se"], km["at_risk"])
            ]
        row = {**dict(zip(CELL, cell)), "seeds": len(_seed_units(g)), **_counts(g)}
        for role, tag in ((TARGET, ""), (CONTROL, "control_")):
            part = g[g["role"] == role]
            hr = stats.hazard_ratio(
                part["_time"].to_numpy(),
                part["_event"].to_numpy(),
                (part["level"] == high).to_numpy(),
                strata=part["model"].astype(str).to_numpy(),
                clusters=(part["world"].astype(str) + "/" + part["person_id"].astype(str)).to_numpy(),
            )
            row.update({f"{tag}{k_}": v for k_, v in hr.items()})
            row[f"{tag}n_high"] = int((part["level"] == high).sum())
            row[f"{tag}n_low"] = int((part["level"] == low).sum())
            row[f"{tag}events_high"] = int(part.loc[part["level"] == high, "_event"].sum())
            row[f"{tag}events_low"] = int(part.loc[part["level"] == low, "_event"].sum())
        row["n_min"] = min(row["n_high"], row["n_low"])
        row["moved"] = bool(g["_event"].any())
        ratios.append(row)
    return pd.DataFrame(curves_), pd.DataFrame(ratios)


# ------------------------------------------------------------------------------------- dose-response


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


def dose_response(
    items: pd.DataFrame, n_boot: int = 1000, seed: int = 0, pool_sizes: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Finding 1 as a curve: per cell, each level's net drop (target minus control mean drop) against
    the log of the level's frequency, and the least-squares slope per e-fold of frequency, with the
    hierarchical bootstrap interval and a t-interval over the per-seed slopes. A negative slope means
    that the more often a fact was seen, the less of it is unlearned. With two levels the slope is the
    high-minus-low effect divided by the log of their frequency ratio: the same result in other units
    ("effect per e-fold"), not a second one. Returns (points, slopes)."""
    k = _known_drops(items)
    points, slopes = [], []
    for cell, g in _cells(k, pool_sizes):
        has_control = bool((g["role"] == CONTROL).any())
        exposure = {
            str(lv): level_exposure(str(lv), r.loc[r["role"] == TARGET, "frequency"])
            for lv, r in g.groupby("level", sort=True)
        }
        placed = sorted((lv for lv in exposure if not math.isnan(exposure[lv])), key=lambda lv: exposure[lv])
        n = g.groupby(["level", "role"]).size()
        levels = [lv for lv in placed if (lv, TARGET) in n and (not has_control or (lv, CONTROL) in n)]
        if not levels:
            continue
        g = g[g["level"].isin(levels)]
        arms = [(lv, role) for lv in levels for role in ((TARGET, CONTROL) if has_control else (TARGET,))]
        rs = _weights(g, n_boot, stats.rng_for(seed, ("dose", cell)))
        means = _arm_means(g, arms, ["level", "role"], "drop", rs.weights)
        nets = np.column_stack([_net(means, arms, lv, has_control) for lv in levels])
        for j, lv in enumerate(levels):
            nt, nc = int(n[(lv, TARGET)]), int(n.get((lv, CONTROL), 0))
            _, lo, hi, _ = _interval(rs, nets[:, j], min(nt, nc or math.inf))
            points.append(
                {
                    **dict(zip(CELL, cell)),
                    "level": lv,
                    "exposure": exposure[lv],
                    "seeds": int(g.loc[g["level"] == lv, "seed"].nunique()),
                    "n_target": nt,
                    "n_control": nc,
                    "net_drop": float(nets[0, j]),
                    "net_drop_lo": lo,
                    "net_drop_hi": hi,
                }
            )
        if len({exposure[lv] for lv in levels}) < 2:
            continue
        x = np.log([exposure[lv] for lv in levels])
        sl = stats.slope(x, nets)
        n_min = int(min(n[a] for a in arms))
        est, lo, hi, p_slope = _interval(rs, sl, n_min)

        mu = _arm_means(g, arms, ["level", "role"], "drop", _unit_matrix(g))
        seed_ci = stats.t_interval(
            stats.slope(x, np.column_stack([_net(mu, arms, lv, has_control) for lv in levels]))
        )
        slopes.append(
            {
                **dict(zip(CELL, cell)),
                "control": has_control,
                "levels": len(levels),
                "seeds": len(_seed_units(g)),
                **_counts(g),
                "n_target": int(sum(n[(lv, TARGET)] for lv in levels)),
                "n_control": int(sum(n.get((lv, CONTROL), 0) for lv in levels)),
                "n_min": n_min,
                "exposure_min": float(min(exposure[lv] for lv in levels)),
                "exposure_max": float(max(exposure[lv] for lv in levels)),
                "slope": est,
                "slope_lo": lo,
                "slope_hi": hi,
                "slope_p": p_slope,
                "slope_seed_lo": seed_ci[1],
                "slope_seed_hi": seed_ci[2],
                "moved": _moved(g["drop"]),
                "targeted": bool((nets[0] > 0).all()),
                # Two levels: the slope is the effect divided by ln(frequency ratio), not its own result.
                "per_efold_of_effect": len(levels) == 2,
            }
        )
    pts, out = pd.DataFrame(points), pd.DataFrame(slopes)
    if len(out):
        out["verdict"] = [
            verdict(
                r.slope,
                r.slope_lo,
                r.slope_hi,
                -1,
                n_min=r.n_min,
                targeted=r.targeted,
                moved=r.moved,
                seed_lo=r.slope_seed_lo,
                seed_hi=r.slope_seed_hi,
                n_seeds=r.seeds,
            )
            if r.selection == "known" and r.control
            else DESCRIPTIVE
            for r in out.itertuples(index=False)
        ]
    return pts, out


# ------------------------------------------------------------------------------ the same result twice


def near_identical(items: pd.DataFrame, by: str) -> pd.DataFrame:
    """Pairs of methods (`by="method"`) or probes (`by="probe"`) whose per-item drops on the same known
    items of the same runs are near-identical (correlation >= SAME_CORRELATION and identical for >=
    SAME_IDENTICAL of the items): the same result twice, shown once and counted once. The later one
    (in the order of `values`) is `same_as` the earlier."""
    k = _known_drops(items)
    cols = ["kind", "value", "same_as", "size", "selection", "correlation", "identical", "n"]
    if k.empty:
        return pd.DataFrame(columns=cols)
    fixed = [c for c in ["size", "selection", "method", "probe"] if c != by]
    key = ["model", "world", "level", "role", "item_id", "seed"]
    rows = []
    for grp, g in k.groupby(fixed, dropna=False, sort=True):
        values = list(dict.fromkeys(g[by]))
        wide = g.pivot_table(index=key, columns=by, values="drop", aggfunc="first")
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                both = wide[[a, b]].dropna()
                if len(both) < 3:
                    continue
                x, y = both[a].to_numpy(), both[b].to_numpy()
                r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else math.nan
                same = float(np.mean(np.abs(x - y) < 1e-9))
                rows.append(
                    {
                        "kind": by,
                        "value": b,
                        "same_as": a,
                        **dict(zip(fixed, grp if isinstance(grp, tuple) else (grp,))),
                        "correlation": r,
                        "identical": same,
                        "n": len(both),
                    }
                )
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=cols)
    out = out[(out["correlation"] >= SAME_CORRELATION) & (out["identical"] >= SAME_IDENTICAL)]
    keep = ["kind", "value", "same_as", *fixed, "correlation", "identical", "n"]
    return out[keep].reset_index(drop=True)


def duplicate_map(dups: pd.DataFrame, order: Sequence[str]) -> dict[tuple, str]:
    """{(size, selection, other, value): the value it repeats}, `other` the fixed method or probe; a
    value repeats the earliest one in `order` it is near-identical to."""
    out: dict[tuple, str] = {}
    rank = {v: i for i, v in enumerate(order)}
    if dups.empty:
        return out
    other = "probe" if (dups["kind"] == "method").all() else "method"
    for r in dups.sort_values("same_as", key=lambda s: s.map(lambda v: rank.get(v, 1e9))).itertuples(
        index=False
    ):
        key = (r.size, r.selection, getattr(r, other), r.value)
        out.setdefault(key, r.same_as)
    return out


# --------------------------------------------------------------------------------------- misalignment


def _target_curve(f: pd.DataFrame) -> pd.DataFrame:
    """Per run, probe and step: normalised generation accuracy of the run's known target items (the
    level of forgetting, from 1 to 0) and the share of its known control items no longer generated."""
    g = f.assign(_gen=f["gen_known"].astype(float))
    acc = g.groupby(["run_id", "probe", "step", "role"])["_gen"].mean().unstack("role")
    out = pd.DataFrame(index=acc.index)
    out["forgetting"] = acc[TARGET] if TARGET in acc else np.nan
    out["control_lost"] = 1.0 - acc[CONTROL] if CONTROL in acc else np.nan
    return out.reset_index().sort_values(["run_id", "probe", "step"])


def _known_pairs(v: pd.DataFrame) -> pd.DataFrame:
    f = ensure_identity(v[v["role"].isin([TARGET, CONTROL])])
    return f[known_at_start(f)]


def forgetting_reach(v: pd.DataFrame, levels: Sequence[float] = READ_LEVELS) -> pd.DataFrame:
    """Per run, probe and level of forgetting L: whether the run's known target items reached
    normalised generation accuracy <= L, at which evaluated step (the first at or below L, where the
    run is read: interpolating between steps would mix two steps' items), the accuracy there, and the
    share of control items lost there (targeted forgetting: fewer than the targets). A run that never
    reaches L is censored at its last step."""
    f = _known_pairs(v)
    cols = [
        *RUN_COLUMNS,
        "probe",
        "forgetting",
        "reached",
        "read_step",
        "forgetting_at_read",
        "control_lost_at_read",
        "last_step",
        "forgetting_end",
    ]
    if f.empty:
        return pd.DataFrame(columns=cols)
    curve = _target_curve(f)
    curve = curve[curve["forgetting"].notna()]
    keys = ["run_id", "probe"]
    ident = f.drop_duplicates(keys)[[*keys, *RUN_COLUMNS[1:]]]
    last = curve.groupby(keys, sort=True).agg(
        last_step=("step", "max"), forgetting_end=("forgetting", "last")
    )
    parts = []
    for level in levels:
        hit = curve[curve["forgetting"] <= level].drop_duplicates(keys, keep="first").set_index(keys)
        hit = hit[["step", "forgetting", "control_lost"]].rename(
            columns={
                "step": "read_step",
                "forgetting": "forgetting_at_read",
                "control_lost": "control_lost_at_read",
            }
        )
        part = last.join(hit, how="left").reset_index()
        part["forgetting"] = float(level)
        part["reached"] = part["read_step"].notna()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True).merge(ident, on=keys, how="left")
    out["read_step"] = out["read_step"].astype(float)
    return out[cols].sort_values([*keys, "forgetting"], ascending=[True, True, False]).reset_index(drop=True)


def reach_summary(reach: pd.DataFrame) -> pd.DataFrame:
    """Per method, selection, probe, size, frequency level and level of forgetting L: how many runs
    reached L, at which steps (first evaluated step at or below L: min, median, max), and where the
    others were censored (their accuracy at their last step, and that step). What the budget allowed,
    stated beside every finding read at L."""
    keys = ["method", "selection", "probe", "size", "level", "forgetting"]
    cols = [*keys, "runs", "runs_reached", "censored", "step_min", "step_median", "step_max",
            "censored_accuracy_max", "last_step_max"]  # fmt: skip
    if reach.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in reach.groupby(keys, sort=True):
        hit = g[g["reached"].astype(bool)]
        cut = g[~g["reached"].astype(bool)]
        steps = hit["read_step"].astype(float)
        rows.append(
            {
                **dict(zip(keys, key)),
                "runs": len(g),
                "runs_reached": len(hit),
                "censored": len(cut),
                "step_min": steps.min() if len(hit) else math.nan,
                "step_median": steps.median() if len(hit) else math.nan,
                "step_max": steps.max() if len(hit) else math.nan,
                "censored_accuracy_max": cut["forgetting_end"].max() if len(cut) else math.nan,
                "last_step_max": g["last_step"].max(),
            }
        )
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(
            ["method", "selection", "probe", "size", "level", "forgetting"], ascending=[True] * 5 + [False]
        )
        .reset_index(drop=True)
    )


def _views(at: pd.DataFrame, base_lp: pd.Series | None) -> pd.DataFrame:
    at = at.assign(forgotten=~at["gen_known"].astype(bool), rank1=at["prob_known"].astype(bool))
    at["truth_ratio"] = at["truth_ratio"].astype(float) < 1.0
    if base_lp is not None:
        idx = pd.MultiIndex.from_frame(at[["run_id", "probe", "item_id"]])
        lp0 = base_lp.reindex(idx).to_numpy(dtype=float)
        lp = at["logprob_per_token"].to_numpy(dtype=float)
        at["logprob"] = np.where(np.isfinite(lp) & np.isfinite(lp0), lp >= lp0 - LOGPROB_MARGIN, np.nan)
    else:
        at["logprob"] = np.nan
    return at


def _base_logprob(f: pd.DataFrame) -> pd.Series | None:
    if "logprob_per_token" not in f:
        return None
    base = f[f["step"] == _first_step(f)].set_index(["run_id", "probe", "item_id"])["logprob_per_token"]
    return base[~base.index.duplicated()]


def misalignment_items(v: pd.DataFrame, levels: Sequence[float] = READ_LEVELS) -> pd.DataFrame:
    """Per target and control item known at the first step and per level of forgetting L, at the step
    its run is read for L (`forgetting_reach`): whether it is no longer generated (`forgotten`) and,
    per likelihood view, whether the model still prefers the true answer. Runs that never reach L have
    no rows for it (their censoring is in `forgetting_reach`)."""
    f = _known_pairs(v)
    cols = RUN_COLUMNS + ["probe", "role", "item_id", "person_id", "forgetting", "step", "forgotten", *VIEWS]
    reach = forgetting_reach(v, levels)
    reach = reach[reach["reached"]] if len(reach) else reach
    if f.empty or reach.empty:
        return pd.DataFrame(columns=cols)
    base_lp = _base_logprob(f)
    at = f.merge(reach[["run_id", "probe", "forgetting", "read_step"]], on=["run_id", "probe"])
    at = at[at["step"] == at["read_step"]]
    return _views(at, base_lp)[cols].reset_index(drop=True)


def misalignment_curve(v: pd.DataFrame) -> pd.DataFrame:
    """Misalignment along the whole forgetting curve: per run, probe, role, step and view, among the
    role's known items no longer generated at that step, the share still preferred by likelihood, with
    95% Wilson bands, against the level of forgetting of the run's targets at that step."""
    f = _known_pairs(v)
    if f.empty:
        return pd.DataFrame()
    curve = _target_curve(f)[["run_id", "probe", "step", "forgetting"]]
    at = _views(f, _base_logprob(f))
    keys = [*RUN_COLUMNS, "probe", "role", "step"]
    rows = []
    for view in VIEWS:
        pref = at["forgotten"] & at[view].fillna(False).astype(bool)
        g = at.assign(_pref=pref, _known_view=at[view].notna()).groupby(keys, dropna=False)
        part = g.agg(
            n_items=("item_id", "size"),
            n_forgotten=("forgotten", "sum"),
            n_preferred=("_pref", "sum"),
            has_view=("_known_view", "any"),
        ).reset_index()
        part = part[part["has_view"]].drop(columns="has_view")
        part["view"] = view
        rows.append(part)
    out = pd.concat(rows, ignore_index=True).merge(curve, on=["run_id", "probe", "step"], how="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share"] = np.where(
            out["n_forgotten"] > 0,
            out["n_preferred"] / out["n_forgotten"].where(out["n_forgotten"] > 0),
            np.nan,
        )
    out["share_lo"], out["share_hi"] = stats.wilson_arrays(out["n_preferred"], out["n_forgotten"])
    return out.sort_values([*keys, "view"]).reset_index(drop=True)


class _Shares:
    """P(view | forgotten) per arm (size, level, role) of one group of misalignment rows, for any
    weights over those rows: the forgotten rows and their arms found once, a view's shares one matrix
    product. An arm without a forgotten item has NaN (0/0 is no estimate, never 0)."""

    def __init__(self, g: pd.DataFrame, arms: list[tuple]) -> None:
        self.arms = arms
        self.mask = g["forgotten"].astype(bool).to_numpy() if len(g) else np.zeros(0, dtype=bool)
        d = g[self.mask] if len(g) else g
        code = {a: i for i, a in enumerate(arms)}
        cols = [d[k].to_numpy() for k in ("size", "level", "role")] if len(d) else [[], [], []]
        self.idx = np.fromiter((code.get(t, -1) for t in zip(*cols)), dtype=np.int64, count=len(d))
        self.values = (
            {view: d[view].fillna(False).astype(float).to_numpy() for view in VIEWS} if len(d) else {}
        )

    def __call__(self, view: str, w: np.ndarray) -> np.ndarray:
        if not len(self.idx):
            return np.full((len(w), len(self.arms)), np.nan)
        keep = self.idx >= 0
        wd = w[:, self.mask][:, keep]
        return stats.weighted_means(wd, self.values[view][keep], self.idx[keep], len(self.arms))


class _Tally:
    """Counts of one group of misalignment rows, computed once: forgotten items per (size, level,
    role), those still preferred per view, the forgotten targets' people per (size, level), and per
    (size, level) the runs that reached the level of forgetting (`reach`)."""

    def __init__(self, g: pd.DataFrame, rr: pd.DataFrame) -> None:
        f = g[g["forgotten"].astype(bool)] if len(g) else g
        key = ["size", "level", "role"]
        self.n = f.groupby(key).size().to_dict() if len(f) else {}
        self.pref = {
            view: f.assign(_v=f[view].fillna(False).astype(bool)).groupby(key)["_v"].sum().to_dict()
            if len(f)
            else {}
            for view in VIEWS
        }
        t = f[f["role"] == TARGET] if len(f) else f
        self.people = (
            {k: set(zip(part["world"], part["person_id"])) for k, part in t.groupby(["size", "level"])}
            if len(t)
            else {}
        )
        seeds = {(int(a), int(b)) for a, b in zip(rr["world"], rr["seed"])}
        self.units = {
            "seeds": len(seeds),
            "n_seeds": len({b for _, b in seeds}),
            "n_worlds": len({a for a, _ in seeds}),
        }
        self.reach = {}
        for (size, level), r in rr.groupby(["size", "level"]):
            reached = r["reached"].to_numpy(dtype=bool)
            lost_c = r["control_lost_at_read"].fillna(0).to_numpy(dtype=float)
            lost_t = 1 - r["forgetting_at_read"].to_numpy(dtype=float)
            self.reach[(size, level)] = {
                "runs": len(r),
                "runs_reached": int(reached.sum()),
                "reached_all": bool(reached.all()),
                "targeted": bool(reached.all() and (lost_c < lost_t).all()),
                "read_step_median": float(np.nanmedian(r["read_step"])) if reached.any() else math.nan,
                "seeds": {(int(a), int(b)) for a, b in zip(r["world"], r["seed"])},
            }

    def count(self, size: str, level: str, role: str) -> int:
        return int(self.n.get((size, level, role), 0))


def _resampled(g: pd.DataFrame, n_boot: int, key: Any) -> stats.Resamples:
    return _weights(g, n_boot, stats.rng_for(0, key))


def _split(df: pd.DataFrame, by: list[str]) -> dict[tuple, pd.DataFrame]:
    """The rows of `df` per value of `by` (one pass, not one scan per group)."""
    if df.empty:
        return {}
    return {k: g.reset_index(drop=True) for k, g in df.groupby(by, sort=False)}


def misalignment(mi: pd.DataFrame, reach: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per cell, frequency level (and `both`: the mean of the levels' shares, so that the mix of levels
    cannot change with size), level of forgetting and view: the raw share of forgotten target items
    still preferred by likelihood (primary), with the hierarchical bootstrap interval and the Wilson
    interval of the pooled counts; the control arm's share where it is informative (some control items
    were lost; else NaN, never 0) and target minus control. A level whose runs did not all reach the
    level of forgetting has no estimate (`reached_all` False; `runs_reached` of `runs` says how many)."""
    rows: list[dict] = []
    if reach.empty:
        return pd.DataFrame()
    mi = ensure_identity(mi) if len(mi) else mi
    by = ["method", "selection", "probe", "size", "forgetting"]
    parts = _split(mi, by)
    for key, rr in reach.groupby(by, sort=True):
        where = dict(zip(by, key))
        g = parts.get(key, mi.iloc[0:0])
        levels = sorted(rr["level"].unique())
        arms = [(where["size"], lv, role) for lv in levels for role in (TARGET, CONTROL)]
        rs = _resampled(g, n_boot, ("misalignment", *key))
        tally, share_of = _Tally(g, rr), _Shares(g, arms)
        for view in VIEWS:
            if len(g) and g[view].isna().all():
                continue
            shares = share_of(view, rs.weights)
            groups = [(lv, [lv]) for lv in levels] + ([("both", levels)] if len(levels) > 1 else [])
            for name, lvls in groups:
                rows.append(_mis_point(tally, rs, shares, arms, lvls, name, view, where))
    return pd.DataFrame(rows)


def _mis_point(tally: _Tally, rs, shares, arms, lvls, name, view, where) -> dict[str, Any]:
    """One row of `misalignment`: the share over `lvls` (one level, or all of them for `both`)."""
    size = where["size"]
    status = [tally.reach.get((size, lv), {"runs": 0, "runs_reached": 0, "reached_all": False,
                                          "targeted": False, "read_step_median": math.nan, "seeds": set()})
              for lv in lvls]  # fmt: skip
    per_t = [tally.count(size, lv, TARGET) for lv in lvls]
    per_c = [tally.count(size, lv, CONTROL) for lv in lvls]
    reached_all = all(st["reached_all"] and st["runs"] for st in status) and min(per_t) > 0
    informative = reached_all and min(per_c) > 0
    cols_t = [arms.index((size, lv, TARGET)) for lv in lvls]
    cols_c = [arms.index((size, lv, CONTROL)) for lv in lvls]
    nan = np.full(len(shares), np.nan)
    share = shares[:, cols_t].mean(axis=1) if reached_all else nan
    ctrl = shares[:, cols_c].mean(axis=1) if informative else nan
    nt, nc = min(per_t), min(per_c)
    share0, lo, hi, _ = _interval(rs, share, nt)
    diff0, dlo, dhi, _ = _interval(rs, share - ctrl, min(nt, nc))
    kt = sum(int(tally.pref[view].get((size, lv, TARGET), 0)) for lv in lvls)
    wl, wh = stats.wilson(kt, sum(per_t)) if len(lvls) == 1 else (math.nan, math.nan)
    people = set().union(*(tally.people.get((size, lv), set()) for lv in lvls))
    return {
        **{k: where[k] for k in ("method", "selection", "probe", "size")},
        "level": name,
        "forgetting": where["forgetting"],
        "view": view,
        "runs": sum(st["runs"] for st in status),
        "runs_reached": sum(st["runs_reached"] for st in status),
        "reached_all": reached_all,
        "read_step_median": status[0]["read_step_median"] if len(lvls) == 1 else math.nan,
        "targeted": all(st["targeted"] for st in status),
        "seeds": len(set().union(*(st["seeds"] for st in status))),
        "n_forgotten": sum(per_t),
        "n_min": nt,
        "n_preferred": kt,
        "n_people": len(people),
        "share": share0,
        "share_lo": lo,
        "share_hi": hi,
        "wilson_lo": wl,
        "wilson_hi": wh,
        "control": bool(informative),
        "n_control_forgotten": sum(per_c),
        "control_share": float(ctrl[0]),
        "diff": diff0,
        "diff_lo": dlo,
        "diff_hi": dhi,
    }


def size_trend(
    mi: pd.DataFrame, reach: pd.DataFrame, params: dict[str, float], n_boot: int = 1000
) -> pd.DataFrame:
    """Finding 2: per method, selection, probe, frequency level (and `both`: levels averaged), level of
    forgetting, view and measure (`share`: the raw share, primary; `minus control`: target minus
    control share, only where every size has an informative control), the least-squares slope of the
    share against log(parameters) over sizes, per e-fold of parameters. Interval: the hierarchical
    bootstrap (the same people and seeds at every size: a seed drawn brings all its sizes) and a
    t-interval over the per-seed slopes. Every studied size must have an estimate: a size whose runs
    did not all reach the level of forgetting makes the slope "no estimate", the censoring named."""
    rows = []
    if reach.empty:
        return pd.DataFrame()
    reach = reach[reach["size"].isin(list(params))]
    mi = ensure_identity(mi) if len(mi) else mi
    mi = mi[mi["size"].isin(list(params))] if len(mi) else mi
    by = ["method", "selection", "probe", "forgetting"]
    parts = _split(mi, by)
    for key, rr in reach.groupby(by, sort=True):
        where = dict(zip(by, key))
        g = parts.get(key, mi.iloc[0:0])
        sizes = [s for s in params if s in set(rr["size"])]
        levels = sorted(rr["level"].unique())
        x = np.log([params[s] for s in sizes])
        arms = [(s, lv, role) for s in sizes for lv in levels for role in (TARGET, CONTROL)]
        rs = _resampled(g, n_boot, ("trend", *key))
        tally = _Tally(g, rr)
        units = sorted({(int(a), int(b)) for a, b in zip(rr["world"], rr["seed"])})
        unit_w = (
            np.stack([_unit_weights(g, u)[0] for u in units]) if len(g) and units else np.ones((0, len(g)))
        )
        share_of = _Shares(g, arms)
        for view in VIEWS:
            if len(g) and g[view].isna().all():
                continue
            shares = share_of(view, rs.weights)
            by_unit = share_of(view, unit_w) if len(unit_w) else np.zeros((0, len(arms)))
            groups = [(lv, [lv]) for lv in levels] + ([("both", levels)] if len(levels) > 1 else [])
            for name, lvls in groups:
                for measure in ("share", "minus control"):
                    rows.append(
                        _trend_row(
                            tally,
                            rs,
                            sizes,
                            x,
                            arms,
                            shares,
                            by_unit,
                            lvls,
                            name,
                            measure,
                            {**where, "view": view},
                            rr,
                        )  # fmt: skip
                    )
    out = pd.DataFrame(rows)
    if len(out):
        out["verdict"] = [
            verdict(
                r.slope, r.slope_lo, r.slope_hi, 1, n_min=r.n_min, targeted=r.targeted,
                seed_lo=r.slope_seed_lo, seed_hi=r.slope_seed_hi, n_seeds=r.seeds,
            )
            if r.selection == "known"
            else DESCRIPTIVE
            for r in out.itertuples(index=False)
        ]  # fmt: skip
    return out


def _unit_weights(g: pd.DataFrame, unit: tuple) -> np.ndarray:
    world, seed = unit
    if g.empty:
        return np.ones((1, 0))
    return ((g["world"].to_numpy() == world) & (g["seed"].to_numpy() == seed)).astype(float)[None, :]


def _trend_row(tally, rs, sizes, x, arms, shares, by_unit, lvls, name, measure, where, rr) -> dict[str, Any]:
    """One slope of `size_trend`: per size the level-averaged share (or share minus control share)."""
    censored, n_min, informative, targeted = [], math.inf, True, True
    for s in sizes:
        for lv in lvls:
            st = tally.reach.get((s, lv))
            nt = tally.count(s, lv, TARGET)
            if st is None or not st["reached_all"] or nt == 0:
                reached = f"{st['runs_reached']} of {st['runs']}" if st else "0 of 0"
                censored.append(f"{lv} at {s}: {reached} runs reached it")
            elif not st["targeted"]:
                targeted = False
            n_min = min(n_min, nt)
            if measure == "minus control" and tally.count(s, lv, CONTROL) == 0:
                informative = False

    def per_size(sh: np.ndarray) -> np.ndarray:
        cols = []
        for s in sizes:
            y = sh[:, [arms.index((s, lv, TARGET)) for lv in lvls]].mean(axis=1)
            if measure == "minus control":
                y = y - sh[:, [arms.index((s, lv, CONTROL)) for lv in lvls]].mean(axis=1)
            cols.append(y)
        return np.column_stack(cols) if cols else np.zeros((len(sh), 0))

    y = per_size(shares)
    ok = len(sizes) >= 2 and not censored and informative and bool(np.isfinite(y[0]).all())
    sl = stats.slope(x, y) if ok else np.full(len(y), np.nan)
    n_min = int(n_min) if np.isfinite(n_min) else 0
    est, lo, hi, p_slope = _interval(rs, sl, n_min)
    yu = per_size(by_unit) if len(by_unit) else np.zeros((0, len(sizes)))
    per_seed = stats.slope(x, yu[np.isfinite(yu).all(axis=1)]) if ok and len(yu) else []
    seed_ci = stats.t_interval(per_seed)
    people = set().union(*(tally.people.get((s, lv), set()) for s in sizes for lv in lvls))
    return {
        **{k: where[k] for k in ("method", "selection", "probe")},
        "level": name,
        "forgetting": where["forgetting"],
        "view": where["view"],
        "measure": measure,
        "sizes": len(sizes),
        **tally.units,
        "n_people": len(people),
        "n_forgotten": sum(tally.count(s, lv, TARGET) for s in sizes for lv in lvls),
        "n_min": n_min,
        "control": informative,
        "censored": "; ".join(censored),
        "targeted": targeted,
        "slope": est,
        "slope_lo": lo,
        "slope_hi": hi,
        "slope_p": p_slope,
        "slope_seed_lo": seed_ci[1],
        "slope_seed_hi": seed_ci[2],
        "points": ", ".join(f"{s}: {v:.3f}" for s, v in zip(sizes, y[0])),
    }


# ----------------------------------------------------------------------- primary endpoint and families


@dataclass
class Primary:
    """The declared primary endpoint of each finding (`study.primary`, defaults resolved).

    Finding 1: the total frequency effect (or, on an exposure grid of three or more levels, the slope
    against log frequency) on `probe`, known items, `method`, `size` ("all": every size pooled, the
    models of every size units of one interval). Finding 2: the slope of the raw misalignment share
    against log parameters at `forgetting`, in the `view` likelihood view, frequency levels averaged
    ("both"), on `misalignment_probe` and `method`."""

    method: str
    probe: str = "question"
    size: str = "all"
    grid: bool = False
    view: str = "rank1"
    forgetting: float = 0.5
    misalignment_probe: str = "question"
    misalignment_level: str = "both"


def resolve_primary(
    config: dict[str, Any] | None, methods: Sequence[str], sizes: Sequence[str], levels: Sequence[str]
) -> Primary:
    """`study.primary` as recorded (a dict; missing fields take their defaults): the first method
    listed, every size pooled when there are several, the slope when the levels are a grid of >= 3
    exposures."""
    cfg = dict(config or {})
    grid = len(levels) >= 3 and all(_is_number(lv) for lv in levels)
    size = cfg.get("frequency_size") or ("all" if len(sizes) > 1 else (sizes[0] if sizes else "all"))
    return Primary(
        method=cfg.get("method") or (methods[0] if methods else ""),
        probe=cfg.get("frequency_probe") or "question",
        size=str(size),
        grid=grid,
        view=cfg.get("misalignment_view") or "rank1",
        forgetting=float(cfg.get("misalignment_forgetting") or 0.5),
        misalignment_probe=cfg.get("misalignment_probe") or "question",
        misalignment_level="both" if len(levels) > 1 else (levels[0] if levels else "both"),
    )


def _is_number(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


# (table, estimate, lo, hi, p, expected sign, what it is, unit, null on the estimate's scale)
_FAMILY_1 = [
    (
        "frequency_effect",
        "effect",
        "effect_lo",
        "effect_hi",
        "effect_p",
        -1,
        "total frequency effect",
        "budget",
    ),
    (
        "mediation",
        "direct",
        "direct_lo",
        "direct_hi",
        "direct_p",
        -1,
        "direct effect (at equal margin)",
        "budget",
    ),
    (
        "mediation",
        "indirect",
        "indirect_lo",
        "indirect_hi",
        "indirect_p",
        -1,
        "indirect effect (through margin)",
        "budget",
    ),
    ("hazard_ratio", "hr", "hr_lo", "hr_hi", "p", -1, "hazard ratio of first loss, high vs low", "ratio"),
    ("dose_response", "slope", "slope_lo", "slope_hi", "slope_p", -1, "slope against log frequency", "efold"),
]


def _duplicate_of(
    dups: dict[tuple, str], size: str, selection: str, probe: str, method: str, sizes: Sequence[str]
) -> str | None:
    """The method this one repeats in a cell (for pooled sizes: the same one at every size)."""
    if size != "all":
        return dups.get((size, selection, probe, method))
    found = {dups.get((s, selection, probe, method)) for s in sizes}
    return found.pop() if len(found) == 1 and None not in found else None


def _family_rows(
    t: dict[str, pd.DataFrame], primary: Primary, dups: dict, probe_dups: dict, sizes: Sequence[str]
) -> list[dict]:
    rows = []
    for table, est, lo, hi, p, expected, what, unit in _FAMILY_1:
        df = t.get(table, pd.DataFrame())
        if df.empty:
            continue
        for idx, r in df.iterrows():
            if r["selection"] != "known" or not bool(r.get("control", True)):
                continue
            if table == "dose_response" and bool(r["per_efold_of_effect"]):
                continue  # the effect divided by ln(frequency ratio): the same result, not counted
            label = what + (", margin-matched" if table == "frequency_effect" and bool(r["matched"]) else "")
            is_primary = (
                r["method"] == primary.method
                and r["probe"] == primary.probe
                and str(r["size"]) == primary.size
                and ((table == "dose_response") == primary.grid)
                and table in ("frequency_effect", "dose_response")
                and not bool(r.get("matched", False))
            )
            n_min = r["n_min"]
            if table == "hazard_ratio":
                n_min = min(r["n_high"], r["n_low"])
            rows.append(
                {
                    "finding": "1",
                    "table": table,
                    "row": idx,
                    "comparison": label,
                    "size": r["size"],
                    "method": r["method"],
                    "probe": r["probe"],
                    "estimate": float(r[est]),
                    "lo": float(r[lo]),
                    "hi": float(r[hi]),
                    "p": float(r[p]),
                    "expected": expected,
                    "log_scale": unit == "ratio",
                    "unit": unit,
                    "n_min": float(n_min),
                    "n_people": int(r.get("n_people", 0)),
                    "n_seeds": int(r.get("n_seeds", 0)),
                    "n_seed_units": int(r.get("seeds", 0)) if table != "hazard_ratio" else 0,
                    # The hazard ratio has no per-seed interval (it is stratified by model instead).
                    "seed_lo": float(r.get(f"{est}_seed_lo", math.nan)),
                    "seed_hi": float(r.get(f"{est}_seed_hi", math.nan)),
                    "targeted": bool(r.get("targeted", True)),
                    "moved": bool(r.get("moved", True)),
                    "primary": bool(is_primary),
                    "same_as": _duplicate_of(dups, str(r["size"]), "known", r["probe"], r["method"], sizes),
                    "same_probe_as": _duplicate_of(
                        probe_dups, str(r["size"]), "known", r["method"], r["probe"], sizes
                    ),
                }
            )
    trend = t.get("size_trend", pd.DataFrame())
    for idx, r in trend.iterrows() if len(trend) else []:
        if r["selection"] != "known":
            continue
        is_primary = (
            r["method"] == primary.method
            and r["probe"] == primary.misalignment_probe
            and r["view"] == primary.view
            and r["level"] == primary.misalignment_level
            and r["measure"] == "share"
            and math.isclose(float(r["forgetting"]), primary.forgetting)
        )
        rows.append(
            {
                "finding": "2",
                "table": "size_trend",
                "row": idx,
                "comparison": f"misalignment slope ({VIEWS[r['view']]}; {r['measure']}; level {r['level']}; "
                f"forgetting {r['forgetting']:g})",
                "size": "all",
                "method": r["method"],
                "probe": r["probe"],
                "estimate": float(r["slope"]),
                "lo": float(r["slope_lo"]),
                "hi": float(r["slope_hi"]),
                "p": float(r["slope_p"]),
                "expected": 1,
                "log_scale": False,
                "unit": "share_efold",
                "n_min": float(r["n_min"]),
                "n_people": int(r["n_people"]),
                "n_seeds": int(r["n_seeds"]),
                "n_seed_units": int(r["seeds"]),
                "seed_lo": float(r["slope_seed_lo"]),
                "seed_hi": float(r["slope_seed_hi"]),
                "targeted": bool(r["targeted"]),
                "moved": True,
                "primary": bool(is_primary),
                "same_as": _duplicate_of(dups, "all", "known", r["probe"], r["method"], sizes),
                "same_probe_as": _duplicate_of(probe_dups, "all", "known", r["method"], r["probe"], sizes),
            }
        )
    return rows


def families(
    tables: dict[str, pd.DataFrame],
    primary: Primary,
    dups: pd.DataFrame,
    sizes: Sequence[str],
    methods: Sequence[str],
) -> tuple[dict[str, dict[str, Any] | None], pd.DataFrame]:
    """Each finding's primary row and its exploratory family.

    Every `known` comparison with a control arm except the primary is exploratory; within each
    finding's family the tested ones (those whose preconditions hold) are Holm-adjusted together and
    worded from the adjusted p-value. A method whose per-item drops repeat another's
    (`near_identical`) is the same result: listed with the one it repeats (`same_as`), not counted and
    given that one's word. Writes `role`, `p_holm` and the final `verdict` back into the source tables
    (so every table, sentence and findings.json says the same word) and returns ({finding: primary row
    or None}, the family table)."""
    dmap = duplicate_map(dups[dups["kind"] == "method"] if len(dups) else dups, methods)
    pmap = duplicate_map(dups[dups["kind"] == "probe"] if len(dups) else dups, PROBE_ORDER)
    rows = pd.DataFrame(_family_rows(tables, primary, dmap, pmap, sizes))
    primaries: dict[str, dict[str, Any] | None] = {"1": None, "2": None}
    if rows.empty:
        return primaries, rows
    scale = np.where(
        rows["log_scale"], np.log(rows["estimate"].where(rows["estimate"] > 0)), rows["estimate"]
    )
    rows["tested"] = [
        precondition(e, n_min=n, targeted=tg, moved=mv) is None
        for e, n, tg, mv in zip(scale, rows["n_min"], rows["targeted"], rows["moved"])
    ]
    repeat = rows["same_as"].notna() | rows["same_probe_as"].notna()
    rows["counted"] = ~rows["primary"] & ~repeat & rows["tested"]
    rows["p_holm"] = np.nan
    for finding in ("1", "2"):
        fam = rows.index[(rows["finding"] == finding) & rows["counted"]]
        rows.loc[fam, "p_holm"] = stats.holm(rows.loc[fam, "p"].to_numpy())
    words = []
    for r, e in zip(rows.itertuples(index=False), scale):
        lo, hi = (math.log(r.lo), math.log(r.hi)) if r.log_scale and r.lo > 0 else (r.lo, r.hi)
        kw = dict(
            n_min=r.n_min,
            targeted=r.targeted,
            moved=r.moved,
            seed_lo=r.seed_lo,
            seed_hi=r.seed_hi,
            n_seeds=r.n_seed_units,
        )
        if r.primary:
            words.append(verdict(e, lo, hi, r.expected, **kw))
        else:
            words.append(adjusted_verdict(e, r.p_holm, r.expected, **kw))
    rows["verdict"] = words
    # A repeat takes the word of the row it repeats (same table, cell and comparison).
    base = ["finding", "table", "comparison", "size"]
    first = rows[~repeat].set_index([*base, "probe", "method"])["verdict"]
    first = first[~first.index.duplicated()]
    for i in rows.index[repeat]:
        r = rows.loc[i]
        probe = r["same_probe_as"] if isinstance(r["same_probe_as"], str) else r["probe"]
        method = r["same_as"] if isinstance(r["same_as"], str) else r["method"]
        k = (*r[base], probe, method)
        if k in first.index:
            rows.loc[i, "verdict"] = first.loc[k]
    rows["role"] = np.where(
        rows["primary"],
        "primary",
        np.where(repeat, "repeat", np.where(rows["counted"], "exploratory", "not tested")),
    )
    for table, part in rows.groupby("table"):
        df = tables[table]
        for col in ("role", "p_holm"):
            if col not in df:
                df[col] = np.nan if col == "p_holm" else "descriptive"
        col = "verdict" if table != "mediation" else None
        for r in part.itertuples(index=False):
            name = r.comparison.split(" ")[0] if table == "mediation" else None
            target_col = f"{name}_verdict" if name else col
            if target_col and target_col not in df:
                df[target_col] = DESCRIPTIVE
            if name:
                df.loc[r.row, f"{name}_p_holm"] = r.p_holm
                df.loc[r.row, target_col] = r.verdict
                continue
            df.loc[r.row, "role"] = r.role
            df.loc[r.row, "p_holm"] = r.p_holm
            df.loc[r.row, target_col] = r.verdict
    for finding in ("1", "2"):
        hit = rows[(rows["finding"] == finding) & rows["primary"]]
        if len(hit):
            primaries[finding] = {**hit.iloc[0].to_dict(), "row_index": hit.iloc[0]["row"]}
    return primaries, rows.drop(columns=["row"]).reset_index(drop=True)
