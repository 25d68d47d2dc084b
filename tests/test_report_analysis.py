"""The report's statistics, estimands and verdict words on hand-built per-item frames with known
answers, and the report page built from them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frequnlearn.report import build_report
from frequnlearn.report import estimands as A
from frequnlearn.report import stats as S
from frequnlearn.report.headline import DESCRIPTIVE, INCONCLUSIVE, NO_ESTIMATE, OPPOSITE, SUPPORTED, VERDICTS

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_auc_and_threshold_closed_form():
    # Linear fall from 1 to 0 over 10 steps: mean level 0.5.
    assert S.normalised_auc([0, 10], [1.0, 0.0]) == pytest.approx(0.5)
    # Unequal spacing: trapezoids (0..2: 1.0, 2..10: 0.5) -> (2*1 + 8*0.5) / 10 = 0.6.
    assert S.normalised_auc([0, 2, 10], [1.0, 1.0, 0.0]) == pytest.approx(0.6)
    assert S.steps_to_threshold([0, 2, 4], [1.0, 0.3, 0.05], 0.1) == 4
    assert math.isnan(S.steps_to_threshold([0, 2], [1.0, 0.5], 0.1))


def test_kaplan_meier_counts_censored_runs_at_risk():
    # Events at 2 and 4 (twice), two runs censored at 10: S = 4/5, then 4/5 * (1 - 2/4).
    km = S.kaplan_meier([2, 4, 4, 10, 10], [True, True, True, False, False])
    assert km == [(2.0, pytest.approx(0.8)), (4.0, pytest.approx(0.4))]
    assert S.km_median([2, 4, 4, 10, 10], [True, True, True, False, False]) == 4.0
    assert math.isnan(S.km_median([3, 10, 10], [True, False, False]))  # S stays at 2/3: not reached
    stats = pytest.importorskip("scipy.stats")
    ref = stats.ecdf(stats.CensoredData(uncensored=[2, 4, 4], right=[10, 10])).sf
    assert [s for _, s in km] == pytest.approx(list(ref.probabilities[:2]))
    table = S.km_table([2, 4, 4, 10, 10], [True, True, True, False, False])
    assert list(table["at_risk"]) == [5, 5, 4] and table["surv"][0] == 1.0


def test_hazard_ratio_of_items_lost_later():
    rng = np.random.default_rng(0)
    late = rng.exponential(20, 200)  # hazard 1/20
    early = rng.exponential(5, 200)  # hazard 1/5: the ratio is 0.25
    t = np.minimum(np.r_[late, early], 30)
    hr = S.hazard_ratio(t, np.r_[late, early] < 30, np.r_[np.ones(200), np.zeros(200)])
    assert hr["hr_lo"] < 0.25 < hr["hr_hi"] and hr["hr_hi"] < 1
    # Complete separation (every high item lost after every low one) has no finite estimate.
    sep = S.hazard_ratio(
        np.r_[np.full(20, 8.0), np.full(20, 2.0)], np.ones(40, bool), np.r_[np.ones(20), np.zeros(20)]
    )
    assert math.isnan(sep["hr"])


def test_intervals_come_from_scipy_and_statsmodels():
    from scipy import stats as sps
    from statsmodels.stats.proportion import proportion_confint

    mean, lo, hi = S.t_interval([1.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(sps.t.ppf(0.975, 1))  # sd sqrt(2), n 2: 12.706
    assert math.isnan(S.t_interval([1.0])[1])
    boot = np.random.default_rng(0).normal(size=20000)
    lo, hi = S.expanded_interval(boot, 5)  # wider than the plain 95% percentile interval for 5 items
    assert hi > 1.96 * 1.2 and lo < -1.96 * 1.2
    assert S.expanded_interval(boot, 10_000)[1] == pytest.approx(1.96, abs=0.05)
    # Few degrees of freedom (three seeds) widen it further.
    assert S.expanded_interval(boot, 10_000, df=2)[1] == pytest.approx(sps.t.ppf(0.975, 2), rel=0.05)
    assert S.wilson(0, 10)[0] == 0.0 and S.wilson(3, 10) == pytest.approx(
        proportion_confint(3, 10, method="wilson")
    )
    assert all(math.isnan(x) for x in S.wilson(0, 0))
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, math.nan]
    assert list(S.holm(p)[:3]) == pytest.approx(list(multipletests(p[:3], method="holm")[1]))
    assert math.isnan(S.holm(p)[3])


def test_small_arms_are_never_narrower_than_welch():
    # Today's dpo+gd cell: three items per arm. The min-max of bootstrap means is narrower than Welch's.
    a, b = np.array([1.0, 0.9, 0.975]), np.array([0.25, 0.2, 0.2])
    rng = np.random.default_rng(0)
    boot = a[rng.integers(0, 3, (2000, 3))].mean(1) - b[rng.integers(0, 3, (2000, 3))].mean(1)
    lo, hi = S.expanded_interval(boot, 3, float(a.mean() - b.mean()))
    wlo, whi = S.welch_interval(a, b)
    assert lo <= wlo and hi >= whi and boot.min() > lo


def test_hierarchical_resamples_vary_what_varies():
    # Two worlds, three seeds each, 20 people per world in two strata, one item per person.
    world = np.repeat([0, 1], 60)
    seed = np.tile(np.repeat([0, 1, 2], 20), 2)
    person = np.tile(np.arange(20), 6) + 100 * world
    stratum = person % 2
    rs = S.hierarchical_resamples(world, seed, person, person, stratum, 500, np.random.default_rng(0))
    assert [p[0] for p in rs.parts] == ["worlds", "seeds", "people"]  # one item per person: no item level
    assert [p[3] for p in rs.parts] == [1, 4, 36]
    assert rs.parts[0][2] == pytest.approx(math.sqrt(2)) and rs.parts[1][2] == pytest.approx(math.sqrt(1.5))
    # Every seed draw keeps a world's total weight; people are drawn within world and stratum.
    seeds = rs.weights[rs.parts[1][1]]
    assert np.allclose(seeds[:, world == 0].sum(1), 60) and np.allclose(seeds[:, world == 1].sum(1), 60)
    people = rs.weights[rs.parts[2][1]]
    assert np.allclose(people[:, (world == 0) & (stratum == 0)].sum(1), 30)
    # A person's weight is the same in every seed (crossed: one draw per person).
    assert np.allclose(people[:, (person == 3) & (seed == 0)], people[:, (person == 3) & (seed == 2)])
    # The replicates' variance is the sum of the crossed levels' (scaled) variances plus whatever the
    # nested world level adds beyond them (never below 0).
    y = np.random.default_rng(1).normal(size=120) + np.where(world == 1, 3.0, 0.0)  # worlds differ
    means = (rs.weights @ y) / rs.weights.sum(1)
    _, boot = rs.combine(means)
    var = {name: c * c * (means[sl] - means[0]).var() for name, sl, c, _ in rs.parts}
    within = var["seeds"] + var["people"]
    assert boot.var() == pytest.approx(within + max(0.0, var["worlds"] - within), rel=0.1)
    assert var["worlds"] > within
    flat = (rs.weights @ (y - np.where(world == 1, 3.0, 0.0))) / rs.weights.sum(1)
    _, boot_flat = rs.combine(flat)
    fv = {name: c * c * (flat[sl] - flat[0]).var() for name, sl, c, _ in rs.parts}
    expected = fv["seeds"] + fv["people"] + max(0.0, fv["worlds"] - fv["seeds"] - fv["people"])
    assert boot_flat.var() == pytest.approx(expected, rel=0.15)  # independent blocks: covariances ~ 0
    assert 1 <= rs.df(means) <= 41 and 1 <= rs.df(flat) <= 41


def _rows(run: dict, role: str, item: str, gens: list[bool], probs=None, margin=1.0, tr=None) -> list[dict]:
    steps = [0, 2, 4, 6, 8]
    probs = probs or gens
    return [
        {
            **run,
            "role": role,
            "probe": "question",
            "step": s,
            "item_id": item,
            "person_id": item,
            "gen_known": g,
            "prob_known": p,
            "truth_ratio": 0.5 if p else 2.0,
            "logprob_per_token": -1.0 if p else -4.0,
            "margin": margin,
        }
        for s, g, p in zip(steps, gens, probs)
    ]


def _run(level: str, seed: int = 0, size: str = "tiny", selection: str = "known") -> dict:
    return {
        "run_id": f"{size}-s{seed}/ga+gd/{level}-{selection}",
        "model": f"{size}-s{seed}",
        "size": size,
        "seed": seed,
        "world": 0,
        "method": "ga+gd",
        "level": level,
        "selection": selection,
    }


T, F = True, False


def _frame() -> pd.DataFrame:
    """high: 2 target items lost at step 6, 2 control items kept; low: 2 target items lost at step 2
    (plus one never known), 1 control item lost at step 4 and one kept."""
    hi, lo = _run("forget_high"), _run("forget_low")
    rows = []
    for i in range(2):
        rows += _rows(hi, "forget", f"h{i}", [T, T, T, F, F], probs=[T, T, T, T, F], margin=1.0 + i)
        rows += _rows(hi, "control", f"hc{i}", [T] * 5)
        rows += _rows(lo, "forget", f"l{i}", [T, F, F, F, F], probs=[T, T, F, F, F], margin=1.1 + i)
        rows += _rows(hi, "retain", f"r{i}", [T] * 5)
    rows += _rows(lo, "forget", "l-unknown", [F] * 5)
    rows += _rows(lo, "control", "lc0", [T, T, F, F, F])
    rows += _rows(lo, "control", "lc1", [T] * 5)
    return pd.DataFrame(rows)


def test_curves_are_normalised_to_the_items_known_at_the_start():
    c = A.curves(_frame())
    low = c[(c["level"] == "forget_low") & (c["role"] == "forget")].set_index("step")
    assert list(low["acc_raw"].round(3)) == [0.667, 0, 0, 0, 0]
    assert list(low["acc_norm"]) == [1, 0, 0, 0, 0] and (low["n_known0"] == 2).all()
    s = A.run_summaries(c, forget_threshold=0.1, retain_tolerance=0.1).set_index("level")
    # high: 1 until 4, 0 from 6: trapezoids (4*1 + 2*0.5) / 8 = 0.625; low: (2*0.5)/8 = 0.125
    assert s.loc["forget_high", "forget_auc"] == pytest.approx(0.625)
    assert s.loc["forget_low", "forget_auc"] == pytest.approx(0.125)
    assert s.loc["forget_high", "steps_to_threshold"] == 6 and not s.loc["forget_high", "censored"]
    assert s.loc["forget_high", "control_auc"] == 1.0
    assert s.loc["forget_high", "forget_at_matched_retain"] == 0.0  # retain never fell


def test_item_table_records_person_loss_time_and_censoring():
    items = A.item_table(_frame()).set_index("item_id")
    assert items.loc["h0", "first_lost"] == 6 and math.isnan(items.loc["hc0", "first_lost"])
    assert (items["last_step"] == 8).all() and (items["horizon"] == 8).all()
    assert items.loc["h1", "person_id"] == "h1" and items.loc["h1", "world"] == 0
    # Without a person column the person is the item id's person tag.
    assert list(A.person_of(pd.Series(["p00011-birth_city", "q7"]))) == ["p00011", "q7"]


def test_levels_are_compared_over_the_steps_every_run_reached():
    # A stopping rule ended the low run at step 4: the high run's AUC is read over steps 0-4 too.
    v = _frame()
    v = v[~((v["level"] == "forget_low") & (v["step"] > 4))]
    items = A.item_table(v).set_index("item_id")
    assert items.loc["h0", "horizon"] == 4 and items.loc["h0", "last_step"] == 8
    assert items.loc["h0", "auc"] == pytest.approx(1.0)  # still generated up to step 4


def test_frequency_effect_subtracts_the_control_arm():
    items = A.item_table(_frame())
    assert not items.set_index("item_id").loc["l-unknown", "known0"]
    eff = A.frequency_effect(items, "forget_high", "forget_low", n_boot=200).iloc[0]
    # Net drops: high 0.375 - 0 = 0.375; low 0.875 - mean(0.625, 0) = 0.5625.
    assert eff["net_drop_high"] == pytest.approx(0.375)
    assert eff["net_drop_low"] == pytest.approx(0.5625)
    assert eff["effect"] == pytest.approx(-0.1875)
    assert (eff["n_high"], eff["n_low"], eff["n_control_low"], eff["n_min"]) == (2, 2, 2, 2)
    assert eff["effect_lo"] <= eff["effect"] <= eff["effect_hi"]
    assert eff["verdict"] == DESCRIPTIVE  # two items per arm
    all_sel = items.assign(selection="all")
    assert (
        A.frequency_effect(all_sel, "forget_high", "forget_low", n_boot=200).iloc[0]["verdict"] == DESCRIPTIVE
    )


def test_margin_matching_pairs_nearest_within_the_caliper():
    items = pd.DataFrame(
        {
            **{c: ["x"] * 6 for c in ["run_id", "model", "size", "method", "selection", "probe"]},
            "seed": 0,
            "role": "forget",
            "level": ["h", "h", "h", "l", "l", "l"],
            "item_id": list("abcdef"),
            "known0": True,
            "margin0": [3.0, 1.0, 2.0, 1.05, 2.1, -5.0],
        }
    )
    kept = A.match_on_margin(items, "h", "l")
    # a (3.0) has no partner within 0.2 SD; f (-5.0) neither.
    assert sorted(kept["item_id"]) == ["b", "c", "d", "e"]


def test_verdict_words_have_one_meaning_each():
    assert set(VERDICTS) == {SUPPORTED, OPPOSITE, INCONCLUSIVE, NO_ESTIMATE, DESCRIPTIVE}
    assert A.verdict(-0.2, -0.3, -0.1, expected=-1) == SUPPORTED
    assert A.verdict(-0.2, -0.3, 0.1, expected=-1) == INCONCLUSIVE
    assert A.verdict(0.2, 0.1, 0.3, expected=-1) == OPPOSITE
    assert A.verdict(0.0, 0.0, 0.0, expected=-1, moved=False) == NO_ESTIMATE  # lr = 0: nothing moved
    assert A.verdict(math.nan, 0.0, 0.0, expected=1) == NO_ESTIMATE  # not reached
    assert A.verdict(-0.2, -0.3, -0.1, expected=-1, n_min=3) == DESCRIPTIVE
    assert A.verdict(-0.2, -0.3, -0.1, expected=-1, targeted=False) == DESCRIPTIVE
    # With >= 3 seeds the seed-level interval must agree.
    assert A.verdict(-0.2, -0.3, -0.1, -1, seed_lo=-0.4, seed_hi=0.2, n_seeds=3) == INCONCLUSIVE
    assert A.verdict(-0.2, -0.3, -0.1, -1, seed_lo=-0.4, seed_hi=-0.01, n_seeds=3) == SUPPORTED
    assert A.verdict(-0.2, -0.3, -0.1, -1, seed_lo=-0.4, seed_hi=0.2, n_seeds=2) == SUPPORTED
    assert (
        A.adjusted_verdict(-0.2, 0.01, -1) == SUPPORTED and A.adjusted_verdict(-0.2, 0.2, -1) == INCONCLUSIVE
    )
    assert A.adjusted_verdict(0.2, 0.01, -1) == OPPOSITE


def test_misalignment_at_a_level_of_forgetting():
    v = _frame()
    mi = A.misalignment_items(v)
    # high: target accuracy first <= 0.5 at step 6, where both targets are lost but still ranked first.
    high = mi[(mi["level"] == "forget_high") & (mi["forgetting"] == 0.5)]
    assert set(high["step"]) == {6} and high.loc[high["role"] == "forget", "rank1"].all()
    reach = A.forgetting_reach(v)
    m = A.misalignment(mi, reach, n_boot=200)
    m = m[m["forgetting"] == 0.5].set_index(["level", "view"])
    assert m.loc[("forget_high", "rank1"), "share"] == 1.0
    # No control item of forget_high was lost: the control share is no estimate (NaN), never 0.
    assert m.loc[("forget_high", "rank1"), "n_control_forgotten"] == 0
    assert math.isnan(m.loc[("forget_high", "rank1"), "control_share"])
    assert (
        math.isnan(m.loc[("forget_high", "rank1"), "diff"]) and not m.loc[("forget_high", "rank1"), "control"]
    )
    # low: read at step 2, targets lost and still ranked first; control lc0 still generated there.
    assert m.loc[("forget_low", "rank1"), "share"] == 1.0 and m.loc[("forget_low", "logprob"), "share"] == 1.0
    # Both levels: the mean of the two levels' shares.
    assert m.loc[("both", "rank1"), "share"] == 1.0 and m.loc[("both", "rank1"), "n_forgotten"] == 4


def test_a_level_that_never_reaches_the_forgetting_level_has_no_estimate():
    v = _frame()
    # forget_high keeps one of its two targets to the end: accuracy 0.5, never <= 0.25.
    v.loc[(v["item_id"] == "h1"), "gen_known"] = True
    reach = A.forgetting_reach(v)
    r = reach.set_index(["level", "forgetting"])
    assert r.loc[("forget_high", 0.5), "reached"] and not r.loc[("forget_high", 0.25), "reached"]
    m = A.misalignment(A.misalignment_items(v), reach, n_boot=100).set_index(["level", "forgetting", "view"])
    row = m.loc[("forget_high", 0.25, "rank1")]
    assert not row["reached_all"] and row["runs_reached"] == 0 and math.isnan(row["share"])
    assert math.isnan(m.loc[("both", 0.25, "rank1"), "share"])  # both levels must reach it
    assert m.loc[("forget_low", 0.25, "rank1"), "reached_all"]
    # Across sizes: the slope at 0.25 is "no estimate", its censoring named.
    big = pd.concat(
        [v, v.assign(size="small", model="small-s0", run_id=v["run_id"] + "-small")], ignore_index=True
    )
    big_reach = A.forgetting_reach(big)
    trend = A.size_trend(A.misalignment_items(big), big_reach, {"tiny": 1e6, "small": 4e6}, n_boot=100)
    t = trend[(trend["forgetting"] == 0.25) & (trend["view"] == "rank1") & (trend["measure"] == "share")]
    t = t.set_index("level")
    assert (
        t.loc["forget_high", "verdict"] == NO_ESTIMATE
        and "0 of 1 runs reached it" in t.loc["forget_high", "censored"]
    )
    assert t.loc["both", "verdict"] == NO_ESTIMATE
    assert t.loc["forget_low", "verdict"] == DESCRIPTIVE  # it has an estimate, from 2 items


def test_a_study_whose_level_never_reaches_L_says_no_estimate_and_names_the_censoring():
    from frequnlearn.report.build import Layout, analyse

    v = _frame()
    # forget_high keeps both targets at the larger size: its runs there never reach L = 0.5.
    small = v.assign(size="small", model="small-s0", run_id=v["run_id"].str.replace("tiny", "small"))
    small.loc[small["item_id"].isin(["h0", "h1"]), "gen_known"] = True
    big = pd.concat([v, small], ignore_index=True)
    lay = Layout(
        levels=["forget_high", "forget_low"], sizes=["tiny", "small"], methods=["ga+gd"], selections=["known"],
        probes=["question"], high="forget_high", low="forget_low", params={"tiny": 1e6, "small": 4e6},
    )  # fmt: skip
    unlearn = {"max_steps": 8, "stop_forget_level": 0.5, "stop_retain_drop": 0.2}
    res = analyse(big, lay, {"config": {"study": {"n_boot": 100}, "unlearn": unlearn}})
    h2 = res.headlines[1]
    assert h2.verdict == NO_ESTIMATE and "forget_high at small" in h2.meaning
    text = res.findings[1]
    assert "L = 0.5, T = 0.2, S_max = 8 steps" in text  # the budget
    assert (
        "forget_high, forgetting level 0.5 (ga+gd): at tiny reached in its run (step 6); at small censored: "
        "0 of 1 runs reached it (it ended at accuracy 1.00 after 8 steps), so forget_high at small "
        "has no estimate." in text
    )
    assert "forget_low, forgetting level 0.5 (ga+gd): at tiny reached in its run (step 2); at small" in text
    r = A.reach_summary(res.tables["forgetting_reach"])
    r = r[(r["forgetting"] == 0.5) & (r["probe"] == "question")].set_index(["size", "level"])
    assert (
        r.loc[("small", "forget_high"), "censored"] == 1
        and r.loc[("small", "forget_high"), "runs_reached"] == 0
    )
    assert math.isnan(r.loc[("small", "forget_high"), "step_min"])
    assert r.loc[("small", "forget_high"), "censored_accuracy_max"] == 1.0
    assert r.loc[("tiny", "forget_low"), "step_min"] == 2 and r.loc[("tiny", "forget_high"), "step_max"] == 6
    mis = res.tables["misalignment"]
    cut = mis[(mis["size"] == "small") & (mis["level"] == "forget_high") & (mis["forgetting"] == 0.5)]
    assert len(cut) and cut["share"].isna().all() and not cut["reached_all"].any()


def test_misalignment_curve_over_forgetting_has_wilson_bands():
    curve = A.misalignment_curve(_frame())
    c = curve[(curve["level"] == "forget_high") & (curve["role"] == "forget") & (curve["view"] == "rank1")]
    c = c.set_index("step")
    assert list(c["forgetting"]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert c.loc[6, "share"] == 1.0 and c.loc[8, "share"] == 0.0 and math.isnan(c.loc[0, "share"])
    assert c.loc[6, "share_lo"] < 1.0 and c.loc[6, "share_hi"] == 1.0


def test_mediation_reproduces_the_committed_effect_study():
    # results/effect (five seeds on two worlds): total -0.115 +- 0.042 and -0.049 +- 0.046 once margin
    # enters (HC1, 1.96 SE), 57% of the total through margin.
    items = pd.read_csv(RESULTS / "effect" / "items.csv")
    q = items[(items["method"] == "ga+gd") & (items["probe"] == "question")]
    med, points = A.mediation(q, "forget_high", "forget_low", n_boot=200)
    m = med[med["selection"] == "known"].iloc[0]
    assert m["total"] == pytest.approx(-0.1152, abs=0.0005) and 1.96 * m["total_ols_se"] == pytest.approx(
        0.0419, abs=0.001
    )
    assert m["direct"] == pytest.approx(-0.0490, abs=0.0005) and 1.96 * m["direct_ols_se"] == pytest.approx(
        0.0455, abs=0.001
    )
    assert m["indirect"] == pytest.approx(-0.0662, abs=0.001) and m["share_mediated"] == pytest.approx(
        0.574, abs=0.01
    )
    assert (m["margin_high"], m["margin_low"]) == (
        pytest.approx(1.925, abs=0.005),
        pytest.approx(1.265, abs=0.005),
    )
    assert (m["n_people"], m["seeds"], m["n_seeds"], m["n_worlds"]) == (704, 10, 5, 2)
    assert set(points.loc[points["selection"] == "known", "level"]) == {"forget_high", "forget_low"}


def test_methods_with_the_same_per_item_drops_count_once():
    # results/tiny: on the bio probe SimNPO+GD's per-item drops are GA+GD's (r 0.99, 96% identical).
    items = pd.read_csv(RESULTS / "tiny" / "items.csv")
    dups = A.near_identical(items, "method")
    q = dups[(dups["selection"] == "known") & (dups["probe"] == "bio")]
    assert len(q) == 1 and (q.iloc[0]["value"], q.iloc[0]["same_as"]) == ("simnpo+gd", "ga+gd")
    assert q.iloc[0]["correlation"] >= 0.95 and q.iloc[0]["identical"] >= 0.8
    assert A.near_identical(items, "probe").empty  # the three probes measure different things
    # results/effect: alike (r 0.91-0.97) but not the same (71-96% identical): both are counted.
    assert A.near_identical(pd.read_csv(RESULTS / "effect" / "items.csv"), "method").empty


def test_a_probe_that_repeats_another_counts_once():
    items = pd.read_csv(RESULTS / "effect" / "items.csv")
    items = items[(items["method"] == "ga+gd") & (items["probe"] == "question")]
    both = pd.concat([items, items.assign(probe="paraphrase")], ignore_index=True)
    dups = A.near_identical(both, "probe")
    assert set(zip(dups["value"], dups["same_as"])) == {("paraphrase", "question")}
    tables = {"frequency_effect": A.frequency_effect(both, "forget_high", "forget_low", n_boot=100)}
    primary = A.resolve_primary(None, ["ga+gd"], ["tiny"], ["forget_high", "forget_low"])
    _, fam = A.families(tables, primary, dups, ["tiny"], ["ga+gd"])
    rep = fam[fam["probe"] == "paraphrase"].iloc[0]
    assert rep["role"] == "repeat" and rep["same_probe_as"] == "question" and rep["verdict"] == SUPPORTED


def test_primary_endpoint_defaults_and_declaration():
    p = A.resolve_primary(None, ["ga+gd", "simnpo+gd"], ["tiny"], ["forget_high", "forget_low"])
    assert (p.method, p.probe, p.size, p.grid, p.view, p.forgetting) == (
        "ga+gd",
        "question",
        "tiny",
        False,
        "rank1",
        0.5,
    )
    p = A.resolve_primary({"method": "simnpo+gd"}, ["ga+gd", "simnpo+gd"], ["mini", "tiny"], ["1", "2", "4"])
    assert (p.method, p.size, p.grid) == ("simnpo+gd", "all", True)


def test_findings_count_exploratory_comparisons_and_repeats_once():
    from frequnlearn.report.build import Layout

    # results/effect's GA+GD rows, and the same rows again as SimNPO+GD: a method that repeats another.
    gd = pd.read_csv(RESULTS / "effect" / "items.csv")
    gd = gd[gd["method"] == "ga+gd"]
    items = pd.concat([gd, gd.assign(method="simnpo+gd")], ignore_index=True)
    lay = Layout(
        levels=["forget_high", "forget_low"],
        sizes=["tiny"],
        methods=["ga+gd", "simnpo+gd"],
        selections=["known"],
        probes=["question", "paraphrase", "bio"],
        high="forget_high",
        low="forget_low",
        params={"tiny": 1e6},
    )
    fam_tables = {
        "frequency_effect": A.frequency_effect(items, "forget_high", "forget_low", n_boot=200),
        "mediation": A.mediation(items, "forget_high", "forget_low", n_boot=200)[0],
        "hazard_ratio": A.survival(items, "forget_high", "forget_low")[1],
        "dose_response": A.dose_response(items, n_boot=200)[1],
    }
    primary = A.resolve_primary(None, lay.methods, lay.sizes, lay.levels)
    dups = A.near_identical(items, "method")
    primaries, fam = A.families(fam_tables, primary, dups, lay.sizes, lay.methods)
    p1 = primaries["1"]
    assert p1["method"] == "ga+gd" and p1["probe"] == "question" and p1["verdict"] == SUPPORTED
    assert primaries["2"] is None
    # simnpo+gd repeats ga+gd on the question probe: listed, not counted, with ga+gd's word.
    rep = fam[(fam["method"] == "simnpo+gd") & (fam["probe"] == "question")]
    assert (rep["role"] == "repeat").all() and not rep["counted"].any()
    # The two-level slope is the effect per e-fold: not in the family at all.
    assert not (fam["table"] == "dose_response").any()
    counted = fam[fam["counted"]]
    assert counted["p_holm"].notna().all() and (counted["p_holm"] >= counted["p"] - 1e-12).all()
    # The words written back to the tables are the family's.
    fe = fam_tables["frequency_effect"]
    assert fe.loc[fe["role"] == "primary", "verdict"].tolist() == [SUPPORTED]
    assert set(fe["verdict"]) <= set(VERDICTS)


def test_markdown_table():
    from frequnlearn.report.prose import as_markdown

    md = as_markdown(pd.DataFrame({"a": [1.0, math.nan], "b": ["x", "y"]}))
    assert md.splitlines()[0] == "| a | b |" and "| 1.000 | x |" in md


def test_budget_names_the_stopping_rule():
    from frequnlearn.report.prose import budget

    assert (
        budget({"max_steps": 30}, [30, 30])
        == "fixed budget of at most 30 steps, no stopping rule (runs ended at step 30)"
    )
    text = budget({"max_steps": 200, "stop_forget_level": 0.5, "stop_retain_drop": 0.1}, [12, 40])
    assert (
        "stop when the targets' normalised generation accuracy is <= 0.5 or retain accuracy has dropped"
        in text
    )
    assert "at most 200 steps" in text and "steps 12-40" in text
    assert text.startswith("stopping rule (L = 0.5, T = 0.1, S_max = 200 steps)")
    only_l = budget({"epochs": 5, "stop_forget_level": 0.25}, [])
    assert only_l.startswith("stopping rule (L = 0.25, T = off, S_max = 5 epochs)") and "retain" not in only_l
    assert "not recorded" in budget({})
    restored = budget({"max_steps": 20, "stop_retain_drop": 0.07, "stop_restore": True}, [6, 20])
    assert "dropped by more than 0.07 (then back to the last evaluated step within it)" in restored
    assert "back to" not in text
    backtracked = budget(
        {"max_steps": 20, "stop_retain_drop": 0.07, "stop_restore": True, "stop_backtrack": 2,
         "stop_backtrack_factor": 0.5}, [6, 20],
    )  # fmt: skip
    assert (
        "(then back to the last evaluated step within it; the first 2 such crossings go on from there at "
        "0.5 times the rate)" in backtracked
    )


# ------------------------------------------------------------------------------------ the report page


def _raw(v: pd.DataFrame) -> pd.DataFrame:
    """Per-item evaluation rows (a prob and a gen row per verdict) as a run's trajectory stores them."""
    base = v.drop(columns=[c for c in A.RUN_COLUMNS if c != "run_id"] + ["gen_known", "prob_known"])
    base = base.assign(
        model=v["model"],
        group=v["level"],
        attribute="birth_city",
        frequency=np.where(v["level"] == "forget_high", 10.0, 1.0),
        bucket=None,
        finite=True,
    )
    prob = base.assign(
        family="prob",
        rank=np.where(v["prob_known"], 1.0, 3.0),
        logprob=-3.0,
        p_norm=0.3,
        rougeL_recall=np.nan,
        known=np.nan,
    )
    gen = base.assign(
        family="gen",
        rank=np.nan,
        logprob=np.nan,
        p_norm=np.nan,
        truth_ratio=np.nan,
        margin=np.nan,
        logprob_per_token=np.nan,
        rougeL_recall=v["gen_known"].astype(float),
        known=v["gen_known"].astype(float),
        exact=v["gen_known"].astype(float),
        contains=np.nan,
    )
    return pd.concat([prob, gen], ignore_index=True)


