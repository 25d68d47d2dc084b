"""The benchmark: its config covers every registered method; the tuning chooses from its grid by retain
cost alone (forget items cannot change the choice); a tiny benchmark with a plugin's method ranks
every method, the plugin's included; a bad config is one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from frequnlearn.bench import load_bench_config
from frequnlearn.bench.tuning import choose, grid, refinements, run_tuning, stopping_cost, tuning_sets
from frequnlearn.cli import main
from frequnlearn.config.study import StudyOptions, parse_method
from frequnlearn.records import QAItem
from frequnlearn.study.sets import select_sets

ROOT = Path(__file__).parents[1]
PLUGIN = "first_token_ga"


# ---------------------------------------------------------------------------------- the config


def test_benchmark_config_names_every_registered_method_and_is_large_enough(capsys, tmp_path):
    from frequnlearn.unlearn.losses import FORGET_LOSSES, base

    cfg = load_bench_config(ROOT / "configs" / "benchmark.yaml")
    built_in = {name for name in FORGET_LOSSES if name not in base._PLUGINS}
    assert {parse_method(m)[0] for m in cfg.study.methods} >= built_in
    assert len(cfg.study.seeds) >= 3 and cfg.selection == "known"
    assert cfg.study.forget_size is None or cfg.study.forget_size >= 60
    from frequnlearn.config.generate import group_sizes

    sizes = group_sizes(cfg.generate.n_people, cfg.generate.group_fractions)
    # A target and a control half of >= 60 known items each need >= 120 known people per level; on
    # the one-attribute world a tiny model knows 0.79-0.89 of forget_high and 0.53-0.64 of forget_low
    # (the ten models of results/effect), so each level needs room below the least of those.
    assert cfg.generate.attributes == ["birth_city"]
    assert sizes["forget_high"] >= 120 / 0.75 and sizes["forget_low"] >= 120 / 0.42
    assert (
        main(["bench", str(ROOT / "configs" / "benchmark.yaml"), "--dry-run", "--out", str(tmp_path / "b")])
        == 0
    )
    out = capsys.readouterr().out
    assert "114 grid points" in out and "84 unlearn" in out
    assert (
        "choice: the point within 0.05 +- 0.02 that forgets most of the tuning set" in out
        and "retain drop exceeds 0.07" in out
    )
    assert "(the first 2 times going on from there at 0.5 times the rate, evaluated every step)" in out


@pytest.mark.parametrize(
    "override, key",
    [
        ("bench.lr_grid=[]", "bench.lr_grid"),
        ("bench.lr_grd=[0.1]", "bench.lr_grd"),
        ("bench.param_grid={idk+gd: {lr: [0.1]}}", "bench.param_grid.idk+gd"),
        ("bench.param_grid={kl+gd: {beta: [0.1]}}", "bench.param_grid.kl+gd"),
        ("bench.param_grid={npo+gd: {nope: [1]}}", "bench.param_grid.npo+gd"),
        ("bench.tuning_seeds=[7]", "bench.tuning_seeds"),
        ("study.model_sizes=[mini,tiny]", "study.model_sizes"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(override, key, capsys, tmp_path):
    cfg = ROOT / "configs" / "benchmark.yaml"
    rc = main(["bench", str(cfg), override, "--dry-run", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and key in err, err


def test_no_config_is_one_line(capsys):
    assert main(["bench", "--dry-run"]) == 2
    assert "configs/benchmark.yaml" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- the tuning


def _runs(drops: dict[str, list[tuple]]) -> pd.DataFrame:
    """Tuning rows from (point, retain drop, utility drop[, share of the tuning set forgotten])."""
    rows = []
    for method, points in drops.items():
        for i, (label, retain, utility, *forgotten) in enumerate(points):
            rows.append(
                {
                    "method": method,
                    "point": label,
                    "grid_index": i,
                    "lr": float(label),
                    "param": "",
                    "value": "",
                    "seed": 0,
                    "retain_drop": retain,
                    "utility_drop": utility,
                    "tuning_set_forgotten": forgotten[0] if forgotten else math.nan,
                }
            )
    return pd.DataFrame(rows)


def test_choose_takes_the_point_closest_to_the_target_retain_cost():
    runs = _runs(
        {
            # GA: a cliff, 0.04 is closest to 0.05 (0.45 overshoots).
            "ga+gd": [("1e-05", 0.0, 0.0), ("5e-05", 0.04, 0.1), ("1e-04", 0.45, 0.3)],
            # Ties at distance 0.01: the smaller utility drop wins, whatever the order.
            "npo+gd": [("1e-05", 0.06, 0.2), ("5e-05", 0.04, 0.1)],
            # Nothing near the target: the closest, not matched; a point without known retain items is last.
            "idk+gd": [("1e-05", math.nan, 0.0), ("5e-05", 0.2, 0.0)],
        }
    )
    c = choose(runs, target=0.05, tolerance=0.02).set_index("method")
    assert c.loc["ga+gd", "point"] == "5e-05" and bool(c.loc["ga+gd", "matched"])
    assert c.loc["npo+gd", "point"] == "5e-05"
    assert c.loc["idk+gd", "point"] == "5e-05" and not bool(c.loc["idk+gd", "matched"])


def test_prefer_largest_rate_takes_the_largest_matched_rate_and_falls_back_to_the_closest():
    """Under a retain-drop stopping rule every rate past the cost stops near it: `closest` picks the
    smallest rate that just reaches it (0.05 exactly), `largest_rate` the largest within 0.05 +- 0.02."""
    runs = _runs(
        {
            "ga+gd": [("1e-05", 0.0, 0.0), ("5e-05", 0.05, 0.1), ("1e-04", 0.066, 0.3), ("3e-04", 0.2, 0.3)],
            # Nothing within the tolerance: the closest, not matched, as with `closest`.
            "idk+gd": [("1e-05", 0.0, 0.0), ("5e-05", 0.2, 0.0)],
        }
    )
    closest = choose(runs, 0.05, 0.02).set_index("method")
    largest = choose(runs, 0.05, 0.02, prefer="largest_rate").set_index("method")
    assert closest.loc["ga+gd", "point"] == "5e-05"
    assert largest.loc["ga+gd", "point"] == "1e-04" and bool(largest.loc["ga+gd", "matched"])
    assert largest.loc["idk+gd", "point"] == closest.loc["idk+gd", "point"] == "1e-05"
    assert not bool(largest.loc["idk+gd", "matched"])


def test_prefer_most_forgotten_takes_the_matched_point_that_forgets_most_of_the_tuning_set():
    """A large rate jumps to the cost in a step and forgets 0.15 of the tuning set; a smaller one spends
    the budget over many steps and forgets 0.3 at the same cost: `most_forgotten` takes the smaller
    rate, `largest_rate` the larger. A point outside the band is never taken, however much it forgets;
    ties go to the closest; with nothing in the band, the closest point, not matched."""
    runs = _runs(
        {
            "ga+gd": [("1e-05", 0.0, 0.0, 0.0), ("3e-04", 0.06, 0.3, 0.3), ("3e-03", 0.05, 0.2, 0.15),
                      ("1e-02", 0.3, 0.5, 0.9)],
            "npo+gd": [("1e-04", 0.065, 0.1, 0.2), ("3e-04", 0.052, 0.1, 0.2)],
            "idk+gd": [("1e-05", 0.0, 0.0, 0.0), ("5e-05", 0.2, 0.0, 0.5)],
        }
    )  # fmt: skip
    most = choose(runs, 0.05, 0.02, prefer="most_forgotten").set_index("method")
    largest = choose(runs, 0.05, 0.02, prefer="largest_rate").set_index("method")
    assert most.loc["ga+gd", "point"] == "3e-04" and bool(most.loc["ga+gd", "matched"])
    assert most.loc["ga+gd", "tuning_set_forgotten"] == pytest.approx(0.3)
    assert largest.loc["ga+gd", "point"] == "3e-03"
    assert most.loc["npo+gd", "point"] == "3e-04"
    assert most.loc["idk+gd", "point"] == "1e-05" and not bool(most.loc["idk+gd", "matched"])


def test_choose_averages_the_tuned_seeds():
    runs = pd.concat(
        [
            _runs({"ga+gd": [("1e-05", 0.0, 0.0), ("5e-05", 0.02, 0.0)]}).assign(seed=0),
            _runs({"ga+gd": [("1e-05", 0.1, 0.0), ("5e-05", 0.2, 0.0)]}).assign(seed=1),
        ]
    )
    (row,) = choose(runs, 0.05, 0.02).to_dict(orient="records")
    assert row["point"] == "1e-05" and row["retain_drop"] == pytest.approx(0.05) and row["seeds"] == 2


def test_bisection_closes_in_on_the_rate_of_the_target_cost():
    """A planted cost: drop = 0.3 * log10(lr / 1e-4) above 1e-4, none below, so a drop of 0.05 lies at
    lr* = 1e-4 * 10**(1/6) = 1.468e-4, between the grid's 1e-4 (no cost) and 3e-4 (0.143, past the band).
    Each round halves the bracket in log lr; the two seeds' mean is what is bisected."""
    lr_star = 1e-4 * 10 ** (0.05 / 0.3)

    def rows(lrs: list[float]) -> pd.DataFrame:
        out = []
        for lr in lrs:
            drop = max(0.0, 0.3 * math.log10(lr / 1e-4))
            for seed, noise in ((0, 0.01), (1, -0.01)):
                out.append(
                    {
                        "method": "ga+gd",
                        "lr": lr,
                        "param": "",
                        "value": "",
                        "seed": seed,
                        "point": f"lr={lr:g}",
                        "retain_drop": drop + noise * (drop > 0),
                    }
                )
        return pd.DataFrame(out)

    tried = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
    widths = []
    for _ in range(4):
        (q,) = refinements(rows(tried), target=0.05, tolerance=0.005)
        assert q.spec == "ga+gd" and q.param is None and q.lr not in tried
        tried.append(q.lr)
        below = max(lr for lr in tried if lr <= lr_star)
        above = min(lr for lr in tried if lr > lr_star)
        widths.append(math.log10(above / below))
    assert widths == pytest.approx(
        [math.log10(3) / 2**k for k in range(1, 5)], rel=0.05
    )  # rates rounded to 3 digits
    assert min(abs(math.log10(lr / lr_star)) for lr in tried) < 0.04
    # Within half the tolerance: done. Never crossing the target (too low a grid): nothing to bisect.
    assert refinements(rows([1e-4, lr_star, 3e-4]), target=0.05, tolerance=0.02) == []
    assert refinements(rows([1e-5, 3e-5, 1e-4]), target=0.05, tolerance=0.02) == []
    # Each tuned value of a setting is bisected on its own.
    two = pd.concat([rows([1e-4, 3e-4]).assign(param="beta", value=v) for v in (0.1, 1.0)])
    assert sorted((q.value, q.lr) for q in refinements(two, 0.05, 0.02)) == [(0.1, 1.73e-4), (1.0, 1.73e-4)]
    assert refinements(two, 0.05, 0.02)[0].overrides == {"lr": 1.73e-4, "beta": 0.1}


