"""The analysis calibrated on simulated studies that look like the data: with no effect it rarely claims
one, a planted effect of known size is recovered inside its interval, a placebo stays silent.

Two simulators. `_items` draws per-item drops directly (fast, for the rates): per world the people of
each level are split anew into target and control halves by every pretraining seed; baseline margin
depends on the level (1.94 vs 1.23 nats, as measured); control drops differ about 12x between levels
(0.015 vs 0.19 at the planted effect, 0.02 vs 0.24 at the null); each person carries a random effect
shared by all seeds, each seed a random effect per level and arm; a latent drop is clipped to [0, 1]
(items that are never lost, items lost at once). The arms' population means are set exactly, so the
truth is known in closed form. `_frames` draws per-step verdicts for whole runs (loss times), for the
end-to-end checks through `report.build.analyse`.

Monte-Carlo error: a rate p from N studies is known to sqrt(p (1 - p) / N); the thresholds below
allow two of those above the nominal rate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy import stats as sps

from frequnlearn.report import estimands as E
from frequnlearn.report import stats as S
from frequnlearn.report.headline import DESCRIPTIVE, NO_ESTIMATE, SUPPORTED

MARGIN = {"forget_high": 1.94, "forget_low": 1.23}
MARGIN_SD = 0.6
BETA = {"forget": -0.15, "control": -0.05}  # a larger margin: less of the item is lost
PERSON_SD, SEED_SD, NOISE_SD = 0.12, 0.03, 0.3
NULL = {
    ("forget_high", "forget"): 0.27,
    ("forget_high", "control"): 0.02,
    ("forget_low", "forget"): 0.49,
    ("forget_low", "control"): 0.24,
}
PLANTED = {
    ("forget_high", "forget"): 0.137,
    ("forget_high", "control"): 0.015,
    ("forget_low", "forget"): 0.576,
    ("forget_low", "control"): 0.189,
}
PLANTED_EFFECT = (0.137 - 0.015) - (
    0.576 - 0.189
)  # -0.265: the earlier results/effect (900 people, fixed budget)


def _mc_limit(p: float, n: int) -> float:
    return p + 2 * math.sqrt(p * (1 - p) / n)


def _unbiased(estimates: pd.Series, truth: float) -> bool:
    """The mean estimate within three Monte-Carlo standard errors of the truth."""
    return abs(estimates.mean() - truth) <= 3 * estimates.std() / math.sqrt(len(estimates))


def _clipped_mean(mu: float, sd: float) -> float:
    """E[min(max(Z, 0), 1)] for Z ~ N(mu, sd)."""

    def tail(c: float) -> float:  # E[max(Z - c, 0)]
        z = (mu - c) / sd
        return (mu - c) * sps.norm.cdf(z) + sd * sps.norm.pdf(z)

    return tail(0.0) - tail(1.0)


def _total_sd(role: str) -> float:
    return math.sqrt(BETA[role] ** 2 * MARGIN_SD**2 + PERSON_SD**2 + SEED_SD**2 + NOISE_SD**2)


def _intercepts(means: dict[tuple, float], margins: dict[str, float]) -> dict[tuple, float]:
    """Latent intercepts that give each arm exactly its population mean drop."""
    out = {}
    for (level, role), target in means.items():
        sd = _total_sd(role)
        mu = optimize.brentq(lambda m, sd=sd, target=target: _clipped_mean(m, sd) - target, -3, 3)
        out[(level, role)] = mu - BETA[role] * (margins[level] - 1.6)
    return out


def _items(
    rng, n_studies, means, n_arm=40, seeds=3, worlds=1, margins=MARGIN, method="ga+gd"
) -> pd.DataFrame:
    """Item tables of `n_studies` simulated studies (each its own `size`, so one call analyses all)."""
    alpha = _intercepts(means, margins)
    frames = []
    for k in range(n_studies):
        for world in range(worlds):
            for level in ("forget_high", "forget_low"):
                people = np.array([f"w{world}-{level}-p{i}" for i in range(2 * n_arm)])
                margin = rng.normal(margins[level], MARGIN_SD, size=len(people))
                u = rng.normal(0, PERSON_SD, size=len(people))
                for seed in range(seeds):
                    target = rng.permutation(len(people)) < n_arm
                    role = np.where(target, "forget", "control")
                    v = {r: rng.normal(0, SEED_SD) for r in ("forget", "control")}
                    z = np.array(
                        [alpha[(level, r)] + BETA[r] * (m - 1.6) + v[r] for r, m in zip(role, margin)]
                    )
                    z = z + u + rng.normal(0, NOISE_SD, size=len(people))
                    drop = np.clip(z, 0, 1)
                    frames.append(
                        pd.DataFrame(
                            {
                                "run_id": f"s{k}-w{world}-seed{seed}/{level}",
                                "model": f"s{k}-w{world}-seed{seed}",
                                "size": f"study{k:04d}",
                                "seed": seed,
                                "world": world,
                                "method": method,
                                "level": level,
                                "selection": "known",
                                "probe": "question",
                                "role": role,
                                "item_id": [f"{p}-birth_city" for p in people],
                                "person_id": people,
                                "frequency": 10.0 if level == "forget_high" else 1.0,
                                "known0": True,
                                "margin0": margin,
                                "auc": 1 - drop,
                                "drop": drop,
                                "first_lost": np.where(drop > 0, np.round(30 * (1 - drop)), np.nan),
                                "last_step": 30.0,
                                "horizon": 30.0,
                            }
                        )
                    )
    return pd.concat(frames, ignore_index=True)


def _effects(rng, n_studies, means, n_boot=250, **kw) -> pd.DataFrame:
    eff = E.frequency_effect(_items(rng, n_studies, means, **kw), "forget_high", "forget_low", n_boot=n_boot)
    assert len(eff) == n_studies
    return eff


def test_simulated_arms_have_the_means_they_were_given():
    items = _items(np.random.default_rng(0), 40, PLANTED, n_arm=50)
    got = items.groupby(["level", "role"])["drop"].mean()
    for arm, mean in PLANTED.items():
        assert got[arm] == pytest.approx(mean, abs=0.01)
    # Margin follows frequency, and the control arms differ about 12x.
    assert items.groupby("level")["margin0"].mean().diff().abs().iloc[-1] == pytest.approx(0.71, abs=0.03)
    assert got[("forget_low", "control")] / got[("forget_high", "control")] == pytest.approx(12.6, rel=0.2)


@pytest.mark.slow
def test_no_frequency_effect_is_rarely_supported_and_its_interval_covers_zero():
    n = 600
    eff = _effects(np.random.default_rng(1), n, NULL)
    false_support = (eff["verdict"] == SUPPORTED).mean()
    covered = ((eff["effect_lo"] <= 0) & (0 <= eff["effect_hi"])).mean()
    assert false_support <= _mc_limit(0.025, n), false_support
    assert covered >= 0.93, covered
    assert _unbiased(eff["effect"], 0.0)


@pytest.mark.slow
def test_planted_frequency_effect_is_recovered():
    n = 400
    eff = _effects(np.random.default_rng(2), n, PLANTED)
    covered = ((eff["effect_lo"] <= PLANTED_EFFECT) & (PLANTED_EFFECT <= eff["effect_hi"])).mean()
    assert covered >= 0.93, covered
    assert _unbiased(eff["effect"], PLANTED_EFFECT)
    assert (eff["verdict"] == SUPPORTED).mean() >= 0.8
    assert (eff["seeds"] == 3).all() and eff["effect_seed_lo"].notna().all()


@pytest.mark.slow
def test_two_worlds_and_five_seeds_keep_coverage():
    eff = _effects(np.random.default_rng(3), 100, PLANTED, n_arm=20, seeds=5, worlds=2)
    covered = ((eff["effect_lo"] <= PLANTED_EFFECT) & (PLANTED_EFFECT <= eff["effect_hi"])).mean()
    assert covered >= 0.93, covered
    assert (eff["n_worlds"] == 2).all() and (eff["seeds"] == 10).all()


@pytest.mark.slow
def test_placebo_of_equal_exposure_stays_silent():
    # Two levels of equal exposure (same margins, same arms) with lr > 0: both lose, neither more.
    same = {("forget_high", r): NULL[("forget_low", r)] for r in ("forget", "control")}
    same |= {("forget_low", r): NULL[("forget_low", r)] for r in ("forget", "control")}
    n = 300
    eff = _effects(np.random.default_rng(4), n, same, margins={"forget_high": 1.23, "forget_low": 1.23})
    assert (eff["verdict"] == SUPPORTED).mean() <= _mc_limit(0.025, n)
    assert (eff["net_drop_high"] > 0).all()  # lr > 0: targeted forgetting at both levels


def _run_frame(model, size, seed, level, target, steps, people, gen, margin, **extra) -> pd.DataFrame:
    """One run's per-step generation verdicts: a row per item and evaluated step."""
    return pd.DataFrame(
        {
            "run_id": f"{model}/ga+gd/{level}-known",
            "model": model,
            "size": size,
            "seed": seed,
            "world": 0,
            "method": "ga+gd",
            "level": level,
            "selection": "known",
            "role": np.repeat(np.where(target, "forget", "control"), len(steps)),
            "probe": "question",
            "step": np.tile(steps, len(people)),
            "item_id": np.repeat([f"{p}-birth_city" for p in people], len(steps)),
            "person_id": np.repeat(people, len(steps)),
            "frequency": 10.0 if level == "forget_high" else 1.0,
            "gen_known": gen.ravel(),
            **extra,
            "margin": np.repeat(margin, len(steps)),
        }
    )


