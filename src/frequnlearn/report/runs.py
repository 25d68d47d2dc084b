"""Where the report finds a study's files, and what each unlearning run is, read from the runs' records.

`RunFiles` gives every run-directory path the report reads, each from `frequnlearn.layout` (the one
owner of the run directory's names). Each unlearning run's record (run.json) names its identity under `run`: run id, model,
size, parameters, seed, method, level and selection, plus `skipped` when the study could not make it.
Runs written before their records named an identity carry the same fields in their `.stage.json`,
read as a fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn.config.study import known_probe
from frequnlearn.errors import DataError
from frequnlearn.layout import RunLayout
from frequnlearn.records import STAGE_FILE, read_json


@dataclass(frozen=True)
class RunFiles:
    """The files of one study directory that the report reads, as `frequnlearn.layout` places them."""

    root: Path

    @property
    def _layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def study(self) -> Path:
        return self._layout.study_record

    @property
    def timings(self) -> Path:
        return self._layout.timings

    @property
    def manifest(self) -> Path:
        return self._layout.data_manifest()

    @property
    def unlearn(self) -> Path:
        return self._layout.unlearn_root

    def models(self) -> list[Path]:
        """Each pretrained model's directory (`models/<tag>`), in name order (hidden scratch directories
        of a run in progress are not models)."""
        return [self._layout.model(tag) for tag in self._layout.model_tags()]

    model_record = staticmethod(RunLayout.pretrain_record)
    model_metrics = staticmethod(RunLayout.pretrain_metrics_of)
    scores = staticmethod(RunLayout.scores)
    baseline_utility = staticmethod(RunLayout.model_utility)
    trajectory = staticmethod(RunLayout.trajectory)
    run_utility = staticmethod(RunLayout.run_utility)
    attack_scores = staticmethod(RunLayout.attack_scores)
    attack_record = staticmethod(RunLayout.attack_record)


@dataclass
class UnlearnRun:
    path: Path
    identity: dict[str, Any]  # the keys of report.estimands.RUN_COLUMNS (run id as `task`) and n_params

    @property
    def skipped(self) -> str | None:
        return self.identity.get("skipped")


def unlearn_runs(run_dir: Path) -> list[UnlearnRun]:
    """Every finished or skipped unlearning run under RUN_DIR/unlearn, in path order; scratch
    directories of a run cut short (hidden `.tmp` or `.partial`) are not runs, nor what a run holds
    (its model/ keeps a copy of the run's record)."""
    runs = []
    for path in RunLayout(run_dir).unlearn_runs():
        identity = _identity(path)
        if identity is not None:
            runs.append(UnlearnRun(path, identity))
    return runs


def _identity(path: Path) -> dict[str, Any] | None:
    for file in (RunLayout.run_record(path), path / STAGE_FILE):
        try:
            record = read_json(file) if file.is_file() else {}
        except (DataError, json.JSONDecodeError):
            record = {}
        ident = record.get("run") if file.name != STAGE_FILE else record
        if ident and "task" in ident:
            skipped = record.get("skipped") or ident.get("skipped")
            return {**ident, "skipped": skipped} if skipped else dict(ident)
    return None


def study_option(study: dict[str, Any], name: str, section: str = "study") -> Any:
    """A config value as the study recorded it in study.json, else the config's own default (a run
    written before the field existed)."""
    from frequnlearn.config.attacks import AttacksConfig
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.config.study import StudyOptions

    recorded = study.get("config", {}).get(section, {}) or {}
    if name in recorded:
        return recorded[name]
    defaults = {"study": StudyOptions, "evaluate": EvalConfig, "attacks": AttacksConfig}[section]
    return getattr(defaults(), name)


def measured_probe(study: dict[str, Any]) -> str:
    """The probe the robustness numbers are read on: the one that says which items a model knows
    (`config.study.known_probe`, the study's own rule)."""
    return known_probe(study_option(study, "setting"))