def _write_run(root, sizes=("mini", "tiny")) -> None:
    rng = np.random.default_rng(0)
    for size in sizes:
        (root / "models" / f"{size}-s0").mkdir(parents=True)
        (root / "models" / f"{size}-s0" / "config.json").write_text(
            json.dumps(
                {
                    "n_layer": 2,
                    "n_embd": 32 if size == "mini" else 64,
                    "n_head": 2,
                    "n_positions": 64,
                    "vocab_size": 400,
                }
            )
        )
        for level, lost in (("forget_high", 6), ("forget_low", 2)):
            run = _run(level, size=size)
            rows = []
            for i in range(12):
                when = lost + 2 * int(rng.integers(0, 2))
                gens = [s < when for s in (0, 2, 4, 6, 8)]
                rows += _rows(
                    run,
                    "forget",
                    f"{level}-t{i}",
                    gens,
                    probs=[s < when + 2 for s in (0, 2, 4, 6, 8)],
                    margin=float(rng.normal(1.5, 0.5)),
                )
                rows += _rows(run, "control", f"{level}-c{i}", [True] * 5, margin=float(rng.normal(1.5, 0.5)))
                rows += _rows(run, "retain", f"r{i}", [True] * 5)
            path = root / "unlearn" / f"{size}-s0" / "ga+gd" / f"{level}-known"
            path.mkdir(parents=True)
            _raw(pd.DataFrame(rows)).to_parquet(path / "trajectory.parquet")
            info = {
                "task": run["run_id"],
                "model": run["model"],
                "size": size,
                "seed": 0,
                "method": "ga+gd",
                "level": level,
                "selection": "known",
            }
            (path / ".stage.json").write_text(json.dumps(info))
    (root / "data").mkdir()
    (root / "data" / "manifest.json").write_text(
        json.dumps({"frequency_only_baseline": {"forget_high": {"n": 50, "top1": 0.12, "chance": 0.1}}})
    )
    study = {"study": {"levels": ["forget_high", "forget_low"], "model_sizes": list(sizes), "n_boot": 200}}
    (root / "study.json").write_text(json.dumps({"config": study}))


