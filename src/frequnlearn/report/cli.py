"""`frequnlearn report RUN_DIR`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the HTML and markdown report of a study run",
        description="Recompute every summary from a study run's per-item records and write "
        "RUN_DIR/report/report.html (self-contained), report.md, CSV tables and PNG figures. Verdicts come "
        "only from `known` selections with a control arm: curves normalised to the items known at the "
        "start, the control half's drop subtracted, 95% intervals over items; `all` cells are descriptive.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `frequnlearn study`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frequnlearn.report import build_report

    out = build_report(args.run_dir)
    print(f"report: {out / 'report.html'}")
    return 0