def test_grid_crosses_the_rates_with_one_setting():
    points = grid(["ga+gd", "npo+gd"], [1e-4, 1e-3], {"npo+gd": {"beta": [0.1, 1.0]}})
    assert [p.label for p in points] == [
        "lr=0.0001",
        "lr=0.001",
        "lr=0.0001,beta=0.1",
        "lr=0.0001,beta=1.0",
        "lr=0.001,beta=0.1",
        "lr=0.001,beta=1.0",
    ]
    assert points[3].overrides == {"lr": 1e-4, "beta": 1.0}


def _items(n_retain: int = 30, n_forget: int = 20, answer: str = "Paris") -> list[QAItem]:
    out = []
    for group, n in (
        ("retain", n_retain),
        ("utility", 10),
        ("forget_high", n_forget),
        ("forget_low", n_forget),
    ):
        for i in range(n):
            pid = f"p{group[:2]}{i:03d}"
            out.append(
                QAItem(
                    item_id=f"{pid}-birth_city",
                    person_id=pid,
                    group=group,
                    attribute="birth_city",
                    question=f"Where was {pid} born?",
                    answer=answer if group.startswith("forget") else "Rome",
                )
            )
    return out


def test_tuning_sets_read_no_forget_item_and_match_the_studys_evaluated_people():
    options = StudyOptions(eval_retain_size=6, eval_utility_size=4, selections=["known"])
    items = _items()
    known = {it.item_id for it in items}
    sets = tuning_sets(items, known, options, seed=3, size=5)
    # Other forget items (other answers, fewer of them, other people known): the same sets.
    other = [it for it in _items(n_forget=7, answer="Oslo") if it.group != "forget_low"]
    other_known = {
        it.item_id for it in other if it.group != "forget_high" or it.item_id.endswith("1-birth_city")
    }
    assert tuning_sets(other, other_known, options, seed=3, size=5) == sets
    assert all(it.group == "retain" for it in sets["tuning"] + sets["retain"] + sets["eval_retain"])
    tuned = {it.item_id for it in sets["tuning"]}
    assert len(tuned) == 5 and not tuned & {it.item_id for it in sets["eval_retain"] + sets["retain"]}
    study = select_sets(items, known, options, 3, level="forget_high")
    assert sets["eval_retain"] == study["eval_retain"] and sets["eval_utility"] == study["eval_utility"]


