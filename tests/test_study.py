"""End to end: a reduced study runs, its report is consistent with its per-item records, a rerun skips
everything, a changed field reruns only what it affects, and a killed study resumes to the same result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from frequnlearn.cli import main
from frequnlearn.config.study import load_study_config
from frequnlearn.study import describe_plan

CONFIG = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 4,
           batch_size: 8, lr: 3.0e-3, save_every: 10, eval_per_group: 2, num_threads: 1}
unlearn: {lr: 2.0e-3, max_steps: 4, eval_steps: [0, 2, 4], batch_size: 4}
evaluate: {metrics: [prob, gen, bio], utility_tasks: [], max_new_tokens: 8, batch_size: 16}
study: {model_sizes: [tiny], methods: [ga+gd], selections: [all], eval_retain_size: 6,
        eval_utility_size: 6, n_boot: 200}
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "e2e.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, config_path) -> Path:
    out = tmp_path_factory.mktemp("study") / "run"
    assert main(["study", str(config_path), "--out", str(out), "--quiet"]) == 0
    return out


def _known_at_start(run: Path, level: str) -> float:
    """Share of forget items generated before unlearning, straight from the per-item records."""
    traj = pd.read_parquet(next((run / "unlearn").glob(f"**/{level}-all/trajectory.parquet")))
    rows = traj[(traj["role"] == "forget") & (traj["probe"] == "question") & (traj["family"] == "gen")]
    rows = rows[rows["step"] == rows["step"].min()]
    return float((rows["known"] == 1.0).mean())


@pytest.mark.slow
def test_report_files_and_numbers(finished):
    report = finished / "report"
    for name in (
        "report.html",
        "report.md",
        "headline.csv",
        "curves.csv",
        "findings.json",
        "trajectories_all_question.png",
    ):
        assert (report / name).is_file(), name
    # A figure without data is a one-line note on the page, not empty axes.
    mis = (
        pd.read_csv(report / "misalignment.csv") if (report / "misalignment.csv").stat().st_size > 1 else None
    )
    if mis is not None and len(mis):
        assert (report / "misalignment.png").is_file()
    else:
        assert "No misalignment" in (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "Finding 1" in html
    head = pd.read_csv(report / "headline.csv")
    q = head[(head["probe"] == "question")].set_index("level")
    assert set(q.index) == {"forget_high", "forget_low"}
    for level in ("forget_high", "forget_low"):
        assert q.loc[level, "forget_start"] == pytest.approx(_known_at_start(finished, level))
        assert 0.0 <= q.loc[level, "forget_auc_raw"] <= 1.0
        # The normalised AUC exists only over items known at the start.
        if q.loc[level, "n_known0"] > 0:
            assert 0.0 <= q.loc[level, "forget_auc"] <= 1.0
        else:
            assert pd.isna(q.loc[level, "forget_auc"])
    # Equal-size forget sets for the two levels.
    assert q.loc["forget_high", "n_items"] == q.loc["forget_low", "n_items"]
    # Each run's record names what it is; the report's rows carry that identity.
    items = pd.read_csv(report / "items.csv")
    for record in (finished / "unlearn").glob("**/run.json"):
        run = json.loads(record.read_text())["run"]
        assert run["model"] == "tiny-s0" and run["size"] == "tiny" and run["n_params"] > 0
        assert (run["method"], run["selection"]) == ("ga+gd", "all")
        rows = items[items["run_id"] == run["run_id"]]
        assert len(rows) and set(rows["level"]) == {run["level"]}


@pytest.mark.slow
def test_rerun_skips_and_one_field_reruns_only_its_stages(finished, config_path, capsys, tmp_path):
    finished = Path(shutil.copytree(finished, tmp_path / "run"))  # keep the shared run as it was
    model_files = sorted((finished / "models").glob("*/model.safetensors"))
    mtimes = {p: p.stat().st_mtime_ns for p in model_files}
    assert main(["study", str(config_path), "--out", str(finished)]) == 0
    err = capsys.readouterr().err
    assert err.count("(done, skipping)") == 5  # generate, pretrain, baseline, 2 unlearn runs
    assert main(["study", str(config_path), "unlearn.lr=1.0e-3", "--out", str(finished)]) == 0
    err = capsys.readouterr().err
    assert "pretrain: tiny-s0 (done, skipping)" in err and "baseline: tiny-s0 (done, skipping)" in err
    assert "unlearn: tiny-s0/ga+gd/forget_high-all (running)" in err
    assert {p: p.stat().st_mtime_ns for p in model_files} == mtimes


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if list(root.glob(pattern)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_results(tmp_path, config_path, finished):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "frequnlearn.cli", "study", str(config_path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Kill once during pretraining (after a checkpoint) and once during unlearning.
    for pattern in ("models/*/checkpoints/*", "unlearn/**/.*.tmp"):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reached = _wait_for(pattern, out, proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reached, f"the study finished or stalled before {pattern} appeared"
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    a = pd.read_csv(finished / "report" / "curves.csv")
    b = pd.read_csv(out / "report" / "curves.csv")
    pd.testing.assert_frame_equal(a, b)


def test_a_stage_directory_is_kept_for_its_key_and_cleared_for_another(tmp_path):
    from frequnlearn.records import clear_if_stale, mark_done, stage_done

    path = tmp_path / "model"
    clear_if_stale(path, "a")
    (path / "checkpoint").write_text("step 10")
    assert not stage_done(path, "a")  # in progress is not done
    clear_if_stale(path, "a")  # a rerun for the same key resumes
    assert (path / "checkpoint").is_file()
    mark_done(path, "a")
    assert stage_done(path, "a")
    clear_if_stale(path, "b")  # another key starts afresh
    assert not (path / "checkpoint").exists() and not stage_done(path, "a")


def test_dry_run_prints_plan(config_path, capsys):
    assert main(["study", str(config_path), "--dry-run", "--out", "x"]) == 0
    out = capsys.readouterr().out
    assert "[pretrain] tiny-s0" in out and "[unlearn ] tiny-s0/ga+gd/forget_low-all" in out
    assert describe_plan(load_study_config(config_path), Path("x")) in out


def test_bad_study_config_is_one_line(config_path, capsys):
    assert main(["study", str(config_path), "study.methods=[xx+gd]", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study.methods:") and "\n" not in err


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["tiny", "effect", "paper-gpt2", "scale", "scale-gpu", "dose"])
def test_shipped_synthetic_configs_validate(name, capsys):
    assert main(["study", str(CONFIGS / f"{name}.yaml"), "--dry-run"]) == 0
    assert "[unlearn ]" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "span"), [("scale", 6.0), ("scale-gpu", 30.0)])
def test_scale_configs_span_their_parameter_range_with_one_tokenizer(name, span, capsys):
    from frequnlearn.study import param_span

    cfg = load_study_config(CONFIGS / f"{name}.yaml")
    assert param_span(cfg) >= span
    presets = [cfg.pretrain_for(size, 0).model_preset() for size in cfg.study.model_sizes]
    assert {(p.tokenizer, p.vocab_size) for p in presets} == {("corpus", 1024)}
    # Every size has its own epochs, and the plan says what it trains.
    assert set(cfg.study.epochs_by_size) == set(cfg.study.model_sizes)
    assert main(["study", str(CONFIGS / f"{name}.yaml"), "--dry-run"]) == 0
    assert f"(x{param_span(cfg):.1f} parameters" in capsys.readouterr().out


def test_dose_config_compares_an_exposure_grid():
    cfg = load_study_config(CONFIGS / "dose.yaml")
    assert cfg.study.compare_by == "frequency"
    assert cfg.study.levels == [f"{x:g}" for x in cfg.generate.exposure_levels]


def test_epochs_by_size_reaches_the_pretrain_config_only_for_its_size(config_path):
    from frequnlearn.layout import RunLayout
    from frequnlearn.study import Keys

    def keys(*overrides: str) -> Keys:
        return Keys(load_study_config(config_path, list(overrides)), RunLayout(Path("x")), threads=1)

    base, per_size = keys(), keys("study.epochs_by_size={tiny: 7, small: 3}")
    assert base.pretrain_cfg("tiny", 0).epochs == 4 and per_size.pretrain_cfg("tiny", 0).epochs == 7
    params = {"size": "tiny", "seed": 0, "world": 3}
    assert base.model(params) != per_size.model(params)
    same = keys("study.epochs_by_size={small: 3}")
    assert same.model(params) == base.model(params)  # cached models stay valid


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("study.levels=[retain,forget_low]", "study.levels"),
        ("study.compare_by=frequency", "study.levels"),
        ("study.epochs_by_size={huge: 3}", "study.epochs_by_size"),
        ("study.eval_retain_size=24", "study.eval_retain_size"),
        ("study.compare_by=bucket", "study.compare_by"),
    ],
)
def test_study_design_errors_are_one_line(config_path, capsys, override, field):
    assert main(["study", str(config_path), override, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}:") and "\n" not in err
