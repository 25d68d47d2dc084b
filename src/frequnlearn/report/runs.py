"""Where the report finds a study's files, and what each unlearning run is, read from the runs' records.

`RunFiles` spells every run-directory path the report reads, so the report has one place that knows
the layout. Each unlearning run's record (run.json) names its identity under `run`: run id, model,
size, parameters, seed, method, level and selection, plus `skipped` when the study could not make it.
Runs written before their records named an identity carry the same fields in their `.stage.json`,
read as a fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError
from frequnlearn.records import STAGE_FILE, read_json

# Where the attack stage writes inside an unlearning run's directory.
ATTACKS_DIR = "attacks"


@dataclass(frozen=True)
class RunFiles:
    """The files of one study directory that the report reads."""

    root: Path

    @property
    def study(self) -> Path:
        return self.root / "study.json"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def manifest(self) -> Path:
        return self.root / "data" / "manifest.json"

    @property
    def unlearn(self) -> Path:
        return self.root / "unlearn"

    def models(self) -> list[Path]:
        """Each pretrained model's directory (`models/<tag>`), in name order (hidden scratch directories
        of a run in progress are not models)."""
        root = self.root / "models"
        return sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != ".") if root.is_dir() else []

    @staticmethod
    def model_record(model: Path) -> Path:
        return model / "run.json"

    @staticmethod
    def model_metrics(model: Path) -> Path:
        return model / "metrics.jsonl"

    @staticmethod
    def scores(model: Path, kind: str) -> Path:
        """A model's per-item scores before unlearning (`baseline`) or of its never-learned twin
        (`oracle`)."""
        return model / kind / "scores.parquet"

    @staticmethod
    def baseline_utility(model: Path) -> Path:
        return model / "baseline" / "utility.json"

    @staticmethod
    def trajectory(run: Path) -> Path:
        return run / "trajectory.parquet"

    @staticmethod
    def run_utility(run: Path) -> Path:
        return run / "utility.json"

    @staticmethod
    def attack_scores(run: Path) -> Path:
        return run / ATTACKS_DIR / "scores.parquet"

    @staticmethod
    def attack_record(run: Path) -> Path:
        return run / ATTACKS_DIR / "attacks.json"


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
    root = RunFiles(run_dir).unlearn
    found = {p.parent for name in ("run.json", STAGE_FILE) for p in root.glob(f"**/{name}")}
    runs = []
    for path in sorted(found):
        parts = path.relative_to(root).parts
        if any(p.endswith((".tmp", ".partial")) for p in parts) or ATTACKS_DIR in parts:
            continue
        if any(parent in found for parent in path.parents):
            continue
        identity = _identity(path)
        if identity is not None:
            runs.append(UnlearnRun(path, identity))
    return runs


def _identity(path: Path) -> dict[str, Any] | None:
    for name in ("run.json", STAGE_FILE):
        try:
            record = read_json(path / name) if (path / name).is_file() else {}
        except (DataError, json.JSONDecodeError):
            record = {}
        ident = record.get("run") if name == "run.json" else record
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
    """The probe the robustness numbers are read on: the paraphrase for real models (trained on other
    wordings), the trained question in the synthetic setting."""
    return "paraphrase" if study_option(study, "setting") == "real" else "question"
