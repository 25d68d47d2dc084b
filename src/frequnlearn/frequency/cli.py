"""`frequnlearn count`: write how often each QA item's knowledge occurs in a corpus, and its bucket."""

from __future__ import annotations

import argparse
from pathlib import Path

from frequnlearn.cli_common import add_command, add_settings, config_default
from frequnlearn.config.count import CountConfig


def register(sub: argparse._SubParsersAction) -> None:
    from frequnlearn.frequency.registry import available_backends

    p = add_command(
        sub,
        "count",
        help="count subject/answer (co-)occurrences of QA items in a corpus and bucket them",
        description=(
            "Count how often each QA item's subject and answer occur in a corpus (a local infini-gram "
            "index, the infini-gram API, a plain scan, or the generator's recorded exposure), and write "
            "the table back with `frequency` and `bucket`. Settings come from the `count:` section of "
            "--config and key=value overrides; the flags below override both."
        ),
    )
    p.add_argument("--items", required=True, help="QA table (JSONL) with subject and object/answer per item")
    p.add_argument(
        "--out",
        required=True,
        help="output JSONL (new, or written by `count` before); a <name>.run.json with settings goes beside it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace output files that `count` did not write")
    p.add_argument("--corpus", help="JSONL corpus with a `text` field (infinigram-local and scan backends)")
    p.add_argument(
        "--backend",
        choices=available_backends(),
        help=f"counting backend (default: count.backend of --config, else {config_default(CountConfig, 'backend')})",
    )
    add_settings(p, "count", "measure=document kinds=[bio]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from frequnlearn.config import load_config
    from frequnlearn.frequency.stage import run_count
    from frequnlearn.records import check_output_files, output_set, remove_stale_temps

    cfg = load_config(CountConfig, args.config, args.overrides, section="count")
    # Flags win over the config; applied as values, so a path is never read as YAML.
    flags = {"backend": args.backend, "corpus": args.corpus}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if cfg.backend == "ground-truth" and cfg.people is None:
        cfg = dataclasses.replace(cfg, people=str(Path(args.items).parent / "people.jsonl"))
    cfg.validate()
    out = Path(args.out)
    run_json = out.with_name(out.stem + ".run.json")
    check_output_files([out, run_json], _written_here(run_json), overwrite=args.overwrite)
    if args.dry_run:
        return _dry_run(args, cfg, out, run_json)
    remove_stale_temps(out.with_suffix(""))
    # Counted table and run record are one set: built beside --out, moved in with the record last.
    with output_set(out.parent, [out.name, run_json.name], run_json.name, prefix=out.stem) as scratch:
        record = run_count(args.items, scratch / out.name, cfg)
    sizes = ", ".join(f"{k} {v}" for k, v in record["buckets"]["sizes"].items())
    print(
        f"counted {record['n_items']} items ({record['backend']}, {record['measure']}) -> {args.out}; "
        f"buckets: {sizes}"
    )
    return 0


def _dry_run(args: argparse.Namespace, cfg: CountConfig, out: Path, run_json: Path) -> int:
    from frequnlearn.cli_common import print_dry_run
    from frequnlearn.data.tables import load_table
    from frequnlearn.errors import DataError

    items = load_table(args.items, name="--items")
    # The ground truth reads the generator's people; the other local backends read the corpus.
    name, path = ("people", cfg.people) if cfg.backend == "ground-truth" else ("corpus", cfg.corpus)
    if path and not Path(path).expanduser().is_file():
        raise DataError(f"{name} {path}: file not found")
    print_dry_run(
        "count",
        [
            f"would read {len(items)} items from {args.items}",
            f"would count with {cfg.backend} ({cfg.measure})" + (f" in {cfg.corpus}" if cfg.corpus else ""),
            f"would write {out} and {run_json.name} ({'replaced' if out.exists() else 'new'})",
        ],
        cfg,
    )
    return 0


def _written_here(run_json: Path) -> bool:
    """Whether the outputs at --out are an earlier count's: its run record sits beside them."""
    import json

    try:
        record = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "backend" in record and "n_items" in record
