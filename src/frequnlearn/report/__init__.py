"""Per-item tables -> stratified summaries, plots and an HTML/markdown report."""

from __future__ import annotations

from pathlib import Path


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """See `frequnlearn.report.build.build_report` (imported lazily: pandas and matplotlib are slow)."""
    from frequnlearn.report.build import build_report as _build

    return _build(run_dir, out_dir)


__all__ = ["build_report"]