def _stopped_runs(rng, k: int, n_arm: int = 50, hazard: dict[str, float] | None = None, L: float = 0.5):
    """Study `k`: both levels' runs evaluated every step and stopped by the rule at the first step at
    which the targets' normalised accuracy is <= L (at most 100 steps), items lost at geometric steps
    with the same hazard at both levels: equal exposure, so no frequency effect."""
    hazard = hazard or {"forget": 0.07, "control": 0.02}
    frames = []
    for level in ("forget_high", "forget_low"):
        people = np.array([f"s{k}-{level}-p{i:03d}" for i in range(2 * n_arm)])
        target = rng.permutation(2 * n_arm) < n_arm
        role = np.where(target, "forget", "control")
        lost_at = 1 + rng.geometric(np.array([hazard[r] for r in role]))
        steps = np.arange(101)
        gen = steps[None, :] < lost_at[:, None]
        hit = np.nonzero((gen[target].mean(0) <= L) & (steps >= 1))[0]
        last = int(hit[0]) if len(hit) else 100
        steps, gen = steps[: last + 1], gen[:, : last + 1]
        margin = rng.normal(1.3, 0.5, 2 * n_arm)
        frames.append(_run_frame(f"m{k}", f"study{k:04d}", 0, level, target, steps, people, gen, margin))
    return frames


