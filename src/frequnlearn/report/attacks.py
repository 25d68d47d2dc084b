"""The report's robustness numbers: what came back after each attack, and how far from never-learned.

From the per-item scores the study's `oracle` and `attack` stages wrote (as `rundata.load_run` read
them), verdicts with the one "known" definition, then the recovery table (one row per run, attack and
step count) and the forget-quality table (each run's forget items against the never-learned model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from frequnlearn.attacks.quality import above_oracle, forget_quality, recovery

RELEARN_ORDER = ["targeted", "benign", "bio"]
ATTACK_ORDER = [*RELEARN_ORDER, "int8", "int4", "nf4"]
IDENT = ["size", "method", "selection", "level"]
# Columns the attack stage adds to evaluation rows.
ATTACK_COLUMNS = ["attack", "scheme", "k", "attacked"]


def _known(scores: pd.DataFrame, probe: str, gen_threshold: float) -> pd.DataFrame:
    """Verdicts of one model's rows (one attack step, or one model's baseline) on `probe`."""
    from frequnlearn.evaluate.misalignment import verdicts

    v = verdicts(
        scores.drop(columns=[c for c in ATTACK_COLUMNS if c in scores.columns]), gen_threshold=gen_threshold
    )
    return v[v["probe"] == probe]


def model_known(scores: dict[str, pd.DataFrame], probe: str, gen_threshold: float) -> pd.DataFrame:
    """(model, item_id) -> known and truth_ratio, from each model's baseline or oracle scores."""
    frames = []
    for tag, df in sorted(scores.items()):
        v = _known(df, probe, gen_threshold)
        frames.append(
            pd.DataFrame(
                {
                    "model": tag,
                    "item_id": v["item_id"].to_numpy(),
                    "known": v["gen_known"].astype(bool).to_numpy(),
                    "truth_ratio": v["truth_ratio"].to_numpy(),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "item_id", "known", "truth_ratio"])
    )


