"""`frequnlearn study CONFIG.yaml [key=value ...] --out RUN_DIR [--dry-run]` (or `--config CONFIG.yaml`)."""

from __future__ import annotations

import argparse

from frequnlearn.cli_common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "study",
        help="run the whole experiment from one config (resumable), then write the report",
        description="generate -> pretrain each size -> unlearn each level with each method from the same "
        "checkpoint, evaluating the trajectory -> misalignment analysis -> report. Rerunning the same command "
        "skips finished stages and resumes the one that was cut; changing a field reruns only what it "
        "affects. Status lines say which stage runs and what is left; when the output goes to a file, a "
        "heartbeat line every 30 s says where the stage stands.",
    )
    p.add_argument(
        "config_file",
        nargs="?",
        metavar="CONFIG",
        help="study YAML, e.g. configs/tiny.yaml (or give it as --config)",
    )
    p.add_argument("--config", metavar="FILE", help="study YAML, as CONFIG")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. study.seeds=[0,1] generate.n_people=600",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run directory (default: runs/<config name>): a new one, or one `study` wrote before (resumed)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="run in an existing directory that `study` did not make (files of other names are kept)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate the config and print the plan; load nothing"
    )
    p.add_argument("--quiet", action="store_true", help="no status lines, bars or heartbeats")
    p.set_defaults(func=run, override_example="study.seeds=[0,1]")


def config_path(args: argparse.Namespace) -> str:
    """The study file, given as CONFIG or --config (an override written first stands in CONFIG's place)."""
    from frequnlearn.errors import ConfigError

    given = args.config_file
    if given is not None and "=" in given and args.config is not None:
        args.overrides = [given, *args.overrides]
        given = None
    if given is not None and args.config is not None and given != args.config:
        raise ConfigError(f"CONFIG {given} and --config {args.config}: give the study file once")
    path = args.config or given
    if path is None:
        raise ConfigError("CONFIG: name the study YAML, e.g. frequnlearn study configs/tiny.yaml")
    return path


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from frequnlearn.config.study import load_study_config
    from frequnlearn.records import check_output_dir, claim_output_dir
    from frequnlearn.study import Study, describe_plan

    path = config_path(args)
    cfg = load_study_config(path, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(path).stem
    check_output_dir(out, "study", overwrite=args.overwrite, deep=not args.dry_run)
    if args.dry_run:
        print(describe_plan(cfg, out))
        return 0
    claim_output_dir(out, "study")
    report = Study(cfg, out, quiet=args.quiet).run()
    print(f"report: {report / 'report.html'}")
    return 0
