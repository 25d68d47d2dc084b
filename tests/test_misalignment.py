from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frequnlearn.evaluate.columns import COLUMNS
from frequnlearn.evaluate.misalignment import change_correlation, rates, spearman, verdicts


def frame(rows):
    """Per-item rows in the evaluate layout from (item, step, rank, rouge, logprob_per_token, frequency);
    `known` follows rouge >= 0.5 here, as a hand-set verdict."""
    out = []
    for item_id, step, rank, rouge, lp, freq in rows:
        base = dict.fromkeys(COLUMNS, math.nan)
        base.update(
            model="m",
            run_id="r",
            step=step,
            item_id=item_id,
            person_id=0,
            group="forget_high",
            attribute="employer",
            frequency=freq,
            bucket=None,
            probe="question",
            generation=None,
            finite=True,
        )
        out.append({**base, "family": "prob", "rank": rank, "logprob_per_token": lp})
        known = math.nan if math.isnan(rouge) else float(rouge >= 0.5)
        out.append({**base, "family": "gen", "rougeL_recall": rouge, "known": known, "generation": "x"})
    return pd.DataFrame(out, columns=COLUMNS)


FOUR = [
    ("both", 0, 1.0, 1.0, -0.1, 10.0),
    ("prob_only", 0, 1.0, 0.2, -0.5, 10.0),
    ("gen_only", 0, 3.0, 0.8, -2.0, 1.0),
    ("neither", 0, 2.0, 0.0, -3.0, 1.0),
]


def test_verdicts_and_directions():
    v = verdicts(frame(FOUR)).set_index("item_id")
    assert v.loc["both", ["prob_known", "gen_known", "disagree"]].tolist() == [True, True, False]
    assert v.loc["prob_only", ["prob_only", "gen_only", "disagree"]].tolist() == [True, False, True]
    assert v.loc["gen_only", ["prob_only", "gen_only", "disagree"]].tolist() == [False, True, True]
    assert not v.loc["neither", "disagree"]
    assert v.loc["both", "frequency"] == 10.0


def test_thresholds_are_settings():
    # gen_threshold only reaches tables written before the `known` column existed.
    old = frame(FOUR).drop(columns=["known", "finite"])
    v = verdicts(old, gen_threshold=0.1, prob_rank=2).set_index("item_id")
    assert v.loc["prob_only", "gen_known"] and v.loc["neither", "prob_known"]
    v = verdicts(frame(FOUR), gen_threshold=0.1).set_index("item_id")
    assert not v.loc["prob_only", "gen_known"]


def test_gen_verdict_is_the_known_column_not_rouge():
    df = frame(FOUR)
    # A same-state wrong city: ROUGE-L recall 0.5, but the one "known" rule says no.
    df.loc[(df["item_id"] == "both") & (df["family"] == "gen"), ["rougeL_recall", "known"]] = [0.5, 0.0]
    v = verdicts(df).set_index("item_id")
    assert not v.loc["both", "gen_known"] and v.loc["both", "prob_only"]


def test_non_finite_items_get_no_verdict_and_are_counted():
    df = frame(FOUR + [("broken", 0, math.nan, math.nan, math.nan, 1.0)])
    df.loc[df["item_id"] == "broken", "finite"] = False
    v = verdicts(df)
    assert "broken" not in set(v.item_id) and len(v) == 4 and v.attrs["n_nonfinite"] == 1
    assert v["finite"].all() and {"margin", "truth_ratio", "logprob_per_token"} <= set(v.columns)


def test_rates_by_frequency():
    r = rates(verdicts(frame(FOUR)), by=["model", "step"])
    assert r.loc[0, ["n", "disagree", "prob_only", "gen_only", "prob_known", "gen_known"]].tolist() == [
        4,
        0.5,
        0.25,
        0.25,
        0.5,
        0.5,
    ]
    r = rates(verdicts(frame(FOUR)), by=["frequency"]).set_index("frequency")
    assert r.loc[10.0, "prob_only"] == 0.5 and r.loc[1.0, "gen_only"] == 0.5 and r.loc[1.0, "n"] == 2


def test_items_without_candidates_have_no_verdict():
    df = frame(FOUR + [("nocand", 0, math.nan, 1.0, -1.0, 1.0)])
    assert "nocand" not in set(verdicts(df).item_id)


def test_spearman_known_values():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 1, 0, -7])) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.array([1.0, 2, 3]), np.array([5.0, 5, 5])))
    # With ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> Pearson of the ranks.
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1.0, 2, 3, 4])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman(np.array([0.0, 1, 1, 2]), np.array([3.0, 4, 5, 6])) == pytest.approx(expected)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30).astype(float), rng.normal(size=30)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_change_correlation_from_baseline():
    before = [(f"i{k}", 0, 1.0, 1.0, -0.1, 1.0) for k in range(5)]
    # Step 4: prob falls by k, gen by k as well -> correlation 1; step 8: gen rises as prob falls -> -1.
    step4 = [(f"i{k}", 4, 1.0, 1.0 - 0.1 * k, -0.1 - k, 1.0) for k in range(5)]
    step8 = [(f"i{k}", 8, 1.0, 0.5 + 0.1 * k, -0.1 - k, 1.0) for k in range(5)]
    out = change_correlation(frame(before + step4 + step8), baseline_step=0)
    assert out.step.tolist() == [4, 8] and out.n.tolist() == [5, 5]
    assert out.spearman.tolist() == pytest.approx([1.0, -1.0])


def test_added_columns_come_along():
    df = frame(FOUR)
    df["role"] = "forget"
    v = verdicts(df)
    assert (v["role"] == "forget").all() and len(v) == 4
