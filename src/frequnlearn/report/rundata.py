"""One load of a study directory: everything the report reads, each file read once.

`load_run` reads study.json, the unlearning runs (records, trajectories, utility), each model's
baseline and oracle scores and its pretraining record, the attacked runs' scores and records, the
stage timings and the data manifest. The report's sections are computed from the `RunData` it
returns and never open a file of the run themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.errors import DataError
from frequnlearn.records import check_outputs, read_json, read_jsonl, read_parquet
from frequnlearn.report.runs import RunFiles, UnlearnRun, unlearn_runs


@dataclass
class ModelFiles:
    """What one pretrained model (`models/<tag>`) left for the report."""

    tag: str
    record: dict[str, Any] | None  # its run.json (None: missing or unreadable)
    metrics: list[dict[str, Any]]  # its metrics.jsonl rows (throughput, for the wall time)
    baseline: pd.DataFrame | None  # per-item scores before unlearning (read for the robustness tables)
    oracle: pd.DataFrame | None  # per-item scores of its never-learned twin
    utility: dict[str, Any] | None  # lm-eval scores before unlearning


@dataclass
class RunData:
    """A study directory as the report sees it."""

    root: Path
    study: dict[str, Any]
    runs: list[UnlearnRun]
    trajectories: pd.DataFrame  # every finished run's trajectory, with the run's identity as columns
    models: list[ModelFiles]
    attack_scores: pd.DataFrame  # every attacked run's per-item rows, with the run's identity
    attack_records: dict[str, dict[str, Any]]  # run id -> its attacks.json
    run_utility: dict[str, dict[str, Any]]  # run id -> its utility.json
    timings: dict[str, float]
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # files that could not be read

    @property
    def config(self) -> dict[str, Any]:
        return self.study.get("config", {})

    def scores(self, kind: str) -> dict[str, pd.DataFrame]:
        """Model tag -> its `baseline` or `oracle` per-item scores (models that have them)."""
        return {m.tag: getattr(m, kind) for m in self.models if getattr(m, kind) is not None}


def with_run_identity(df: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Per-item rows of one unlearning run, with the run's identity (from its record) as columns."""
    df["run_id"] = info["task"]
    df["model"] = info["model"]
    df["size"] = info["size"]
    df["seed"] = int(info["seed"])
    df["world"] = int(info.get("world", 0) or 0)  # a run recorded before worlds (data seeds) had names
    df["method"] = info["method"]
    df["level"] = str(info["level"])
    df["selection"] = info["selection"]
    return df


def load_run(run_dir: str | Path) -> RunData:
    """Read a study directory once. Raises DataError when it has no finished unlearning run."""
    files = RunFiles(Path(run_dir))
    if not files.root.is_dir():
        raise DataError(f"RUN_DIR {files.root}: no such directory")
    study = read_json(files.study) if files.study.is_file() else {"config": {}}
    notes: list[str] = []
    runs = _planned_runs(study, unlearn_runs(files.root), notes)
    done = [run for run in runs if not run.skipped]
    for run in done:
        # A run whose trajectory is missing, cut, or not what its done marker recorded stops the report
        # with one line naming the file: a report that silently dropped a level would compare the
        # wrong things.
        why = check_outputs(run.path) or (
            None if files.trajectory(run.path).is_file() else "trajectory.parquet is missing"
        )
        if why is not None:
            raise DataError(f"{run.path}: {why}; rerun `frequnlearn study` to make this run again")
    if not done:
        raise DataError(
            f"{files.root}: no finished unlearning runs to report on (run `frequnlearn study` first)"
        )
    trajectories = pd.concat(
        [with_run_identity(read_parquet(files.trajectory(r.path)), r.identity) for r in done],
        ignore_index=True,
    )
    attacked = [r for r in runs if files.attack_scores(r.path).is_file()]
    attack_scores = (
        pd.concat(
            [with_run_identity(read_parquet(files.attack_scores(r.path)), r.identity) for r in attacked],
            ignore_index=True,
        )
        if attacked
        else pd.DataFrame()
    )
    models = [_model(files, path, notes) for path in _planned_models(study, files.models())]
    # Baselines are read only where the robustness tables compare against them.
    if attacked or any(m.oracle is not None for m in models):
        for m, path in zip(models, files.models()):
            scores = files.scores(path, "baseline")
            m.baseline = read_parquet(scores) if scores.is_file() else None
    return RunData(
        root=files.root,
        study=study,
        runs=runs,
        trajectories=trajectories,
        models=models,
        attack_scores=attack_scores,
        attack_records={
            r.identity["task"]: read_json(files.attack_record(r.path))
            for r in runs
            if files.attack_record(r.path).is_file()
        },
        run_utility={
            r.identity["task"]: read_json(files.run_utility(r.path))
            for r in runs
            if files.run_utility(r.path).is_file()
        },
        timings=_planned_timings(study, read_json(files.timings) if files.timings.is_file() else {}),
        manifest=read_json(files.manifest) if files.manifest.is_file() else {},
        notes=notes,
    )


def _planned(study: dict[str, Any]) -> set[str] | None:
    """The task ids of the plan the study last ran (study.json's `tasks`); None for a study recorded
    before plans were kept, whose every run is read."""
    tasks = study.get("tasks")
    return set(tasks) if isinstance(tasks, list) else None


def _planned_runs(study: dict[str, Any], runs: list[UnlearnRun], notes: list[str]) -> list[UnlearnRun]:
    """The runs of the study's plan: a run an earlier config of the directory made (a size, seed,
    method or level since removed) is left out, and a note says how many and which."""
    planned = _planned(study)
    if planned is None:
        return runs
    kept = [r for r in runs if f"unlearn:{r.identity['task']}" in planned]
    if len(kept) < len(runs):
        left = sorted(r.identity["task"] for r in runs if r not in kept)
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        notes.append(
            f"Left out {len(left)} unlearning runs that are not in the study's config "
            f"({', '.join(left[:3])}{more}): an earlier config of this directory made them."
        )
    return kept


def _planned_models(study: dict[str, Any], paths: list[Path]) -> list[Path]:
    """The pretrained (or given) models the plan's runs read: those of removed sizes or seeds are left
    out with their runs."""
    planned = _planned(study)
    if planned is None:
        return paths
    tags = {task.split(":", 1)[1] for task in planned if task.startswith("baseline:")}
    return [p for p in paths if p.name in tags]


def _planned_timings(study: dict[str, Any], timings: dict[str, float]) -> dict[str, float]:
    """The stage times of the plan's tasks only (timings.json keeps those of every config run here)."""
    planned = _planned(study)
    return timings if planned is None else {k: v for k, v in timings.items() if k in planned}


def _model(files: RunFiles, path: Path, notes: list[str]) -> ModelFiles:
    record = None
    if files.model_record(path).is_file():
        try:
            record = read_json(files.model_record(path))
        except DataError as err:
            notes.append(f"{path.name}: its run record could not be read ({err}).")

    def parquet(kind: str) -> pd.DataFrame | None:
        p = files.scores(path, kind)
        return read_parquet(p) if p.is_file() else None

    metrics = files.model_metrics(path)
    utility = files.baseline_utility(path)
    return ModelFiles(
        tag=path.name,
        record=record,
        metrics=read_jsonl(metrics) if metrics.is_file() else [],
        baseline=None,
        oracle=parquet("oracle"),
        utility=read_json(utility) if utility.is_file() else None,
    )
