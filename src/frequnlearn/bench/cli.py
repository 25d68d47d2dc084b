"""`frequnlearn bench CONFIG.yaml [key=value ...] --out DIR [--publish DEST] [--dry-run]` (or `--config
CONFIG.yaml`), and `frequnlearn bench --out DIR --publish DEST` to publish a finished benchmark."""

from __future__ import annotations

import argparse

from frequnlearn.cli_common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        help="the benchmark: tune every method on retain items to one retain cost, run the study, rank by frequency gap",
        description="A study config plus a `bench:` section. Each method's learning rate (and its one main setting "
        "in bench.param_grid) is chosen by unlearning retain people only, so every method pays the same retain "
        "cost (bench.target_retain_drop); then the study runs every method at its chosen settings and "
        "DIR/leaderboard.csv ranks them by the frequency gap (forgetting of the frequent level minus the rare "
        "one). Rerunning the same command skips what is done. --publish DEST writes the finished benchmark's "
        "files again from what it recorded, with the study's report in DEST/study/report/ (e.g. "
        "`frequnlearn bench --out runs/benchmark --publish results/benchmark`; without CONFIG nothing is run).",
    )
    p.add_argument(
        "config_file", nargs="?", metavar="CONFIG", help="benchmark YAML, e.g. configs/benchmark.yaml"
    )
    p.add_argument("--config", metavar="FILE", help="benchmark YAML, as CONFIG")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. bench.lr_grid=[1e-4,1e-3] study.seeds=[0]",
    )
    p.add_argument(
        "--out", required=False, default=None, help="benchmark directory (default: runs/<config name>)"
    )
    p.add_argument(
        "--publish",
        metavar="DEST",
        help="write the finished benchmark's leaderboard, tuning record and reports into DEST (e.g. "
        "results/benchmark); without CONFIG it only publishes the benchmark in --out",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config and print the tuning grid and the plan; load nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no status lines, bars or heartbeats")
    p.set_defaults(func=run, override_example="bench.lr_grid=[1e-4,1e-3]")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from frequnlearn.bench import describe_bench, load_bench_config, run_bench
    from frequnlearn.data.generate import check_limits
    from frequnlearn.errors import ConfigError
    from frequnlearn.records import check_output_dir, claim_output_dir
    from frequnlearn.study.cli import config_path, load_registries

    if args.config_file is None and args.config is None:
        if args.publish:
            return _publish(args)
        raise ConfigError("CONFIG: name the benchmark YAML, e.g. frequnlearn bench configs/benchmark.yaml")
    path = config_path(args)
    load_registries()
    cfg = load_bench_config(path, args.overrides)
    check_limits(cfg.generate)
    out = Path(args.out) if args.out else Path("runs") / Path(path).stem
    check_output_dir(out, "bench", deep=not args.dry_run)
    if args.publish:
        check_output_dir(args.publish, "bench", flag="--publish")
    if args.dry_run:
        print(describe_bench(cfg, out))
        return 0
    claim_output_dir(out, "bench")
    done = run_bench(cfg, out, quiet=args.quiet)
    print(f"leaderboard: {done / 'leaderboard.csv'}")
    print(f"report: {done / 'report.html'}")
    return _publish(args) if args.publish else 0


def _publish(args: argparse.Namespace) -> int:
    """The finished benchmark in --out written again into --publish (e.g. results/benchmark) from its
    records, with the study's report under study/report/; nothing is trained or evaluated."""
    from pathlib import Path

    from frequnlearn.bench.run import finished, rebuild
    from frequnlearn.errors import ConfigError
    from frequnlearn.records import check_output_dir
    from frequnlearn.study.cli import load_registries

    if not args.out:
        raise ConfigError(
            "--out: name the finished benchmark directory to publish, e.g. --out runs/benchmark"
        )
    bench_dir = Path(args.out)
    dest = check_output_dir(args.publish, "bench", flag="--publish")
    load_registries()
    if args.dry_run:
        from frequnlearn.cli_common import print_dry_run

        finished(bench_dir)
        print_dry_run(
            "bench",
            [
                f"would read the finished benchmark {bench_dir} (tuning.json and the study's per-item records)",
                f"would write {dest}: leaderboard.csv, leaderboard.png, tuning.json, tuning.csv, mia.csv, "
                "extraction.csv, report.md, report.html, and the study's report in study/report/",
            ],
        )
        return 0
    done = rebuild(bench_dir, dest)
    print(f"published leaderboard: {done / 'leaderboard.csv'}")
    print(f"published report: {done / 'report.html'}")
    return 0
