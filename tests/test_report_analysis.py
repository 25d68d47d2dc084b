from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from frequnlearn.report import analysis as A
from frequnlearn.report import build_report


def test_auc_and_threshold_closed_form():
    # Linear fall from 1 to 0 over 10 steps: mean level 0.5.
    assert A.normalised_auc([0, 10], [1.0, 0.0]) == pytest.approx(0.5)
    # Unequal spacing: trapezoids (0..2: 1.0, 2..10: 0.5) -> (2*1 + 8*0.5) / 10 = 0.6.
    assert A.normalised_auc([0, 2, 10], [1.0, 1.0, 0.0]) == pytest.approx(0.6)
    assert A.steps_to_threshold([0, 2, 4], [1.0, 0.3, 0.05], 0.1) == 4
    assert math.isnan(A.steps_to_threshold([0, 2], [1.0, 0.5], 0.1))


def test_kaplan_meier_counts_censored_runs_at_risk():
    # Events at 2 and 4 (twice), two runs censored at 10: S = 4/5, then 4/5 * (1 - 2/4).
    km = A.kaplan_meier([2, 4, 4, 10, 10], [True, True, True, False, False])
    assert km == [(2.0, pytest.approx(0.8)), (4.0, pytest.approx(0.4))]
    assert A.km_median([2, 4, 4, 10, 10], [True, True, True, False, False]) == 4.0
    assert math.isnan(A.km_median([3, 10, 10], [True, False, False]))  # S stays at 2/3: not reached
    stats = pytest.importorskip("scipy.stats")
    ref = stats.ecdf(stats.CensoredData(uncensored=[2, 4, 4], right=[10, 10])).sf
    assert [s for _, s in km] == pytest.approx(list(ref.probabilities[:2]))