def test_report_page_order_and_contents(tmp_path):
    _write_run(tmp_path)
    out = build_report(tmp_path)
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    contents = re.sub(r"<nav>.*?</nav>", "", html, flags=re.S)  # the page's list of sections
    for page in (contents, md):
        order = [
            page.index(s)
            for s in (
                "Finding 1",
                "Finding 2",
                "Finding 1 as a dose-response",
                "Finding 2 as a curve",
                "Terms",
                "Verdicts",
                "Frequency-only baseline",
                "Full tables",
                "Frequency effect (all cells",
                "More figures",
                "Frequency effect (forget_high minus forget_low) per model size",
                "commit:",
            )
        ]
        assert order == sorted(order)
    # The two curves lead: the dose-response and misalignment against size, before the per-cell figures.
    figures = [
        md.index(f"]({name})") for name in ("dose_response.png", "size_trend.png", "frequency_effect.png")
    ]
    assert figures == sorted(figures) and md.index("> **Finding 2") < figures[0]
    # The report leads with one headline per finding, its declared primary endpoint.
    record = json.loads((out / "findings.json").read_text())
    findings, heads = record["findings"], record["headlines"]
    assert [h["finding"] for h in heads] == ["1", "2"] and all(h["verdict"] in VERDICTS for h in heads)
    assert findings[0].startswith("Finding 1 (frequent facts are harder to unlearn): ")
    assert "total frequency effect" in findings[0] and "every size pooled" in findings[0]
    assert "e-fold of frequency" in findings[0] and "not a second result" in findings[0]
    assert findings[1].startswith("Finding 2") and "still ranked first" in findings[1]
    # Two sizes pooled: 24 items per arm carry a verdict; 12 forgotten items per size do not.
    assert heads[0]["verdict"] == SUPPORTED and heads[0]["n_items"] == 24 and heads[0]["n_people"] == 48
    assert heads[1]["verdict"] == DESCRIPTIVE and heads[1]["n_items"] == 12
    assert any(f.startswith("Finding 1, exploratory:") for f in findings)
    assert not any("not supported" in f for f in findings)
    # Every table of the HTML page scrolls inside its container; the full tables are collapsed.
    assert html.count("<table") == html.count('<div class="scroll"><table')
    assert html.count("<details>") >= 4 and html.count("data:image/png;base64,") >= 4
    assert re.search(r"[1-9][0-9]* item trajectories in all", html) and "0.120" in html
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert list(verdicts["size"]) == ["mini", "tiny", "all"]
    for name in (
        "mediation",
        "hazard_ratio",
        "survival",
        "exploratory",
        "misalignment_curve",
        "forgetting_reach",
    ):
        assert (out / f"{name}.csv").is_file(), name
    assert pd.read_csv(out / "parameters.csv").set_index("size")["parameters"].is_monotonic_increasing


