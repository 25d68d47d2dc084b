"""Which unlearning runs a study directory holds, and what each one is, read from the runs' records.

Each run's record (run.json) names its identity under `run`: run id, model, size, parameters, seed,
method, level and selection, plus `skipped` when the study could not make it. Runs written before
their records named an identity carry the same fields in their `.stage.json`, read as a fallback.
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
    root = run_dir / "unlearn"
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
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.config.study import StudyOptions

    recorded = study.get("config", {}).get(section, {})
    if name in recorded:
        return recorded[name]
    return getattr(StudyOptions() if section == "study" else EvalConfig(), name)