def recovery_table(
    attacks: pd.DataFrame, before: pd.DataFrame, oracle: pd.DataFrame, probe: str, gen_threshold: float
) -> pd.DataFrame:
    """One row per (run, attack, k): the recovery shares of `quality.recovery` plus the oracle floor."""
    rows = []
    if attacks.empty:
        return pd.DataFrame()
    before_by = before.set_index(["model", "item_id"])["known"]
    oracle_by = oracle.set_index(["model", "item_id"])["known"] if len(oracle) else pd.Series(dtype=bool)
    # One verdict call for every evaluated model state: each (run, attack, k, attacked) its own "run".
    state = attacks[["run_id", "attack", "k", "attacked"]].astype(str).agg("\x1f".join, axis=1)
    v = _known(attacks.assign(run_id=state), probe, gen_threshold)
    v[["_run", "attack", "k", "attacked"]] = v["run_id"].str.split("\x1f", expand=True).to_numpy()
    v["k"], v["attacked"] = v["k"].astype(int), v["attacked"] == "True"
    for (run_id, attack), grp in v.groupby(["_run", "attack"], sort=False):
        model = grp["model"].iloc[0]
        ident = {c: grp[c].iloc[0] for c in ["size", "seed", "method", "selection", "level"]}
        known = {
            (int(k), bool(attacked)): sub.set_index("item_id")["gen_known"].astype(bool)
            for (k, attacked), sub in grp.groupby(["k", "attacked"], sort=True)
        }
        unlearned = next(v for (_, attacked), v in known.items() if not attacked)
        for (k, attacked_flag), attacked in known.items():
            if not attacked_flag:
                continue
            ids = attacked.index
            known_before = pd.Series([before_by.get((model, i), math.nan) for i in ids], index=ids)
            rec = recovery(known_before, unlearned.reindex(ids), attacked)
            known_oracle = _share(oracle_by, model, list(ids))
            rows.append(
                {
                    **ident,
                    "run_id": run_id,
                    "attack": attack,
                    "k": k,
                    **rec,
                    "known_oracle": known_oracle,
                    "above_oracle": above_oracle(rec["known_attacked"], rec["known_before"], known_oracle),
                }
            )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (size, method, selection, level, attack, k)."""
    if table.empty:
        return table
    num = [
        "n_items",
        "known_before",
        "known_unlearned",
        "known_attacked",
        "known_oracle",
        "n_lost",
        "n_recovered",
        "recovered_share",
        "recovered_of_known",
        "above_oracle",
    ]
    out = table.groupby([*IDENT, "attack", "k"], sort=False)[num].mean().reset_index()
    for col in ("n_items", "n_lost", "n_recovered"):  # counts stay integers with a single seed
        if (out[col] == out[col].round()).all():
            out[col] = out[col].astype(int)
    out.insert(len(IDENT) + 2, "seeds", table.groupby([*IDENT, "attack", "k"], sort=False).size().to_numpy())
    return out


def _share(flags: pd.Series, model: str, ids: Sequence[str]) -> float:
    """Mean of a (model, item_id)-indexed flag over `ids` (NaN when none is there)."""
    got = [float(flags[(model, i)]) for i in ids if (model, i) in flags.index]
    return sum(got) / len(got) if got else math.nan


def quality_table(
    trajectories: pd.DataFrame, oracle: pd.DataFrame, before: pd.DataFrame, probe: str, gen_threshold: float
) -> pd.DataFrame:
    """Per run, the forget items against the never-learned floor: known before, at the end of unlearning
    and by the oracle, and forget quality: KS test of their truth ratios against the oracle's, at the
    end of unlearning and (as a reference the test must reject) before it."""
    rows = []
    if oracle.empty:
        return pd.DataFrame()
    tr_oracle = oracle.set_index(["model", "item_id"])["truth_ratio"]
    tr_before = before.set_index(["model", "item_id"])["truth_ratio"]
    known_oracle = oracle.set_index(["model", "item_id"])["known"]
    known_before = before.set_index(["model", "item_id"])["known"]
    forget = trajectories[trajectories["role"] == "forget"]
    last = forget[forget["step"] == forget.groupby("run_id")["step"].transform("max")]
    for _, end in _known(last, probe, gen_threshold).groupby("run_id", sort=True):
        info = end.iloc[0]
        model = info["model"]
        ids = list(end["item_id"])
        orc = [tr_oracle.get((model, i), math.nan) for i in ids]
        bef = [tr_before.get((model, i), math.nan) for i in ids]
        ks_end, p_end, n = forget_quality(end["truth_ratio"], orc)
        ks_bef, p_bef, _ = forget_quality(bef, orc)
        rows.append(
            {
                "size": info["size"],
                "method": info["method"],
                "selection": info["selection"],
                "level": str(info["level"]),
                "seed": int(info["seed"]),
                "n_items": n,
                "known_before": _share(known_before, model, ids),
                "known_unlearned": float(end["gen_known"].mean()) if len(end) else math.nan,
                "known_oracle": _share(known_oracle, model, ids),
                "truth_ratio_before": float(pd.Series(bef, dtype=float).median()),
                "truth_ratio_unlearned": float(end["truth_ratio"].median()),
                "truth_ratio_oracle": float(pd.Series(orc, dtype=float).median()),
                "ks_before": ks_bef,
                "p_before": p_bef,
                "ks_unlearned": ks_end,
                "forget_quality": p_end,
            }
        )
    return pd.DataFrame(rows)


def tables(data: Any, probe: str, gen_threshold: float) -> dict[str, pd.DataFrame]:
    """The robustness tables of a loaded run (`rundata.RunData`): `attacks` (recovery per size, method,
    selection, level, attack and step count, means over seeds) and `forget_quality` (per run)."""
    before = model_known(data.scores("baseline"), probe, gen_threshold)
    oracle = model_known(data.scores("oracle"), probe, gen_threshold)
    return {
        "attacks": summarise(recovery_table(data.attack_scores, before, oracle, probe, gen_threshold)),
        "forget_quality": quality_table(data.trajectories, oracle, before, probe, gen_threshold),
    }