def test_size_trend_uses_the_raw_share_and_a_control_only_where_informative():
    v = _frame()
    v = pd.concat(
        [v, v.assign(size="small", model="small-s0", run_id=v["run_id"] + "-small")], ignore_index=True
    )
    params = {"tiny": 1e6, "small": 4e6}
    trend = A.size_trend(A.misalignment_items(v), A.forgetting_reach(v), params, n_boot=200)
    t = trend[(trend["forgetting"] == 0.5) & (trend["view"] == "rank1")].set_index(["level", "measure"])
    # The raw share has an estimate (same at both sizes: slope 0), from too few items for a verdict.
    assert (
        t.loc[("both", "share"), "slope"] == pytest.approx(0.0)
        and t.loc[("both", "share"), "verdict"] == DESCRIPTIVE
    )
    # forget_high lost no control item: its control-subtracted slope has no estimate (0/0), never 0.
    assert math.isnan(t.loc[("forget_high", "minus control"), "slope"])
    assert t.loc[("forget_high", "minus control"), "verdict"] == NO_ESTIMATE


def test_an_exposure_grid_compares_its_largest_and_smallest_level():
    from frequnlearn.report.build import high_and_low

    assert high_and_low(["1", "2", "4", "32"]) == ("32", "1")
    assert high_and_low(["forget_high", "forget_low"]) == ("forget_high", "forget_low")