def test_a_horizon_the_stopping_rule_picks_keeps_the_null_silent():
    """The levels are compared up to the step at which the faster run stopped, a step the data choose
    while the item bootstrap holds it fixed. Under no effect (one seed, 50 items per arm, as the default
    study) the interval must still cover zero and "supported" stay within its 2.5%."""
    n = 400
    rng = np.random.default_rng(11)
    v = pd.concat([f for k in range(n) for f in _stopped_runs(rng, k)], ignore_index=True)
    items = E.item_table(v)
    assert (items.groupby("run_id")["horizon"].first() < items.groupby("run_id")["last_step"].first()).any()
    eff = E.frequency_effect(items, "forget_high", "forget_low", n_boot=250)
    assert len(eff) == n
    covered = ((eff["effect_lo"] <= 0) & (0 <= eff["effect_hi"])).mean()
    assert covered >= 0.93, covered
    assert (eff["verdict"] == SUPPORTED).mean() <= _mc_limit(0.025, n)
    assert _unbiased(eff["effect"], 0.0)


def test_arms_of_three_are_descriptive_and_not_narrower_than_welch():
    n = 200
    eff = _effects(np.random.default_rng(5), n, PLANTED, n_arm=3, seeds=1)
    assert (eff["verdict"].isin([DESCRIPTIVE, NO_ESTIMATE])).all()
    covered = ((eff["effect_lo"] <= PLANTED_EFFECT) & (PLANTED_EFFECT <= eff["effect_hi"])).mean()
    assert covered >= 0.93
    # The interval of a difference of two arms of 3 contains the Welch t-interval.
    a, b = np.array([0.2, 0.9, 1.0]), np.array([0.0, 0.1, 0.4])
    boot = a[np.random.default_rng(0).integers(0, 3, (4000, 3))].mean(1) - b[
        np.random.default_rng(1).integers(0, 3, (4000, 3))
    ].mean(1)
    lo, hi = S.expanded_interval(boot, 3, a.mean() - b.mean())
    wlo, whi = S.welch_interval(a, b)
    assert lo <= wlo and hi >= whi