def test_stopping_cost_is_the_drop_of_the_items_known_at_the_start():
    rows = []
    for step, known in ((0, [1, 1, 1, 0]), (2, [1, 0, 1, 1]), (4, [0, 0, 1, 1])):
        rows += [
            {
                "family": "gen",
                "probe": "question",
                "role": "retain",
                "step": step,
                "item_id": f"i{k}",
                "known": float(v),
            }
            for k, v in enumerate(known)
        ]
    drop, n0, last = stopping_cost(pd.DataFrame(rows), "retain")
    assert (drop, n0, last) == (pytest.approx(2 / 3), 3, 4.0)


# ------------------------------------------------------------------------- a tiny benchmark, end to end

CONFIG = """
generate: {n_people: 48, seed: 3, attributes: [birth_city]}
pretrain: {preset: tiny, n_layer: 2, n_embd: 64, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 40,
           batch_size: 8, lr: 5.0e-3, save_every: 1000, eval_per_group: 2, num_threads: 1}
unlearn: {lr: 2.0e-3, max_steps: 4, eval_steps: [0, 2, 4], batch_size: 4}
evaluate: {metrics: [prob, gen, extract], probes: [question], utility_tasks: [], max_new_tokens: 8, batch_size: 16}
study: {model_sizes: [tiny], methods: [ga+gd, npo+gd, PLUGIN+gd], plugins: [PLUGIN_FILE], selections: [all],
        attribute: birth_city, eval_retain_size: 6, eval_utility_size: 6, n_boot: 200}
bench: {lr_grid: [1.0e-5, 1.0e-3, 1.0e-2], tuning_size: 4, param_grid: {npo+gd: {beta: [0.1, 1.0]}}, refine_steps: 1}
"""