def test_report_elsewhere_names_the_study_command_commit_and_wall_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    study = json.loads((run / "study.json").read_text())
    study.update(command="frequnlearn study configs/tiny.yaml --out runs/tiny", commit="abc1234")
    study["hardware"] = {"cpu_count": 2, "torch_threads": 1, "machine": "study-machine"}
    (run / "study.json").write_text(json.dumps(study))
    (run / "timings.json").write_text(json.dumps({"unlearn:mini-s0/ga+gd/x": 90.0, "baseline:mini-s0": 30.0}))
    out = build_report(run, tmp_path / "published")
    assert out == tmp_path / "published" and not (run / "report").exists()
    md = (out / "report.md").read_text()
    assert "command: frequnlearn study configs/tiny.yaml --out runs/tiny" in md
    assert "commit: abc1234" in md
    assert "wall time: 2.0 min of stage work (unlearn 1.5, baseline 0.5 min)" in md
    # The hardware line is the study's (its thread count), not that of the process writing the report.
    assert "'torch_threads': 1" in md and "study-machine" in md


def test_report_shows_what_each_pretrained_model_knew(tmp_path):
    # Sizes compared for Finding 2 must have learned forget_high about equally: the report says how well.
    _write_run(tmp_path)
    for size, acc in (("mini", 0.9), ("tiny", 0.975)):
        summary = {
            "n_params": 1000,
            "epochs": 60.0,
            "knowledge": {
                "by_group": {
                    "forget_high": {"accuracy": acc, "n": 40},
                    "forget_low": {"accuracy": 0.3, "n": 60},
                }
            },
        }
        run = {"config": {"preset": size}, "seed": 0, "summary": summary}
        (tmp_path / "models" / f"{size}-s0" / "run.json").write_text(json.dumps(run))
    out = build_report(tmp_path)
    k = pd.read_csv(out / "pretraining_knowledge.csv").set_index("size")
    assert k.loc["tiny", "known forget_high"] == 0.975 and k.loc["mini", "n forget_low"] == 60
    assert "Pretraining knowledge per model" in (out / "report.md").read_text()