def test_intervals():
    mean, lo, hi = A.t_interval([1.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(12.706)  # sd sqrt(2), n 2
    assert math.isnan(A.t_interval([1.0])[1])
    m, lo, hi = A.bootstrap_mean(np.ones(20))
    assert (m, lo, hi) == (1.0, 1.0, 1.0)
    boot = np.random.default_rng(0).normal(size=20000)
    lo, hi = A.expanded_interval(boot, 5)  # wider than the plain 95% percentile interval for 5 items
    assert hi > 1.96 * 1.2 and lo < -1.96 * 1.2
    assert A.expanded_interval(boot, 10_000)[1] == pytest.approx(1.96, abs=0.05)
    assert A.wilson(0, 10)[0] == 0.0 and 0 < A.wilson(0, 10)[1] < 0.35


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


def test_frequency_effect_subtracts_the_control_arm():
    items = A.item_table(_frame())
    assert not items.set_index("item_id").loc["l-unknown", "known0"]
    eff = A.frequency_effect(items, "forget_high", "forget_low", n_boot=200).iloc[0]
    # Net drops: high 0.375 - 0 = 0.375; low 0.875 - mean(0.625, 0) = 0.5625.
    assert eff["net_drop_high"] == pytest.approx(0.375)
    assert eff["net_drop_low"] == pytest.approx(0.5625)
    assert eff["effect"] == pytest.approx(-0.1875)
    assert (eff["n_high"], eff["n_low"], eff["n_control_low"]) == (2, 2, 2)
    assert eff["effect_lo"] <= eff["effect"] <= eff["effect_hi"]
    all_sel = items.assign(selection="all")
    assert (
        A.frequency_effect(all_sel, "forget_high", "forget_low", n_boot=200).iloc[0]["verdict"]
        == "descriptive"
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


def test_verdict_words():
    assert A.verdict(-0.2, -0.3, -0.1, expected=-1) == "supported"
    assert A.verdict(-0.2, -0.3, 0.1, expected=-1) == "inconclusive"
    assert A.verdict(0.2, 0.1, 0.3, expected=-1) == "not supported"
    assert A.verdict(0.0, 0.0, 0.0, expected=-1) == "not supported"
    assert A.verdict(math.nan, 0.0, 0.0, expected=1) == "no estimate"


def test_misalignment_at_the_matched_forgetting_level():
    mi = A.misalignment_items(_frame())
    # high: target accuracy first <= 0.5 at step 6, where both targets are lost but still ranked first.
    high = mi[mi["level"] == "forget_high"]
    assert set(high["step"]) == {6} and high.loc[high["role"] == "forget", "rank1"].all()
    m = A.misalignment(mi, n_boot=200).set_index(["level", "view"])
    assert m.loc[("forget_high", "rank1"), "target_share"] == 1.0
    assert m.loc[("forget_high", "rank1"), "n_control_forgotten"] == 0
    # low: matched at step 2, targets lost and still ranked first; control lc0 still generated there.
    assert m.loc[("forget_low", "rank1"), "diff"] == 1.0
    assert m.loc[("forget_low", "logprob"), "target_share"] == 1.0
    assert m.loc[("both", "rank1"), "n_forgotten"] == 4


def test_findings_need_known_cells_and_two_sizes():
    items = A.item_table(_frame())
    eff = A.frequency_effect(items, "forget_high", "forget_low", n_boot=200)
    text = A.describe_findings(eff, pd.DataFrame(), pd.DataFrame(), ["tiny"], "forget_high", "forget_low")
    assert text[0].startswith("Finding 1") and "1 known cells" in text[0]
    assert "inconclusive" in text[1] and "n = 2 + 2 target" in text[1] and "95% CI" in text[1]
    assert "needs >= 2 model sizes" in text[-1]
    eff_all = A.frequency_effect(items.assign(selection="all"), "forget_high", "forget_low", n_boot=200)
    text = A.describe_findings(eff_all, pd.DataFrame(), pd.DataFrame(), ["tiny"], "forget_high", "forget_low")
    assert "no verdict" in text[0]


def test_markdown_table():
    md = A.as_markdown(pd.DataFrame({"a": [1.0, math.nan], "b": ["x", "y"]}))
    assert md.splitlines()[0] == "| a | b |" and "| 1.000 | x |" in md


# ------------------------------------------------------------------------------------ the report page


def _raw(v: pd.DataFrame) -> pd.DataFrame:
    """Per-item evaluation rows (a prob and a gen row per verdict) as a run's trajectory stores them."""
    base = v.drop(columns=[c for c in A.RUN_COLUMNS if c != "run_id"] + ["gen_known", "prob_known"])
    base = base.assign(
        model=v["model"],
        person_id=0,
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
    # The findings come from known cells with a control arm: both sizes, three views for Finding 2.
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert findings[0].startswith("Finding 1 as a dose-response") and "2 known cells" in findings[0]
    assert "per e-fold of frequency (2 levels, 1 to 10" in findings[1]
    assert any(f.startswith("Finding 1 (frequency") and "2 known cells" in f for f in findings)
    assert any(f.startswith("Finding 2") and "still ranked first" in f for f in findings)
    # Every table of the HTML page scrolls inside its container; the full tables are collapsed.
    assert html.count("<table") == html.count('<div class="scroll"><table')
    assert html.count("<details>") >= 4 and html.count("data:image/png;base64,") >= 4
    assert re.search(r"[1-9][0-9]* item trajectories in all", html) and "0.120" in html
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert list(verdicts["size"]) == ["mini", "tiny"]
    assert pd.read_csv(out / "parameters.csv").set_index("size")["parameters"].is_monotonic_increasing


def test_size_trend_without_a_control_arm_is_descriptive():
    v = _frame()
    v = pd.concat(
        [v, v.assign(size="small", model="small-s0", run_id=v["run_id"] + "-small")], ignore_index=True
    )
    params = {"tiny": 1e6, "small": 4e6}
    trend = A.size_trend(A.misalignment_items(v), params, n_boot=200)
    assert len(trend) and (trend["verdict"] != "descriptive").all()
    no_control = A.misalignment_items(v[v["role"] != "control"])
    trend = A.size_trend(no_control, params, n_boot=200)
    assert (trend["verdict"] == "descriptive").all()
    text = A.describe_findings(
        pd.DataFrame(), pd.DataFrame(), trend, ["tiny", "small"], "forget_high", "forget_low"
    )
    assert "no verdict" in text[-1] and "control arm" in text[-1]


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