def _doc_plugin() -> str:
    section = (ROOT / "docs" / "methods.md").read_text().split("## Bring your own method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A finished tiny benchmark (and the registry as it was before its plugin, restored after)."""
    from frequnlearn.unlearn.losses import FORGET_LOSSES, RETAIN_LOSSES, base

    saved = dict(FORGET_LOSSES), dict(RETAIN_LOSSES), dict(base._PLUGINS), set(sys.modules)
    root = tmp_path_factory.mktemp("bench")
    plugin = root / f"{PLUGIN}.py"
    plugin.write_text(_doc_plugin())
    cfg = root / "bench.yaml"
    cfg.write_text(CONFIG.replace("PLUGIN_FILE", str(plugin)).replace("PLUGIN", PLUGIN))
    out = root / "out"
    assert main(["bench", str(cfg), "--out", str(out), "--quiet"]) == 0
    yield cfg, out
    for table, old in ((FORGET_LOSSES, saved[0]), (RETAIN_LOSSES, saved[1]), (base._PLUGINS, saved[2])):
        table.clear()
        table.update(old)
    for name in set(sys.modules) - saved[3]:
        if name.startswith("frequnlearn_plugin_"):
            del sys.modules[name]


@pytest.mark.slow
def test_tiny_benchmark_ranks_every_method_with_the_plugins(bench):
    cfg_path, out = bench
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["method"]) == sorted(["ga+gd", "npo+gd", f"{PLUGIN}+gd"])
    assert list(board["rank"]) == [1, 2, 3]
    gaps = board["frequency_gap"].abs()
    assert gaps.dropna().is_monotonic_increasing and (gaps.isna().sum() == 0 or gaps.isna().iloc[-1])
    tuning = json.loads((out / "tuning.json").read_text())
    assert set(tuning["chosen"]) == set(board["method"])
    runs = pd.read_csv(out / "tuning.csv")
    grid_runs = runs[runs["stage"] == "grid"]
    assert len(grid_runs) == 3 + 6 + 3 and runs.groupby("method")["chosen"].sum().eq(1).all()
    # One bisection round: a midpoint wherever the grid's drop crossed 0.05 between neighbours.
    refined = runs[runs["stage"] == "refine-1"]
    assert len(refined) >= 1 and refined["lr"].between(1e-5, 1e-2, inclusive="neither").all()
    assert not refined["lr"].isin([1e-5, 1e-3, 1e-2]).any()
    # The chosen learning rate is the one the study ran each method with, and the leaderboard says so.
    study = json.loads((out / "study" / "study.json").read_text())["config"]["study"]
    for method, c in tuning["chosen"].items():
        assert study["method_overrides"][method] == c["settings"]
        assert board.set_index("method").loc[method, "lr"] == pytest.approx(c["settings"]["lr"])
    # No point was chosen by anything but its retain cost: it is the closest of its method's grid.
    mean = runs.groupby(["method", "point"])["retain_drop"].mean()
    for method, c in tuning["chosen"].items():
        dist = (mean.loc[method] - 0.05).abs()
        assert dist.loc[c["point"]] == pytest.approx(dist.min())
    md = (out / "report.md").read_text()
    first_table = next(line for line in md.splitlines() if line.startswith("|"))
    assert first_table.startswith("| rank | method | frequency_gap")
    assert "<table>" in (out / "report.html").read_text()