# ---------------------------------------------------------------------------- mediation recovered


def test_mediation_recovers_a_planted_direct_and_indirect_effect():
    # Linear and unclipped, so the split is known: margin is 0.71 higher at high; each nat of margin
    # lowers a target's drop by 0.15 more than a control's; at equal margin high targets lose 0.1 less.
    rng = np.random.default_rng(6)
    n_studies, n_arm, direct_true = 40, 60, -0.10
    indirect_true = -0.15 * (MARGIN["forget_high"] - MARGIN["forget_low"])
    rows = []
    for k in range(n_studies):
        for level in ("forget_high", "forget_low"):
            people = [f"{level}-p{i}" for i in range(2 * n_arm)]
            m = rng.normal(MARGIN[level], MARGIN_SD, size=len(people))
            for seed in range(2):
                target = rng.permutation(len(people)) < n_arm
                drop = (
                    0.3
                    + np.where(target, 0.2 + (direct_true if level == "forget_high" else 0.0), 0.0)
                    + np.where(target, -0.2, -0.05) * (m - 1.6)
                    + rng.normal(0, 0.15, len(people))
                )
                rows.append(
                    pd.DataFrame(
                        {
                            "run_id": f"{k}-{seed}-{level}",
                            "model": f"m{seed}",
                            "size": f"study{k:03d}",
                            "seed": seed,
                            "world": 0,
                            "method": "ga+gd",
                            "level": level,
                            "selection": "known",
                            "probe": "question",
                            "role": np.where(target, "forget", "control"),
                            "item_id": people,
                            "person_id": people,
                            "known0": True,
                            "margin0": m,
                            "drop": drop,
                        }
                    )
                )
    med, points = E.mediation(pd.concat(rows, ignore_index=True), "forget_high", "forget_low", n_boot=200)
    assert len(med) == n_studies
    assert med["direct"].mean() == pytest.approx(direct_true, abs=0.01)
    assert med["indirect"].mean() == pytest.approx(indirect_true, abs=0.01)
    for name, truth in (("direct", direct_true), ("indirect", indirect_true)):
        covered = ((med[f"{name}_lo"] <= truth) & (truth <= med[f"{name}_hi"])).mean()
        assert covered >= 0.9, (name, covered)
    assert set(points["level"]) == {"forget_high", "forget_low"} and points["fitted_net_drop"].notna().all()


# ------------------------------------------------------------------------ frequency as a dose-response

GRID = [1, 2, 4, 8, 16]


