from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frequnlearn.evaluate.summary import bootstrap_ci, summarize


def table():
    rows = []
    for i in range(20):
        for probe in ("question", "paraphrase"):
            rows.append(
                {
                    "model": "m",
                    "step": 0,
                    "probe": probe,
                    "item_id": f"i{i}",
                    "group": "a" if i < 10 else "b",
                    "frequency": 1.0 if i % 2 else 8.0,
                    "exact": float(i % 3 == 0),
                    "logprob": -float(i),
                }
            )
    return pd.DataFrame(rows)


def test_means_and_items_counted_once():
    out = summarize(table(), by=["group"], metrics=["logprob"], n_boot=200, seed=1).set_index("group")
    assert out.loc["a", "n"] == 10 and out.loc["a", "mean"] == pytest.approx(-4.5)
    assert out.loc["b", "mean"] == pytest.approx(-14.5)
    assert (out.ci_low <= out["mean"]).all() and (out["mean"] <= out.ci_high).all()


def test_deterministic_and_independent_of_other_groups():
    df = table()
    a = summarize(df, by=["group", "probe"], n_boot=300, seed=3)
    b = summarize(df, by=["group", "probe"], n_boot=300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    only_a = summarize(df[df.group == "a"], by=["group", "probe"], n_boot=300, seed=3)
    pd.testing.assert_frame_equal(only_a, a[a.group == "a"].reset_index(drop=True))
    c = summarize(df, by=["group", "probe"], n_boot=300, seed=4)
    assert not np.allclose(a.ci_low, c.ci_low)


def test_by_frequency_and_constant_values():
    df = table()
    df["logprob"] = -2.0
    out = summarize(df, by=["frequency"], metrics=["logprob", "exact"], n_boot=100).set_index(
        ["frequency", "metric"]
    )
    assert out.loc[(8.0, "logprob"), ["mean", "ci_low", "ci_high"]].tolist() == [-2.0, -2.0, -2.0]
    assert out.loc[(8.0, "exact"), "n"] == 10


def test_bootstrap_matches_loop_and_no_boot():
    values = np.random.default_rng(0).normal(size=50)
    low, high = bootstrap_ci(values, 500, 0.9, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 50, size=(500, 50))
    means = [values[row].mean() for row in idx]
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert all(math.isnan(x) for x in bootstrap_ci(values, 0, 0.9, rng))
    assert summarize(table(), by=["group"], metrics=["exact"], n_boot=0).ci_low.isna().all()


def test_metrics_missing_in_a_group_are_skipped():
    df = table()
    df.loc[df.group == "b", "exact"] = math.nan
    out = summarize(df, by=["group"], metrics=["exact"], n_boot=10)
    assert out.group.tolist() == ["a"]
