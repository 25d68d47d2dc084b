"""`run_bench(cfg, out)`: the benchmark as one resumable run on the study engine.

    OUT/
      study/            the study run directory (`frequnlearn study`'s layout and report)
      tuning/           every tuning run (<method>/<model>/<point>/), kept and skipped when done
      tuning.json       grid, tuning sets, every run's costs, the choice; tuning.csv the runs
      leaderboard.csv   one row per method; leaderboard.png; mia.csv and extraction.csv per run
      report.md, report.html   the leaderboard first, then the tuning

Order: the study's data, pretraining and baseline tasks (its own plan, run by its own executor);
the tuning on the retain people of the tuned seeds' models; then the whole study with each method at
its chosen settings (what was done before is skipped, as in any rerun of a study); then the
leaderboard from the study's per-item records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.bench.config import BenchConfig
from frequnlearn.records import atomic_open, output_set, run_info, write_json

STUDY_DIR = "study"
TUNING_DIR = "tuning"
# The tuning record: written with the leaderboard, so its presence says the benchmark finished.
TUNING_RECORD = "tuning.json"
# What the benchmark writes at the top of OUT, replaced as one set (report.html last).
BENCH_FILES = (
    TUNING_RECORD,
    "tuning.csv",
    "leaderboard.csv",
    "leaderboard.png",
    "mia.csv",
    "extraction.csv",
    "report.md",
    "report.html",
)
# Stages done before the tuning: they do not depend on any unlearning setting.
BEFORE_TUNING = ("generate", "count", "pretrain", "baseline")


def run_bench(cfg: BenchConfig, out: str | Path, quiet: bool = False) -> Path:
    """Tune, run the study, rank: returns OUT (its leaderboard.csv and report.html)."""
    import torch

    from frequnlearn.bench.tuning import run_tuning, runs_table
    from frequnlearn.records import claim_output_dir
    from frequnlearn.study.executors import executor_for
    from frequnlearn.study.keys import config_key
    from frequnlearn.study.lock import study_lock
    from frequnlearn.study.plan import plan
    from frequnlearn.study.run import run_plan, run_study, study_layout
    from frequnlearn.study.tasks import TaskRunner

    out = Path(out)
    base = cfg.study_config()
    study_dir = out / STUDY_DIR
    claim_output_dir(study_dir, "study")
    layout = study_layout(base, study_dir)
    if cfg.study.num_threads:
        torch.set_num_threads(cfg.study.num_threads)
    runner = TaskRunner(base, layout, torch.get_num_threads())
    tasks = [t for t in plan(base, runner.threads) if t.kind in BEFORE_TUNING]
    # One lock for the whole benchmark (the study's, re-entrant): no study may change the models the
    # tuning reads.
    with study_lock(layout.lock, config_key(base)):
        run_plan(tasks, runner, executor_for(base.study), quiet=quiet)
        baselines = [t for t in tasks if t.kind == "baseline" and t.params["seed"] in cfg.seeds_tuned]
        record = run_tuning(cfg, runner, baselines, out / TUNING_DIR, quiet=quiet)
        record.update(run_info(cfg, cfg.seeds_tuned))
        tuned = cfg.study_config({m: c["settings"] for m, c in record["chosen"].items()})
        run_study(tuned, study_dir, quiet=quiet)
    write_outputs(out, cfg, record, runs_table(record), study_dir)
    return out


def finished(bench_dir: Path) -> tuple[BenchConfig, dict[str, Any]]:
    """The config and tuning record of a finished benchmark directory, after checking that it is one:
    tuning.json readable, and a study run with exactly the settings that record chose (tuning.json is
    written when the whole benchmark ends, so a rerun with new settings stopped in its study leaves the
    old record beside a study of the new settings: not a pair to publish)."""
    from frequnlearn.config import from_dict
    from frequnlearn.errors import ConfigError, DataError
    from frequnlearn.layout import RunLayout
    from frequnlearn.records import read_json
    from frequnlearn.study.keys import config_key

    tuning = bench_dir / TUNING_RECORD
    study_record = RunLayout(bench_dir / STUDY_DIR).study_record
    if not tuning.is_file() or not study_record.is_file():
        raise DataError(
            f"--out {bench_dir}: the benchmark has not finished (no tuning.json or study/study.json); "
            f"run `frequnlearn bench CONFIG --out {bench_dir}` to the end first"
        )
    record = read_json(tuning)
    try:
        cfg = from_dict(BenchConfig, record.get("config"))
        cfg.validate()
    except (ConfigError, TypeError, AttributeError) as err:
        raise DataError(f"{tuning}: its config cannot be read ({err}); rerun the benchmark") from None
    tuned = cfg.study_config({m: c["settings"] for m, c in record["chosen"].items()})
    if read_json(study_record).get("config_key") != config_key(tuned):
        raise DataError(
            f"--out {bench_dir}: its study ran with other settings than tuning.json chose (a rerun that "
            f"has not finished?); run `frequnlearn bench CONFIG --out {bench_dir}` to the end first"
        )
    return cfg, record


def rebuild(bench_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write a finished benchmark's leaderboard and report again from what it recorded (its
    tuning.json and its study's per-item records), into `out` (default: `bench_dir` itself), with
    the study's own report as `out/study/report/`. `frequnlearn bench --out BENCH_DIR --publish
    results/NAME` publishes a benchmark this way; nothing is trained or evaluated."""
    from frequnlearn.bench.tuning import runs_table
    from frequnlearn.layout import RunLayout

    bench_dir = Path(bench_dir)
    cfg, record = finished(bench_dir)
    study_dir = bench_dir / STUDY_DIR
    out = Path(out) if out is not None else bench_dir
    write_outputs(out, cfg, record, runs_table(record), study_dir)
    if out != bench_dir:
        from frequnlearn.records import check_output_dir
        from frequnlearn.report import build_report

        build_report(study_dir, check_output_dir(RunLayout(out / STUDY_DIR).report, "report"))
    return out


