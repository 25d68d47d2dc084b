"""`frequnlearn report RUN_DIR [--out DIR] [--dry-run]`."""

from __future__ import annotations

import argparse

from frequnlearn.cli_common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "report",
        help="write the HTML and markdown report of a study run",
        description="Recompute every summary from a study run's per-item records and write "
        "RUN_DIR/report/report.html (self-contained), report.md, CSV tables and PNG figures. Verdicts come "
        "only from `known` selections with a control arm: curves normalised to the items known at the "
        "start, the control half's drop subtracted, 95% intervals over items; `all` cells are descriptive. "
        "The report has no settings of its own: it reads the ones the study recorded in RUN_DIR/study.json. "
        "A benchmark is published with `frequnlearn bench --out DIR --publish DEST`.",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a directory written by `frequnlearn study` (a benchmark's study is DIR/study)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write the report here instead of RUN_DIR/report (e.g. results/NAME to publish it)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check RUN_DIR and the output, say what would be read and written",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from frequnlearn.errors import DataError
    from frequnlearn.layout import RunLayout
    from frequnlearn.records import check_output_dir, output_kind

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DataError(f"RUN_DIR {run_dir}: no such directory; give a run directory of `frequnlearn study`")
    kind = output_kind(run_dir)
    if kind == "bench":
        raise DataError(
            f"RUN_DIR {run_dir}: a benchmark directory; publish it with "
            f"`frequnlearn bench --out {run_dir} --publish DEST`, or report its study with "
            f"`frequnlearn report {run_dir / 'study'}`"
        )
    if kind != "study":
        raise DataError(
            f"RUN_DIR {run_dir}: not a study run directory (no study.json); give the --out of `frequnlearn study`"
        )
    # The report goes in RUN_DIR/report: checked (writable, not someone else's) before any work.
    if args.out:
        out_dir = check_output_dir(args.out, "report")
    else:
        out_dir = check_output_dir(RunLayout(run_dir).report, "report", flag="RUN_DIR")
    if args.dry_run:
        from frequnlearn.cli_common import describe_out, print_dry_run
        from frequnlearn.report.runs import unlearn_runs

        runs = unlearn_runs(run_dir)
        skipped = sum(1 for r in runs if r.skipped)
        print_dry_run(
            "report",
            [
                f"would read {len(runs) - skipped} unlearning runs ({skipped} skipped) of {run_dir}",
                f"would write {describe_out(out_dir, 'report')}: report.html, report.md, CSV tables, figures",
            ],
        )
        return 0
    from frequnlearn.report import build_report

    out = build_report(run_dir, out_dir)
    print(f"report: {out / 'report.html'}")
    return 0
