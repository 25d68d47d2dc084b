from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frequnlearn.report import analysis as A


def test_auc_and_threshold_closed_form():
    # Linear fall from 1 to 0 over 10 steps: mean level 0.5.
    assert A.normalised_auc([0, 10], [1.0, 0.0]) == pytest.approx(0.5)
    # Unequal spacing: trapezoids (0..2: 1.0, 2..10: 0.5) -> (2*1 + 8*0.5) / 10 = 0.6.
    assert A.normalised_auc([0, 2, 10], [1.0, 1.0, 0.0]) == pytest.approx(0.6)
    assert A.steps_to_threshold([0, 2, 4], [1.0, 0.3, 0.05], 0.1) == 4
    assert math.isnan(A.steps_to_threshold([0, 2], [1.0, 0.5], 0.1))


def test_intervals():
    mean, lo, hi = A.t_interval([1.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(12.706)  # sd sqrt(2), n 2
    assert math.isnan(A.t_interval([1.0])[1])
    m, lo, hi = A.bootstrap_mean(np.ones(20))
    assert (m, lo, hi) == (1.0, 1.0, 1.0)


def _verdicts(level: str, fall_step: int, seed: int = 0) -> pd.DataFrame:
    """4 forget items that stop being generated at `fall_step` but stay ranked first two steps longer,
    and 4 retain items that stay known."""
    rows = []
    run = f"tiny-s{seed}/ga+gd/{level}-known"
    for step in (0, 2, 4, 6, 8):
        for i in range(4):
            gen = step < fall_step
            prob = step < fall_step + 2
            rows.append(
                (
                    run,
                    "tiny-s0",
                    "tiny",
                    seed,
                    "ga+gd",
                    level,
                    "known",
                    "forget",
                    "question",
                    step,
                    f"{level}-{i}",
                    gen,
                    prob,
                )
            )
            rows.append(
                (
                    run,
                    "tiny-s0",
                    "tiny",
                    seed,
                    "ga+gd",
                    level,
                    "known",
                    "retain",
                    "question",
                    step,
                    f"r{i}",
                    True,
                    True,
                )
            )
    cols = A.RUN_COLUMNS + ["role", "probe", "step", "item_id", "gen_known", "prob_known"]
    return pd.DataFrame(rows, columns=cols)


def test_curves_and_summaries():
    v = pd.concat([_verdicts("forget_high", 6), _verdicts("forget_low", 2)], ignore_index=True)
    c = A.curves(v)
    high = c[(c["level"] == "forget_high") & (c["role"] == "forget")].set_index("step")
    assert list(high["acc_gen"]) == [1, 1, 1, 0, 0]
    assert list(high["misaligned"]) == [0, 0, 0, 1, 0]  # step 6: not generated, still ranked first
    s = A.run_summaries(c, forget_threshold=0.1, retain_tolerance=0.1).set_index("level")
    # high: 1 until 4, 0 from 6: trapezoids (4*1 + 2*0.5) / 8 = 0.625; low: (2*0.5)/8 = 0.125
    assert s.loc["forget_high", "forget_auc"] == pytest.approx(0.625)
    assert s.loc["forget_low", "forget_auc"] == pytest.approx(0.125)
    assert s.loc["forget_high", "steps_to_threshold"] == 6
    assert s.loc["forget_low", "misaligned_peak"] == 1.0
    assert s.loc["forget_high", "forget_at_matched_retain"] == 0.0  # retain never fell
    aucs = A.item_aucs(v)
    head = A.headline(s.reset_index(), aucs, ["forget_high", "forget_low"], n_boot=200)
    eff = A.frequency_effect(head, "forget_high", "forget_low")
    assert eff["auc_diff"].iloc[0] == pytest.approx(0.5)
    text = A.describe_findings(
        eff,
        A.seed_differences(s.reset_index(), "forget_high", "forget_low"),
        A.misalignment_by_size(v),
        ["tiny"],
        "forget_high",
        "forget_low",
    )
    assert text[0].startswith("Finding 1 (frequency) holds")


def test_markdown_table():
    md = A.as_markdown(pd.DataFrame({"a": [1.0, math.nan], "b": ["x", "y"]}))
    assert md.splitlines()[0] == "| a | b |" and "| 1.000 | x |" in md