def test_a_grid_verdict_reads_its_slope_per_e_fold_not_as_a_level_difference():
    from frequnlearn.report.headline import OPPOSITE, SUPPORTED
    from frequnlearn.report.prose import _meaning_1

    row = {"estimate": -0.105}
    grid = _meaning_1(SUPPORTED, row, "16", "1", "", grid=True)
    assert grid.startswith("Per e-fold of frequency (from 1 to 16 copies)") and "0.105" in grid
    assert "16 items spent" not in grid and "harder to unlearn" in grid
    assert "more forgotten" in _meaning_1(OPPOSITE, {"estimate": 0.2}, "16", "1", "", grid=True)
    two = _meaning_1(SUPPORTED, {"estimate": -0.265}, "forget_high", "forget_low", "")
    assert two.startswith("forget_high items spent 0.265 of the budget less forgotten than forget_low")


def test_mediated_share_is_estimated_only_for_a_total_told_apart_from_zero():
    from frequnlearn.report.prose import _mediation_note

    primary = A.Primary(method="ga+gd", size="tiny")
    # results/effect: total -0.115 [-0.169, -0.057], 57% of it through margin.
    effect = _mediation_note(pd.read_csv(RESULTS / "effect" / "mediation.csv"), primary)
    assert len(effect) == 1 and "(57% of the total)" in effect[0]
    # results/placebo-effect: total -0.003 [-0.110, +0.097]; its ratio (2.30, written to its mediation.csv
    # before the rule) is no share, and the analysis now estimates none.
    assert pd.read_csv(RESULTS / "placebo-effect" / "mediation.csv")["share_mediated"].iloc[0] > 2
    items = pd.read_csv(RESULTS / "placebo-effect" / "items.csv")
    q = items[(items["method"] == "ga+gd") & (items["probe"] == "question")]
    med, _ = A.mediation(q, "forget_high", "forget_low", n_boot=200)
    m = med[med["selection"] == "known"].iloc[0]
    assert m["total_lo"] < 0 < m["total_hi"] and math.isnan(m["share_mediated"])
    placebo = _mediation_note(med, primary)
    assert len(placebo) == 1 and "of the total" not in placebo[0] and "%" not in placebo[0]
