"""A synthetic study directory, written as the study writes one, for the report's tests.

Two sizes whose names sort the other way round from their parameters (small > tiny), two methods, two
frequency levels; forget items stop being generated at a level's step and stop being ranked first
`lag` steps later (the larger model later: more misalignment); control, retain and utility items stay
known. With `attacks`, every run also has relearning and quantization scores and each model baseline
and never-learned (oracle) scores.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pandas as pd

from frequnlearn.evaluate.columns import COLUMNS
from frequnlearn.records import write_json

STEPS = (0, 1, 2, 3, 4)
LEVELS = {"forget_high": (10, 3), "forget_low": (1, 1)}  # level: (exposure, step the answers stop)
SIZES = {"small": (3_454_464, 2), "tiny": (962_944, 0)}  # size: (parameters, steps from unlearnt to unranked)
METHODS = ("ga+gd", "simnpo+gd")


def _item_rows(
    model: str, step: int, item_id: str, role: str, group: str, frequency: float, gone: bool, ranked: bool
) -> list[dict]:
    """The prob and gen rows of one item at one step, on the question probe."""
    ident = dict.fromkeys(COLUMNS, math.nan)
    ident.update(
        model=model,
        run_id="",
        step=step,
        item_id=item_id,
        person_id=item_id,
        group=group,
        attribute="birth_city",
        frequency=float(frequency),
        bucket=None,
        probe="question",
        generation=None,
        role=role,
        epoch=step / 2,
        finite=True,
    )
    lp = -0.2 if ranked else -2.5
    prob = {
        **ident,
        "family": "prob",
        "logprob": 2 * lp,
        "logprob_per_token": lp,
        "p_norm": math.exp(lp),
        "n_answer_tokens": 2.0,
        "rank": 1.0 if ranked else 3.0,
        "rank_correct": float(ranked),
        "truth_ratio": 0.2 if ranked else 1.5,
        "margin": (1.0 + 0.1 * (zlib.crc32(item_id.encode()) % 7)) if ranked else -1.0,
    }
    gen = {
        **ident,
        "family": "gen",
        "generation": "" if gone else "Paris",
        "rougeL_recall": 0.0 if gone else 1.0,
        "exact": 0.0 if gone else 1.0,
        "contains": 0.0 if gone else 1.0,
        "known": 0.0 if gone else 1.0,
    }
    return [prob, gen]


def _people(level: str, exposure: int) -> list[tuple[str, str, str, int]]:
    people = [("forget", f"{level}-{i}", level, exposure) for i in range(8)]
    people += [("control", f"{level}-c{i}", level, exposure) for i in range(8)]
    people += [("retain", f"r{i}", "retain", 1) for i in range(6)]
    return people + [("utility", f"u{i}", "utility", 1) for i in range(4)]


def trajectory(model: str, level: str, exposure: int, fall: int, lag: int) -> pd.DataFrame:
    rows = []
    for step in STEPS:
        for role, item_id, group, frequency in _people(level, exposure):
            index = int(item_id.rsplit("-", 1)[-1].lstrip("c") or 0) if "-" in item_id else 0
            gone = role == "forget" and step >= fall + index % 2
            ranked = not (role == "forget" and step >= fall + index % 2 + lag)
            rows += _item_rows(model, step, item_id, role, group, frequency, gone, ranked)
    return pd.DataFrame(rows)


def _scores(model: str, known: bool) -> pd.DataFrame:
    """Every studied item once, all known (a baseline) or none (a never-learned model)."""
    rows = []
    for level, (exposure, _) in LEVELS.items():
        for role, item_id, group, frequency in _people(level, exposure):
            if role in ("forget", "control"):
                rows += _item_rows(model, 0, item_id, role, group, frequency, not known, known)
    return pd.DataFrame(rows).drop(columns="role")


def _attack_scores(traj: pd.DataFrame) -> pd.DataFrame:
    """The forget items right after unlearning, then after 1 and 2 relearning steps (half of them known
    again after 2) and with int8 weights (nothing back)."""
    forget = traj[(traj["role"] == "forget") & (traj["step"] == max(STEPS))].drop(columns="role")
    frames = []
    for attack, ks in (("targeted", (1, 2)), ("benign", (1, 2)), ("int8", (0,))):
        frames.append(forget.assign(attack=attack, scheme=None, k=0, attacked=False))
        for k in ks:
            back = forget.copy()
            if attack == "targeted" and k == 2:
                half = back["item_id"].str[-1].astype(int) % 2 == 0
                back.loc[half & (back["family"] == "gen"), ["known", "exact", "rougeL_recall"]] = 1.0
            frames.append(
                back.assign(attack=attack, scheme="int8" if attack == "int8" else None, k=k, attacked=True)
            )
    return pd.concat(frames, ignore_index=True)


def write_study(run: Path, *, attacks: bool = False, sizes: dict = SIZES, methods=METHODS) -> Path:
    """A study directory under `run` as `frequnlearn study` leaves it, without models' weights."""
    config = {
        "study": {
            "levels": list(LEVELS),
            "model_sizes": sorted(sizes),  # alphabetical on purpose: the report orders by parameters
            "methods": list(methods),
            "n_boot": 200,
            "selections": ["known"],
        },
        "evaluate": {"gen_threshold": 0.5, "known": "exact"},
        "unlearn": {"max_steps": max(STEPS), "eval_steps": list(STEPS)},
    }
    if attacks:
        config["attacks"] = {"oracle": True, "relearn": ["targeted", "benign"], "quantize": ["int8"]}
    write_json(run / "study.json", {"config": config})
    for size, (n_params, lag) in sizes.items():
        model = f"{size}-s0"
        if attacks:
            for kind, known in (("baseline", True), ("oracle", False)):
                (run / "models" / model / kind).mkdir(parents=True, exist_ok=True)
                _scores(model, known).to_parquet(
                    run / "models" / model / kind / "scores.parquet", index=False
                )
        for method in methods:
            for level, (exposure, fall) in LEVELS.items():
                task = f"{model}/{method}/{level}-known"
                out = run / "unlearn" / task
                out.mkdir(parents=True)
                frame = trajectory(model, level, exposure, fall, lag)
                frame.to_parquet(out / "trajectory.parquet", index=False)
                ids = {
                    r: sorted(set(frame.loc[frame["role"] == r, "item_id"])) for r in frame["role"].unique()
                }
                write_json(
                    out / "sets.json",
                    {
                        "forget": ids["forget"],
                        "control": ids["control"],
                        "retain": ids["retain"],
                        "eval_retain": ids["retain"],
                        "eval_utility": ids["utility"],
                    },
                )
                identity = {
                    "run_id": task,
                    "task": task,
                    "model": model,
                    "size": size,
                    "n_params": n_params,
                    "seed": 0,
                    "method": method,
                    "level": level,
                    "selection": "known",
                }
                write_json(out / "run.json", {"run": identity})
                if attacks:
                    (out / "attacks").mkdir()
                    _attack_scores(frame).to_parquet(out / "attacks" / "scores.parquet", index=False)
                    write_json(
                        out / "attacks" / "attacks.json",
                        {"trained_on": {}, "schemes": {"int8": "int8 weight-only, per output channel"}},
                    )
    return run
