"""The analysis calibrated on simulated studies: with no effect it rarely claims one, and a planted
effect of known size is recovered inside its interval.

Studies are synthetic per-item verdict frames (no model): each item is generated until a step T drawn
from a known distribution, so the true effect follows exactly from those distributions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frequnlearn.report import analysis as A

STEPS = np.arange(11)  # 0..10, every step evaluated
NEVER = 11  # T beyond the budget: still generated at the end


def _item_drop(t: int) -> float:
    return 1.0 - A.normalised_auc(STEPS, (STEPS < t).astype(float))


def _expected_drop(ts: range) -> float:
    return float(np.mean([_item_drop(t) for t in ts]))


def _run(rng, level, size, seed, role_t, n, start, selection="known", method="ga+gd"):
    """Verdict rows of one run: n target and n control items, a share `start` generated at step 0."""
    run_id = f"{size}-s{seed}/{method}/{level}-{selection}"
    frames = []
    for role, ts in (("forget", role_t), ("control", range(8, NEVER + 1))):
        t = rng.choice(list(ts), size=n)
        known0 = rng.random(n) < start
        gen = (STEPS[None, :] < t[:, None]) & known0[:, None]
        ids = np.repeat([f"{level}-{role}-{i}" for i in range(n)], len(STEPS))
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "model": f"{size}-s{seed}",
                    "size": size,
                    "seed": seed,
                    "method": method,
                    "level": level,
                    "selection": selection,
                    "role": role,
                    "probe": "question",
                    "step": np.tile(STEPS, n),
                    "item_id": ids,
                    "gen_known": gen.ravel(),
                    "prob_known": gen.ravel(),
                    "truth_ratio": np.where(gen.ravel(), 0.5, 2.0),
                    "logprob_per_token": np.where(gen.ravel(), -1.0, -5.0),
                    "margin": rng.normal(1.5, 0.5, size=n).repeat(len(STEPS)),
                }
            )
        )
    return frames


LOW_T = range(1, 6)  # rare facts: lost within the first five steps
HIGH_T_PLANTED = range(4, 9)  # frequent facts: lost later


def _study(rng, high_t, n=20, seeds=(0,), method="ga+gd") -> pd.DataFrame:
    # Different starting levels (0.95 vs 0.35 generated at step 0), same control arm for both levels.
    frames = []
    for seed in seeds:
        frames += _run(rng, "forget_high", "mini", seed, high_t, n, start=0.95, method=method)
        frames += _run(rng, "forget_low", "mini", seed, LOW_T, n, start=0.35, method=method)
    return pd.concat(frames, ignore_index=True)


def _effects(rng, n_studies: int, high_t, n_boot: int = 200, **kw) -> pd.DataFrame:
    """One row per simulated study (each study is its own `method`, so one call analyses them all)."""
    v = pd.concat([_study(rng, high_t, method=f"sim{k:03d}", **kw) for k in range(n_studies)])
    eff = A.frequency_effect(A.item_table(v), "forget_high", "forget_low", n_boot=n_boot)
    assert len(eff) == n_studies
    return eff


def test_no_frequency_effect_is_rarely_supported():
    rng = np.random.default_rng(0)
    words = _effects(rng, 200, LOW_T)["verdict"].tolist()
    assert words.count("supported") <= 10  # at most 5% of 200
    assert words.count("inconclusive") >= 180


def test_raw_start_difference_is_not_counted_as_an_effect():
    # Identical forgetting, very different starting accuracy: the raw AUC differs, the verdict does not.
    v = _study(np.random.default_rng(1), LOW_T, n=60)
    c = A.curves(v)
    s = A.run_summaries(c, 0.1, 0.1).set_index("level")
    assert s.loc["forget_high", "forget_auc_raw"] - s.loc["forget_low", "forget_auc_raw"] > 0.1
    assert abs(s.loc["forget_high", "forget_auc"] - s.loc["forget_low", "forget_auc"]) < 0.1
    eff = A.frequency_effect(A.item_table(v), "forget_high", "forget_low", n_boot=200).iloc[0]
    assert eff["verdict"] != "supported"


def test_planted_frequency_effect_is_recovered():
    truth = _expected_drop(HIGH_T_PLANTED) - _expected_drop(LOW_T)  # the control drops cancel
    assert truth < -0.2
    rng = np.random.default_rng(2)
    eff = _effects(rng, 40, HIGH_T_PLANTED, n=20, seeds=(0, 1))
    covered = ((eff["effect_lo"] <= truth) & (truth <= eff["effect_hi"])).mean()
    assert covered >= 0.85 and (eff["verdict"] == "supported").mean() >= 0.95
    assert abs(eff["effect"].mean() - truth) < 0.03
    assert (eff["seeds"] == 2).all() and eff["effect_seed_lo"].notna().all()


def test_nothing_unlearned_is_not_supported():
    # lr = 0: every item keeps its step-0 verdict in both arms.
    v = _study(np.random.default_rng(3), LOW_T)
    v = v.assign(gen_known=v.groupby(["run_id", "item_id"])["gen_known"].transform("first"))
    eff = A.frequency_effect(A.item_table(v), "forget_high", "forget_low", n_boot=200).iloc[0]
    assert eff["effect"] == 0.0 and eff["verdict"] == "not supported"
    assert A.misalignment_items(v).empty
    text = A.describe_findings(
        eff.to_frame().T, pd.DataFrame(), pd.DataFrame(), ["mini", "tiny"], "forget_high", "forget_low"
    )
    assert "not supported" in text[1] and text[-1].startswith(
        "Finding 2 (misalignment grows with size) is not supported"
    )


# ---------------------------------------------------------------------------- misalignment vs size

SIZES = {"s1": 1e6, "s2": 1e6 * math.e**1.5, "s3": 1e6 * math.e**3}


def _mis_study(rng, q_of_size, n=60, method="ga+gd") -> pd.DataFrame:
    """Three evaluated steps; at step 5 about 70% of target items are no longer generated (the matched
    level), and a forgotten item is still ranked first with probability q(size); 40% of control items
    stop being generated and are then still ranked first with probability 0.3."""
    frames = []
    steps = np.array([0, 5, 10])
    for size in SIZES:
        for level in ("forget_high", "forget_low"):
            for role, keep, q in (("forget", 0.3, q_of_size(size)), ("control", 0.6, 0.3)):
                gen5 = rng.random(n) < keep
                pref5 = gen5 | (rng.random(n) < q)
                gen = np.stack([np.ones(n, bool), gen5, np.zeros(n, bool)], axis=1).ravel()
                pref = np.stack([np.ones(n, bool), pref5, np.zeros(n, bool)], axis=1).ravel()
                frames.append(
                    pd.DataFrame(
                        {
                            "run_id": f"{size}-s0/{method}/{level}-known",
                            "model": f"{size}-s0",
                            "size": size,
                            "seed": 0,
                            "method": method,
                            "level": level,
                            "selection": "known",
                            "role": role,
                            "probe": "question",
                            "step": np.tile(steps, n),
                            "item_id": np.repeat([f"{level}-{role}-{i}" for i in range(n)], len(steps)),
                            "gen_known": gen,
                            "prob_known": pref,
                            "truth_ratio": np.where(pref, 0.5, 2.0),
                            "logprob_per_token": np.nan,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def _trends(rng, n_studies: int, q_of_size, n_boot: int = 200) -> pd.DataFrame:
    """One row per simulated study: the pooled-level slope of the rank-1 view."""
    v = pd.concat([_mis_study(rng, q_of_size, method=f"sim{k:03d}") for k in range(n_studies)])
    t = A.size_trend(A.misalignment_items(v), SIZES, n_boot=n_boot)
    t = t[(t["level"] == "both") & (t["view"] == "rank1")]
    assert len(t) == n_studies and (t["sizes"] == 3).all()
    return t


def test_no_size_trend_is_rarely_supported():
    rng = np.random.default_rng(4)
    words = _trends(rng, 200, lambda s: 0.5)["verdict"].tolist()
    assert words.count("supported") <= 10


def test_planted_size_trend_is_recovered():
    slope = 0.15  # per e-fold of parameters
    rng = np.random.default_rng(5)
    t = _trends(rng, 40, lambda s: 0.3 + slope * math.log(SIZES[s] / 1e6))
    covered = ((t["slope_lo"] <= slope) & (slope <= t["slope_hi"])).mean()
    assert covered >= 0.85 and (t["verdict"] == "supported").mean() >= 0.9
    assert abs(t["slope"].mean() - slope) < 0.02


# ------------------------------------------------------------------------ frequency as a dose-response

GRID = [1, 2, 4, 8, 16]


def _dose_study(rng, shift_per_doubling: int, n=20, seeds=(0,), method="ga+gd") -> pd.DataFrame:
    """An exposure grid whose items are lost `shift_per_doubling` steps later per doubling of exposure."""
    frames = []
    for seed in seeds:
        for j, exposure in enumerate(GRID):
            t = range(1 + shift_per_doubling * j, 6 + shift_per_doubling * j)
            frames += _run(rng, str(exposure), "mini", seed, t, n, start=0.3 + 0.15 * j, method=method)
    return pd.concat(frames, ignore_index=True)


def _dose(rng, n_studies: int, shift: int, n_boot: int = 200, **kw) -> pd.DataFrame:
    v = pd.concat([_dose_study(rng, shift, method=f"sim{k:03d}", **kw) for k in range(n_studies)])
    _, slopes = A.dose_response(A.item_table(v), n_boot=n_boot)
    assert len(slopes) == n_studies and (slopes["levels"] == len(GRID)).all()
    return slopes


def test_no_dose_response_is_rarely_supported():
    # Same forgetting at every exposure, very different starting accuracy: no slope.
    words = _dose(np.random.default_rng(10), 100, shift=0)["verdict"].tolist()
    assert words.count("supported") <= 5
    assert words.count("inconclusive") >= 85


def test_planted_dose_response_is_recovered():
    x = np.log(GRID)
    y = np.array([_expected_drop(range(1 + j, 6 + j)) for j in range(len(GRID))])  # controls cancel
    truth = float((x - x.mean()) @ (y - y.mean()) / ((x - x.mean()) @ (x - x.mean())))
    assert truth < -0.05
    slopes = _dose(np.random.default_rng(11), 30, shift=1, seeds=(0, 1))
    covered = ((slopes["slope_lo"] <= truth) & (truth <= slopes["slope_hi"])).mean()
    assert covered >= 0.85 and (slopes["verdict"] == "supported").mean() >= 0.9
    assert abs(slopes["slope"].mean() - truth) < 0.01
    assert slopes["slope_seed_lo"].notna().all()


def test_two_levels_give_the_effect_per_log_exposure():
    # forget_high / forget_low with the items' own frequency column: the slope is the Finding 1 effect
    # divided by log(10 / 1), with the same resampled items.
    v = _study(np.random.default_rng(12), HIGH_T_PLANTED, n=30)
    v["frequency"] = np.where(v["level"] == "forget_high", 10.0, 1.0)
    items = A.item_table(v)
    points, slopes = A.dose_response(items, n_boot=200)
    eff = A.frequency_effect(items, "forget_high", "forget_low", n_boot=200).iloc[0]
    assert list(points["exposure"]) == [1.0, 10.0]
    assert slopes.iloc[0]["slope"] == pytest.approx(eff["effect"] / math.log(10))
    assert slopes.iloc[0]["verdict"] == "supported"


def test_a_level_without_a_frequency_cannot_enter_the_slope():
    v = _study(np.random.default_rng(13), HIGH_T_PLANTED, n=10)  # named levels, no frequency column
    points, slopes = A.dose_response(A.item_table(v), n_boot=50)
    assert points.empty and slopes.empty