@pytest.mark.slow
def test_report_publishes_a_benchmark_with_its_run_section(bench, tmp_path):
    """`frequnlearn bench --out BENCH_DIR --publish DIR` writes the same leaderboard and tuning record from what
    the benchmark recorded (nothing is trained), the study's report under study/report/, and a Run
    section with the command, the commit and the wall time of the tuning and of the study."""
    _, out = bench
    dest = tmp_path / "results" / "benchmark"
    assert main(["bench", "--out", str(out), "--publish", str(dest)]) == 0
    assert (dest / "leaderboard.csv").read_bytes() == (out / "leaderboard.csv").read_bytes()
    assert json.loads((dest / "tuning.json").read_text()) == json.loads((out / "tuning.json").read_text())
    assert (dest / "study" / "report" / "report.html").is_file()
    runs = pd.read_csv(dest / "tuning.csv")
    assert runs["seconds"].notna().all() and (runs["seconds"] > 0).all()
    run = (dest / "report.md").read_text().split("## Run", 1)[1]
    assert "command: frequnlearn bench " in run and "commit: " in run and "hardware: " in run
    assert f"report: frequnlearn bench --out {out} --publish {dest}" in run
    minutes = float(
        re.search(rf"tuning wall time: ([0-9.]+) min for {len(runs)} of {len(runs)} runs", run).group(1)
    )
    assert minutes == pytest.approx(runs["seconds"].sum() / 60, abs=0.06)
    assert re.search(r"study wall time: [0-9.]+ min of stage work \(.*unlearn", run)
    # The study recorded its plan, which is what its report reads: 3 methods x 2 levels x 1 seed.
    planned = json.loads((out / "study" / "study.json").read_text())["tasks"]
    assert sorted(t for t in planned if t.startswith("unlearn:")) == sorted(
        f"unlearn:tiny-s0/{m}/{lv}-all"
        for m in ("ga+gd", "npo+gd", f"{PLUGIN}+gd")
        for lv in ("forget_high", "forget_low")
    )
    # A second rebuild into the same directory is allowed (it is the benchmark's own output now).
    assert main(["bench", "--out", str(out), "--publish", str(dest)]) == 0
    # A study run with other settings than the tuning record chose (a stopped rerun) is not published.
    record_path = out / "study" / "study.json"
    saved = record_path.read_text()
    try:
        record_path.write_text(json.dumps({**json.loads(saved), "config_key": "other"}))
        assert main(["bench", "--out", str(out), "--publish", str(tmp_path / "other")]) == 2
    finally:
        record_path.write_text(saved)
    assert not (tmp_path / "other" / "leaderboard.csv").exists()


