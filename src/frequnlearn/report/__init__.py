"""Per-item tables -> stratified summaries, plots and an HTML/markdown report."""

from frequnlearn.report.build import build_report

__all__ = ["build_report"]