def write_outputs(
    out: Path, cfg: BenchConfig, record: dict[str, Any], runs: pd.DataFrame, study_dir: Path
) -> None:
    """The tuning record, the leaderboard, its figure and the report, as one set."""
    from frequnlearn.bench.leaderboard import leaderboard, still_known
    from frequnlearn.bench.page import figure, markdown, page_html
    from frequnlearn.report.build import context
    from frequnlearn.report.rundata import load_run

    ctx = context(load_run(study_dir))
    board = leaderboard(
        ctx, record["chosen"], cfg.bench.target_retain_drop, cfg.bench.tolerance, cfg.selection
    )
    mia, ext = still_known(ctx.data, cfg.selection)
    png = figure(board, ctx.lay.high, ctx.lay.low)
    md = markdown(cfg, board, record, ctx)
    with output_set(out, BENCH_FILES, "report.html", kind="bench") as tmp:
        write_json(tmp / TUNING_RECORD, record)
        for name, df in (
            ("tuning.csv", runs),
            ("leaderboard.csv", board),
            ("mia.csv", mia),
            ("extraction.csv", ext),
        ):
            with atomic_open(tmp / name) as fh:
                df.to_csv(fh, index=False)
        if png is not None:
            with atomic_open(tmp / "leaderboard.png", "wb") as fh:
                fh.write(png)
        with atomic_open(tmp / "report.md") as fh:
            fh.write(md)
        with atomic_open(tmp / "report.html") as fh:
            fh.write(page_html(md, png))


def describe_bench(cfg: BenchConfig, out: Path) -> str:
    """What `frequnlearn bench --dry-run` prints: the tuning grid and the study plan."""
    from frequnlearn.bench.tuning import grid
    from frequnlearn.study import describe_plan

    b, s = cfg.bench, cfg.study
    points = grid(s.methods, b.lr_grid, b.param_grid)
    seeds = cfg.seeds_tuned
    lines = [
        f"bench -> {out}",
        f"  tuning: {len(points)} grid points x {len(seeds)} tuned seed(s) {seeds} = {len(points) * len(seeds)} "
        f"unlearning runs of {b.tuning_size} retain items each, {cfg.unlearn.max_steps or cfg.unlearn.epochs} "
        f"{'steps' if cfg.unlearn.max_steps else 'epochs'}; target retain drop {b.target_retain_drop} +- {b.tolerance}",
    ]
    lines.append(f"    lr grid: {', '.join(f'{lr:g}' for lr in b.lr_grid)}")
    if b.refine_steps:
        n = len({(q.spec, q.value) for q in points})
        lines.append(
            f"    then up to {b.refine_steps} bisection rounds of the rate for each of {n} method settings "
            f"whose retain drop crosses the target: at most {b.refine_steps * n * len(seeds)} more runs"
        )
    lines.append(
        "    choice: "
        + (
            f"the largest rate within {b.target_retain_drop} +- {b.tolerance} (else the closest point)"
            if b.prefer == "largest_rate"
            else f"the point within {b.target_retain_drop} +- {b.tolerance} that forgets most of the tuning set "
            "(else the closest point)"
            if b.prefer == "most_forgotten"
            else f"the point closest to {b.target_retain_drop}"
        )
        + (
            f"; every run stops once its retain drop exceeds {cfg.unlearn.stop_retain_drop}"
            + (", put back to its last evaluated step within it" if cfg.unlearn.stop_restore else "")
            + (
                f" (the first {cfg.unlearn.stop_backtrack} times going on from there at "
                f"{cfg.unlearn.stop_backtrack_factor:g} times the rate, evaluated every step)"
                if cfg.unlearn.stop_restore and cfg.unlearn.stop_backtrack
                else ""
            )
            if cfg.unlearn.stop_retain_drop is not None
            else ""
        )
    )
    for spec in s.methods:
        n = sum(p.spec == spec for p in points)
        extra = "".join(f" x {k} {v}" for k, v in b.param_grid.get(spec, {}).items())
        lines.append(f"    {spec}: {n} points (lr grid{extra})")
    lines.append(describe_plan(cfg.study_config(), out / STUDY_DIR))
    return "\n".join(lines)
