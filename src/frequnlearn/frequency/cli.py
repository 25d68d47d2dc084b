"""`frequnlearn count`: write how often each QA item's knowledge occurs in a corpus, and its bucket."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from frequnlearn.frequency.registry import available_backends

    p = sub.add_parser(
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
        help="counting backend (default: count.backend of the config, else ground-truth)",
    )
    p.add_argument("--config", help="study YAML; its `count:` section is read")
    p.add_argument("overrides", nargs="*", help="key=value settings, e.g. measure=document kinds=[bio]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from frequnlearn.config import load_config
    from frequnlearn.config.count import CountConfig
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


def _written_here(run_json: Path) -> bool:
    """Whether the outputs at --out are an earlier count's: its run record sits beside them."""
    import json

    try:
        record = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "backend" in record and "n_items" in record
