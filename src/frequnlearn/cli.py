"""The `frequnlearn` console script: one subcommand per pipeline stage, plus `study`.

Each stage's command lives beside the stage (`<stage>/cli.py`) as a module with
`register(subparsers)`; heavy imports happen only inside the command that needs them, so `--help`
stays instant. Errors a user can fix print as one line and exit with status 2.
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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frequnlearn",
        description="Study how the pre-training frequency of knowledge decides whether it can be unlearned.",
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
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
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


if __name__ == "__main__":
    sys.exit(main())
