"""Which unlearning runs the report finds in a study directory, and the identity it reads for each:
from the run's record (run.json), or from the stage record of a run written before records named it."""

from __future__ import annotations

from pathlib import Path

from frequnlearn.records import STAGE_FILE, write_json
from frequnlearn.report.runs import study_option, unlearn_runs


def _identity(task: str, size: str = "tiny") -> dict:
    method, rest = task.split("/")[1:]
    level, selection = rest.rsplit("-", 1)
    return {
        "task": task,
        "model": f"{size}-s0",
        "size": size,
        "n_params": 1000,
        "seed": 0,
        "method": method,
        "level": level,
        "selection": selection,
    }


def test_runs_come_from_their_records_and_old_runs_from_their_stage_record(tmp_path: Path):
    root = tmp_path / "unlearn"
    new = root / "tiny-s0/ga+gd/forget_high-all"
    new.mkdir(parents=True)
    write_json(
        new / "run.json", {"config": {}, "run": {**_identity("tiny-s0/ga+gd/forget_high-all"), "size": "big"}}
    )
    write_json(new / STAGE_FILE, {"key": "k", **_identity("tiny-s0/ga+gd/forget_high-all")})
    old = root / "tiny-s0/ga+gd/forget_low-all"
    old.mkdir(parents=True)
    write_json(old / "run.json", {"config": {}})  # written before run records named the run
    write_json(old / STAGE_FILE, {"key": "k", **_identity("tiny-s0/ga+gd/forget_low-all")})
    skipped = root / "tiny-s0/ga+gd/forget_low-known"
    skipped.mkdir(parents=True)
    write_json(
        skipped / "run.json", {"run": _identity("tiny-s0/ga+gd/forget_low-known"), "skipped": "no items"}
    )
    for scratch in (".forget_high-known.abcd1234.tmp", "forget_high-known.partial"):
        (root / "tiny-s0/ga+gd" / scratch).mkdir()
        write_json(root / "tiny-s0/ga+gd" / scratch / "run.json", {"run": _identity("tiny-s0/ga+gd/x-all")})
    (new / "attacks").mkdir()
    write_json(new / "attacks" / STAGE_FILE, {"key": "a", "task": "tiny-s0/ga+gd/forget_high-all"})
    (new / "model").mkdir()  # a kept model carries a copy of its run's record
    write_json(new / "model" / "run.json", {"config": {}, "run": _identity("tiny-s0/ga+gd/forget_high-all")})

    runs = {run.path.name: run for run in unlearn_runs(tmp_path)}
    assert set(runs) == {"forget_high-all", "forget_low-all", "forget_low-known"}
    assert runs["forget_high-all"].identity["size"] == "big"  # the record wins over the marker
    assert runs["forget_low-all"].identity["level"] == "forget_low" and not runs["forget_low-all"].skipped
    assert runs["forget_low-known"].skipped == "no items"


def test_study_options_missing_from_an_old_study_record_take_the_config_default():
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.config.study import StudyOptions

    study = {"config": {"study": {"n_boot": 7}, "evaluate": {}}}
    assert study_option(study, "n_boot") == 7
    assert study_option(study, "forget_threshold") == StudyOptions().forget_threshold
    assert study_option(study, "gen_threshold", section="evaluate") == EvalConfig().gen_threshold


def test_the_report_reads_only_the_runs_models_and_times_of_the_studys_plan(tmp_path: Path):
    """A directory that an earlier config filled with a size and a method since removed: study.json's
    plan (the task ids the study last ran) decides what the report reads, and a note says what it left out;
    a study recorded before plans were kept is read whole."""
    from frequnlearn.records import read_json
    from frequnlearn.report.rundata import load_run
    from report_fixtures import write_study

    run = write_study(tmp_path / "run", attacks=True)
    whole = load_run(run)
    assert sorted(whole.trajectories["run_id"].unique()) == sorted(
        f"{s}-s0/{m}/{lv}-known"
        for s in ("small", "tiny")
        for m in ("ga+gd", "simnpo+gd")
        for lv in ("forget_high", "forget_low")
    )
    study = read_json(run / "study.json")
    kept_runs = [f"tiny-s0/ga+gd/{lv}-known" for lv in ("forget_high", "forget_low")]
    study["tasks"] = ["pretrain:tiny-s0", "baseline:tiny-s0"] + [f"unlearn:{t}" for t in kept_runs]
    write_json(run / "study.json", study)
    write_json(run / "timings.json", {"pretrain:tiny-s0": 60.0, "pretrain:small-s0": 600.0, "unlearn:x": 5.0})
    data = load_run(run)
    assert sorted(data.trajectories["run_id"].unique()) == kept_runs
    assert [r.identity["task"] for r in data.runs] == kept_runs
    assert [m.tag for m in data.models] == ["tiny-s0"]
    assert data.timings == {"pretrain:tiny-s0": 60.0}
    (note,) = [n for n in data.notes if n.startswith("Left out")]
    assert "Left out 6 unlearning runs" in note and "small-s0/ga+gd/forget_high-known" in note