def test_publishing_an_unfinished_benchmark_is_one_line(tmp_path, capsys):
    from frequnlearn.records import claim_output_dir

    claim_output_dir(tmp_path / "b", "bench")
    for dry in ([], ["--dry-run"]):
        assert main(["bench", "--out", str(tmp_path / "b"), "--publish", str(tmp_path / "r"), *dry]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "has not finished" in err and "frequnlearn bench" in err
    assert not (tmp_path / "r" / "leaderboard.csv").exists()


def test_report_of_a_benchmark_directory_says_how_to_publish_it(tmp_path, capsys):
    from frequnlearn.records import claim_output_dir

    claim_output_dir(tmp_path / "b", "bench")
    assert main(["report", str(tmp_path / "b"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--publish" in err and "frequnlearn report" in err


@pytest.mark.slow
def test_changing_the_forget_items_does_not_change_the_tuning(bench, tmp_path):
    """The same tuning measured again with the forget groups' items replaced (other answers, half of
    them gone) gives the same costs and the same choice."""
    from frequnlearn.bench.config import BenchConfig
    from frequnlearn.bench.run import BEFORE_TUNING
    from frequnlearn.config import load_config
    from frequnlearn.study.plan import plan
    from frequnlearn.study.run import study_layout
    from frequnlearn.study.tasks import TaskRunner

    cfg_path, out = bench
    cfg = load_config(BenchConfig, cfg_path)
    cfg = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, methods=["ga+gd"]))
    base = cfg.study_config()
    runner = TaskRunner(base, study_layout(base, out / "study"), 1)
    baselines = [t for t in plan(base) if t.kind == "baseline"]
    assert all(t.kind in BEFORE_TUNING for t in baselines)
    items, bios = runner.inputs.items(baselines[0].params["world"])
    changed = [
        dataclasses.replace(it, answer="Nowhere") if it.group.startswith("forget") else it
        for k, it in enumerate(items)
        if not (it.group.startswith("forget") and k % 2)
    ]
    runner.inputs.items = lambda world: (changed, bios)  # type: ignore[method-assign]
    again = run_tuning(cfg, runner, baselines, tmp_path / "tuning")
    before = json.loads((out / "tuning.json").read_text())
    assert again["chosen"]["ga+gd"] == before["chosen"]["ga+gd"]
    old = [r for r in before["runs"] if r["method"] == "ga+gd"]
    assert [r["retain_drop"] for r in again["runs"]] == [r["retain_drop"] for r in old]
    assert again["sets"] == before["sets"]


# ------------------------------------------------------------------------------------ the leaderboard


def _ctx(gaps: dict[str, float | None]):
    """A report context with one frequency-effect row per method (None: no estimate) and retain /
    utility curves whose last step costs 0.05 and 0.1."""
    from types import SimpleNamespace

    effect, curves = [], []
    for method, gap in gaps.items():
        if gap is not None:
            effect.append({
                "size": "tiny", "method": method, "selection": "known", "probe": "question", "matched": False,
                "effect": gap, "effect_lo": gap - 0.1, "effect_hi": gap + 0.1, "verdict": "inconclusive",
                "net_drop_high": 0.5 + gap, "net_drop_high_lo": 0.4 + gap, "net_drop_high_hi": 0.6 + gap,
                "net_drop_low": 0.5, "net_drop_low_lo": 0.4, "net_drop_low_hi": 0.6,
                "seeds": 3, "n_high": 180, "n_low": 180,
            })  # fmt: skip
        for level in ("forget_high", "forget_low"):
            for role, end in (("retain", 0.95), ("utility", 0.9)):
                for step, acc in ((0, 1.0), (20, end)):
                    curves.append({"run_id": f"{method}/{level}", "method": method, "level": level, "seed": 0,
                                   "selection": "known", "probe": "question", "role": role, "step": step,
                                   "acc_norm": acc})  # fmt: skip
    tables = {
        "frequency_effect": pd.DataFrame(effect),
        "curves": pd.DataFrame(curves),
        "summaries": pd.DataFrame(),
    }
    lay = SimpleNamespace(high="forget_high", low="forget_low", methods=list(gaps))
    data = SimpleNamespace(trajectories=pd.DataFrame(), scores=lambda kind: {})
    return SimpleNamespace(tables=tables, lay=lay, data=data)


def test_the_leaderboard_ranks_by_the_size_of_the_gap_and_reads_the_cost_at_the_stopping_point():
    from frequnlearn.bench.leaderboard import leaderboard
    from frequnlearn.bench.page import figure

    ctx = _ctx({"ga+gd": -0.3, "npo+gd": 0.1, "idk+gd": None, "fga+gd": -0.05})
    chosen = {"ga+gd": {"settings": {"lr": 5e-5}, "retain_drop": 0.06}}
    board = leaderboard(ctx, chosen, target=0.05, tolerance=0.02)
    assert list(board["method"]) == ["fga+gd", "npo+gd", "ga+gd", "idk+gd"]
    assert list(board["rank"]) == [1, 2, 3, 4]
    row = board.set_index("method").loc["ga+gd"]
    assert row["frequency_gap"] == pytest.approx(-0.3) and row["forgetting_forget_high"] == pytest.approx(0.2)
    assert row["n_forget_low"] == 180 and row["lr"] == 5e-5 and row["tuning_retain_cost"] == 0.06
    assert row["retain_cost"] == pytest.approx(0.05) and row["utility_cost"] == pytest.approx(0.1)
    assert bool(row["cost_matched"])
    assert board.set_index("method").loc["idk+gd", "gap_verdict"] == "no estimate"
    png = figure(board, "forget_high", "forget_low")
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