def _dose_items(rng, n_studies, per_efold, n_arm=30) -> pd.DataFrame:
    """An exposure grid whose targets' drop falls by `per_efold` per e-fold of exposure (controls flat)."""
    frames = []
    for k in range(n_studies):
        for seed in range(2):
            for x in GRID:
                lv = str(x)
                people = [f"{lv}-p{i}" for i in range(2 * n_arm)]
                target = rng.permutation(len(people)) < n_arm
                drop = np.clip(
                    np.where(target, 0.6 + per_efold * math.log(x), 0.1) + rng.normal(0, 0.15, len(people)),
                    0,
                    1,
                )
                frames.append(
                    pd.DataFrame(
                        {
                            "run_id": f"{k}-{seed}-{lv}",
                            "model": f"m{seed}",
                            "size": f"study{k:03d}",
                            "seed": seed,
                            "world": 0,
                            "method": "ga+gd",
                            "level": lv,
                            "selection": "known",
                            "probe": "question",
                            "role": np.where(target, "forget", "control"),
                            "item_id": people,
                            "person_id": people,
                            "frequency": float(x),
                            "known0": True,
                            "margin0": 1.0,
                            "drop": drop,
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_dose_response_null_and_planted():
    _, null = E.dose_response(_dose_items(np.random.default_rng(10), 150, 0.0), n_boot=250)
    assert (null["levels"] == len(GRID)).all() and len(null) == 150
    assert (null["verdict"] == SUPPORTED).mean() <= _mc_limit(0.025, 150)
    _, planted = E.dose_response(_dose_items(np.random.default_rng(11), 80, -0.08), n_boot=250)
    # The clip at 0 and 1 bends the line a little; the truth is the slope of the clipped means.
    x = np.log(GRID)
    y = np.array([_clipped_mean(0.6 - 0.08 * math.log(g), 0.15) - _clipped_mean(0.1, 0.15) for g in GRID])
    truth = float(S.slope(x, y))
    covered = ((planted["slope_lo"] <= truth) & (truth <= planted["slope_hi"])).mean()
    assert covered >= 0.9 and (planted["verdict"] == SUPPORTED).mean() >= 0.9


def test_two_levels_give_the_effect_per_log_exposure():
    items = _items(np.random.default_rng(12), 1, PLANTED)
    points, slopes = E.dose_response(items, n_boot=200)
    eff = E.frequency_effect(items, "forget_high", "forget_low", n_boot=200).iloc[0]
    assert list(points["exposure"]) == [1.0, 10.0]
    assert slopes.iloc[0]["slope"] == pytest.approx(eff["effect"] / math.log(10))
    assert bool(slopes.iloc[0]["per_efold_of_effect"])


# ---------------------------------------------------------------------------- misalignment vs size

SIZES = {"s1": 1e6, "s2": 1e6 * math.e**1.5, "s3": 1e6 * math.e**3}


def _mis_frames(rng, n_studies, q_of_size, n=60, seeds=2) -> pd.DataFrame:
    """Per-step verdicts: at step 5 about 70% of target items are no longer generated (forgetting
    level 0.3 <= 0.5); a forgotten target is still ranked first with probability q(size) plus a person
    effect; 40% of control items are lost, then still ranked first with probability 0.3."""
    steps = np.array([0, 5, 10])
    frames = []
    for k in range(n_studies):
        person_q = {lv: rng.normal(0, 0.1, size=2 * n) for lv in ("forget_high", "forget_low")}
        for size in SIZES:
            for seed in range(seeds):
                for level in ("forget_high", "forget_low"):
                    people = np.array([f"{level}-p{i}" for i in range(2 * n)])
                    target = rng.permutation(2 * n) < n
                    keep = np.where(target, 0.3, 0.6)
                    q = np.clip(np.where(target, q_of_size(size), 0.3) + person_q[level], 0, 1)
                    gen5 = rng.random(2 * n) < keep
                    pref5 = gen5 | (rng.random(2 * n) < q)
                    gen = np.stack([np.ones(2 * n, bool), gen5, np.zeros(2 * n, bool)], axis=1).ravel()
                    pref = np.stack([np.ones(2 * n, bool), pref5, np.zeros(2 * n, bool)], axis=1).ravel()
                    frames.append(
                        pd.DataFrame(
                            {
                                "run_id": f"{k}/{size}-s{seed}/{level}",
                                "model": f"{size}-s{seed}",
                                "size": size,
                                "seed": seed,
                                "world": 0,
                                "method": f"sim{k:03d}",
                                "level": level,
                                "selection": "known",
                                "role": np.repeat(np.where(target, "forget", "control"), 3),
                                "probe": "question",
                                "step": np.tile(steps, 2 * n),
                                "item_id": np.repeat(people, 3),
                                "person_id": np.repeat(people, 3),
                                "gen_known": gen,
                                "prob_known": pref,
                                "truth_ratio": np.where(pref, 0.5, 2.0),
                                "logprob_per_token": np.nan,
                            }
                        )
                    )
    return pd.concat(frames, ignore_index=True)


def _trends(rng, n_studies, q_of_size, n_boot=250) -> pd.DataFrame:
    v = _mis_frames(rng, n_studies, q_of_size)
    t = E.size_trend(E.misalignment_items(v), E.forgetting_reach(v), SIZES, n_boot=n_boot)
    t = t[
        (t["level"] == "both") & (t["view"] == "rank1") & (t["forgetting"] == 0.5) & (t["measure"] == "share")
    ]
    assert len(t) == n_studies and (t["sizes"] == 3).all()
    return t


@pytest.mark.slow
def test_no_size_trend_is_rarely_supported():
    t = _trends(np.random.default_rng(20), 200, lambda s: 0.5)
    assert (t["verdict"] == SUPPORTED).mean() <= 0.05
    assert ((t["slope_lo"] <= 0) & (0 <= t["slope_hi"])).mean() >= 0.93


@pytest.mark.slow
def test_planted_size_trend_is_recovered():
    slope = 0.1  # per e-fold of parameters
    t = _trends(np.random.default_rng(21), 100, lambda s: 0.3 + slope * math.log(SIZES[s] / 1e6))
    # The person effect is clipped at 0 and 1, which bends the line slightly: truth from the clipped means.
    truth = float(
        S.slope(
            np.log(list(SIZES.values())),
            np.array([_clipped_mean(0.3 + slope * math.log(p / 1e6), 0.1) for p in SIZES.values()]),
        )
    )
    covered = ((t["slope_lo"] <= truth) & (truth <= t["slope_hi"])).mean()
    assert covered >= 0.9, covered
    assert _unbiased(t["slope"], truth)


# -------------------------------------------------------------------- end to end through analyse()


def _frames(rng, high_t, low_t, n_arm=25, seeds=(0, 1, 2), lr_zero=False, size="tiny") -> pd.DataFrame:
    """Per-step verdicts of whole runs: each target item is lost at a step drawn from `high_t` or
    `low_t`, controls late or never; people are split anew into targets and controls by every seed."""
    steps = np.array([0, 1, 2, 3, 4, 6, 8, 10, 15, 20])
    frames = []
    for level, ts in (("forget_high", high_t), ("forget_low", low_t)):
        people = np.array([f"p{level[7]}{i:03d}" for i in range(2 * n_arm)])
        for seed in seeds:
            target = rng.permutation(2 * n_arm) < n_arm
            t = np.where(target, rng.choice(list(ts), 2 * n_arm), rng.choice(list(range(12, 40)), 2 * n_arm))
            gen = steps[None, :] < t[:, None]
            if lr_zero:
                gen = np.ones_like(gen)
            prob_known = gen.ravel() | (rng.random(gen.size) < 0.5)
            margin = rng.normal(1.9 if level == "forget_high" else 1.2, 0.5, 2 * n_arm)
            extra = {
                "prob_known": prob_known,
                "truth_ratio": np.where(gen.ravel(), 0.5, 2.0),
                "logprob_per_token": np.where(gen.ravel(), -1.0, -3.0),
            }
            frames.append(
                _run_frame(f"{size}-s{seed}", size, seed, level, target, steps, people, gen, margin, **extra)
            )
    return pd.concat(frames, ignore_index=True)


def _analyse(v: pd.DataFrame, unlearn: dict | None = None):
    from frequnlearn.report.build import Layout, analyse

    lay = Layout(
        levels=["forget_high", "forget_low"],
        sizes=sorted(v["size"].unique()),
        methods=["ga+gd"],
        selections=["known"],
        probes=["question"],
        high="forget_high",
        low="forget_low",
        params={s: 1e6 * (i + 1) for i, s in enumerate(sorted(v["size"].unique()))},
    )
    study = {"config": {"study": {"n_boot": 200}, "unlearn": unlearn or {"max_steps": 20}}}
    return analyse(v, lay, study)


@pytest.mark.slow
def test_end_to_end_placebo_null_and_planted():
    same = range(2, 9)
    placebo = [
        _analyse(_frames(np.random.default_rng(30 + k), same, same)).headlines[0].verdict for k in range(10)
    ]
    assert SUPPORTED not in placebo
    planted = _analyse(_frames(np.random.default_rng(40), range(8, 20), range(1, 5)))
    h = planted.headlines[0]
    assert h.verdict == SUPPORTED and h.estimate < 0 and h.n_seeds == 3 and h.n_items == 75
    assert "fixed budget of at most 20 steps" in h.budget


def test_lr_zero_run_is_no_estimate():
    res = _analyse(_frames(np.random.default_rng(50), range(2, 9), range(1, 5), lr_zero=True))
    h1, h2 = res.headlines
    assert h1.verdict == NO_ESTIMATE and "nothing moved" in h1.meaning
    assert h2.verdict == NO_ESTIMATE
    assert res.tables["frequency_effect"]["verdict"].eq(NO_ESTIMATE).all()
    assert "not supported" not in " ".join(res.findings)


def test_an_arm_of_three_is_descriptive():
    res = _analyse(_frames(np.random.default_rng(51), range(8, 20), range(1, 5), n_arm=3, seeds=(0,)))
    h = res.headlines[0]
    assert h.verdict == DESCRIPTIVE and h.n_items == 3 and "fewer than the 20" in h.meaning
