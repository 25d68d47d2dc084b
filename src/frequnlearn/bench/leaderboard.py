"""The leaderboard: one row per method, from the per-item records of the benchmark's study.

Every number comes from the report's own analysis of the study (`report.build.context`): the
frequency gap is the report's total frequency effect (net drop of the frequent level minus net drop of
the rare one, each control-subtracted, over the levels' common step range; its interval the
hierarchical bootstrap over worlds, seeds, people and items), recovery and forget quality its
robustness tables. Membership inference and extraction are read here from the same trajectories: the
forget items at each run's stopping point against the never-learned model's scores of the same items.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

# Attacks whose recovery the leaderboard shows (where the study ran them), and their column names.
ATTACKS = {"targeted": "relearn_targeted", "benign": "relearn_benign", "int4": "int4"}
# The membership score the leaderboard shows (the others go to mia.csv).
MIA_SCORE = "mia_minkpp"


def _short(level: str, high: str, low: str) -> str:
    return "high" if level == high else "low" if level == low else level


def leaderboard(
    ctx: Any,
    chosen: dict[str, Any],
    target: float,
    tolerance: float,
    selection: str = "known",
    probe: str = "question",
) -> pd.DataFrame:
    """One row per method, most equal forgetting first (smallest |frequency gap|; no estimate last)."""
    t, lay = ctx.tables, ctx.lay
    high, low = lay.high, lay.low
    eff = t["frequency_effect"]
    if len(eff):
        eff = eff[~eff["matched"].astype(bool) & (eff["selection"] == selection) & (eff["probe"] == probe)]
    curves = t["curves"]
    costs = stopping_costs(curves[curves["selection"] == selection])
    rows = []
    for method in lay.methods:
        row: dict[str, Any] = {"method": method}
        e = eff[eff["method"] == method] if len(eff) else eff
        if len(e):
            r = e.iloc[0]
            row.update(
                frequency_gap=r["effect"],
                gap_lo=r["effect_lo"],
                gap_hi=r["effect_hi"],
                gap_verdict=r.get("verdict", ""),
                forgetting_high=r["net_drop_high"],
                forgetting_high_lo=r["net_drop_high_lo"],
                forgetting_high_hi=r["net_drop_high_hi"],
                forgetting_low=r["net_drop_low"],
                forgetting_low_lo=r["net_drop_low_lo"],
                forgetting_low_hi=r["net_drop_low_hi"],
                seeds=int(r["seeds"]),
                n_high=int(r["n_high"]),
                n_low=int(r["n_low"]),
            )
        else:
            row.update(frequency_gap=math.nan, gap_lo=math.nan, gap_hi=math.nan, gap_verdict="no estimate")
        settings = chosen.get(method, {}).get("settings", {})
        row["lr"] = settings.get("lr", math.nan)
        row["tuned"] = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "lr")
        c = costs[costs["method"] == method]
        row["retain_cost"] = float(c["retain"].mean()) if len(c) else math.nan
        row["utility_cost"] = float(c["utility"].mean()) if len(c) else math.nan
        row["cost_matched"] = bool(
            np.isfinite(row["retain_cost"]) and abs(row["retain_cost"] - target) <= tolerance + 1e-9
        )
        row["tuning_retain_cost"] = chosen.get(method, {}).get("retain_drop", math.nan)
        rows.append(row)
    board = pd.DataFrame(rows)
    for per_level in _per_level(ctx, selection, probe).values():
        board = board.merge(per_level, on="method", how="left") if len(per_level) else board
    board["_order"] = board["frequency_gap"].abs().fillna(math.inf)
    board = (
        board.sort_values(["_order", "method"], kind="stable").drop(columns="_order").reset_index(drop=True)
    )
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    rename = {}
    for col in board.columns:
        for lv, short in ((high, "high"), (low, "low")):
            if col.endswith(f"_{short}") or f"_{short}_" in col:
                rename[col] = col.replace(f"_{short}", f"_{lv}", 1)
    return board.rename(columns=rename)


def stopping_costs(curves: pd.DataFrame, probe: str = "question") -> pd.DataFrame:
    """Per unlearning run: the retain and utility accuracy drop at its stopping point (1 - normalised
    accuracy at its last evaluated step), the cost the tuning matched."""
    c = curves[(curves["probe"] == probe) & curves["role"].isin(["retain", "utility"])]
    if c.empty:
        return pd.DataFrame(columns=["run_id", "method", "level", "seed", "retain", "utility"])
    last = c[c["step"] == c.groupby("run_id")["step"].transform("max")]
    wide = last.pivot_table(index=["run_id", "method", "level", "seed"], columns="role", values="acc_norm")
    out = (1.0 - wide).reset_index()
    for role in ("retain", "utility"):
        if role not in out:
            out[role] = math.nan
    return out


def _per_level(ctx: Any, selection: str, probe: str) -> dict[str, pd.DataFrame]:
    """method -> columns per level: forgotten at the stopping point, forget quality, recovery under
    each attack that ran, MIA AUC and extraction probability."""
    t, lay = ctx.tables, ctx.lay
    high, low = lay.high, lay.low
    out: dict[str, pd.DataFrame] = {}

    def wide(df: pd.DataFrame, value: str, name: str) -> pd.DataFrame:
        df = df[df["level"].isin([high, low])]
        if df.empty:
            return pd.DataFrame()
        m = df.groupby(["method", "level"])[value].mean().unstack("level")
        m.columns = [f"{name}_{_short(str(lv), high, low)}" for lv in m.columns]
        return m.reset_index()

    s = t["summaries"]
    if len(s):
        s = s[(s["selection"] == selection) & (s["probe"] == probe)].assign(
            forgotten=lambda d: 1.0 - d["forget_end"]
        )
        out["forgotten"] = wide(s, "forgotten", "forgotten_end")
    fq = t.get("forget_quality", pd.DataFrame())
    if len(fq):
        out["forget_quality"] = wide(fq[fq["selection"] == selection], "forget_quality", "forget_quality")
    at = t.get("attacks", pd.DataFrame())
    if len(at):
        at = at[at["selection"] == selection]
        for attack, name in ATTACKS.items():
            a = at[at["attack"] == attack]
            if len(a):
                a = a[a["k"] == a.groupby(["method", "level"])["k"].transform("max")]
                out[name] = wide(a, "recovered_of_known", name)
    mia, ext = still_known(ctx.data, selection, probe)
    if len(mia):
        out["mia"] = wide(mia[mia["score"] == MIA_SCORE], "auc", "mia_auc")
    if len(ext):
        out["extract"] = wide(ext, "extract_pn", "extract")
    return out


def still_known(
    data: Any, selection: str = "known", probe: str = "question"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per unlearning run and level, at its stopping point: the membership AUC of each score (forget
    items under the unlearned model against the same items under the never-learned oracle: 0.5 when
    they look never seen) and the mean probability that n samples give the answer back."""
    from frequnlearn.evaluate.families.mia import SCORES, mia_auc

    traj = data.trajectories
    if "family" not in traj.columns:
        return pd.DataFrame(), pd.DataFrame()
    f = traj[(traj["role"] == "forget") & (traj["probe"] == probe) & (traj["selection"] == selection)]
    f = f[f["step"] == f.groupby("run_id")["step"].transform("max")]
    oracles = data.scores("oracle")
    mia_rows, ext_rows = [], []
    for run_id, g in f.groupby("run_id", sort=True):
        ident = {k: g[k].iloc[0] for k in ("method", "level", "seed", "model")}
        m = g[g["family"] == "mia"]
        orc = oracles.get(str(ident["model"]))
        if len(m) and orc is not None and "family" in orc.columns:
            ref = orc[(orc["family"] == "mia") & (orc["probe"] == probe) & orc["item_id"].isin(m["item_id"])]
            for score in SCORES:
                if score in m.columns and score in ref.columns:
                    mia_rows.append(
                        {
                            **ident,
                            "run_id": run_id,
                            "score": score,
                            "n_items": len(m),
                            "auc": mia_auc(m[score].to_numpy(), ref[score].to_numpy()),
                        }
                    )
        x = g[g["family"] == "extract"]
        if len(x) and "extract_pn" in x.columns:
            ext_rows.append(
                {
                    **ident,
                    "run_id": run_id,
                    "n_items": len(x),
                    "extract_p": float(x["extract_p"].mean()),
                    "extract_pn": float(x["extract_pn"].mean()),
                }
            )
    return pd.DataFrame(mia_rows), pd.DataFrame(ext_rows)
