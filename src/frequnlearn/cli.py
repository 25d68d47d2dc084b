"""The `frequnlearn` console script: one subcommand per pipeline stage, plus `study`, `bench` and `config`.

Each stage's command lives beside the stage (`<stage>/cli.py`) as a module with
`register(subparsers)`; heavy imports happen only inside the command that needs them, so `--help`,
`--dry-run` and `config show` stay fast. Errors a user can fix print as one line and exit with status
2; a malformed command line prints its subcommand's usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from frequnlearn import __version__
from frequnlearn.errors import FrequnlearnError

# Order is the order of `--help`.
COMMAND_MODULES = (
    "frequnlearn.data.cli",
    "frequnlearn.pretrain.cli",
    "frequnlearn.frequency.cli",
    "frequnlearn.unlearn.cli",
    "frequnlearn.evaluate.cli",
    "frequnlearn.report.cli",
    "frequnlearn.study.cli",
    "frequnlearn.bench.cli",
    "frequnlearn.config.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frequnlearn",
        description="Study how the pre-training frequency of knowledge decides whether it can be unlearned.",
        epilog="Every command with settings takes --config FILE (a study YAML; it reads its own section), "
        "KEY=VALUE overrides and --dry-run; `frequnlearn config show` lists every setting.",
    )
    parser.add_argument("--version", action="version", version=f"frequnlearn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may stand on either side of options (`seed=5 --out D n=4`): gather the stray ones.
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command_parser", parser)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        command.error("unrecognized arguments: " + " ".join(extra))
    if not getattr(args, "func", None):
        command.print_help()
        return 1
    for item in getattr(args, "overrides", []):
        key, eq, _ = item.partition("=")
        if not eq or not key.strip():
            command.error(
                f"argument KEY=VALUE: {item!r} is not KEY=VALUE; e.g. {args.override_example}"
                + _belongs_to_option(item, sys.argv[1:] if argv is None else argv)
            )
    from frequnlearn import progress
    from frequnlearn.records import code_commit, running_command

    progress.route_logging()
    code_commit()  # the commit a run records is the checkout's when the command started
    try:
        with progress.quiet_third_party(), running_command(argv):
            return int(args.func(args) or 0)
    except FrequnlearnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno is None:  # not the system's refusal (permissions, disk full): a bug to show in full
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"error: {where}{err.strerror}; check the path, its permissions and free space", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was written is kept; rerun the same command to resume", file=sys.stderr)
        return 130


def _belongs_to_option(item: str, argv: list[str]) -> str:
    """A hint when `item` follows an option and its value (`--select group forget_high`): the two were
    probably meant as one value."""
    i = argv.index(item) if item in argv else -1
    if i >= 2 and argv[i - 2].startswith("-") and not argv[i - 1].startswith("-"):
        return f" (if it belongs to {argv[i - 2]}, write {argv[i - 2]} {argv[i - 1]}={item})"
    return ""


if __name__ == "__main__":
    sys.exit(main())
