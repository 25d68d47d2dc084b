"""`frequnlearn count`: write how often each QA item's knowledge occurs in a corpus, and its bucket."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
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
        "--out", required=True, help="output JSONL; a <name>.run.json with settings goes beside it"
    )
    p.add_argument("--corpus", help="JSONL corpus with a `text` field (infinigram-local and scan backends)")
    p.add_argument(
        "--backend",
        choices=("ground-truth", "infinigram-local", "infinigram-api", "scan"),
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

    cfg = load_config(CountConfig, args.config, args.overrides, section="count")
    # Flags win over the config; applied as values, so a path is never read as YAML.
    flags = {"backend": args.backend, "corpus": args.corpus}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if cfg.backend == "ground-truth" and cfg.people is None:
        cfg = dataclasses.replace(cfg, people=str(Path(args.items).parent / "people.jsonl"))
    cfg.validate()
    record = run_count(args.items, args.out, cfg)
    sizes = ", ".join(f"{k} {v}" for k, v in record["buckets"]["sizes"].items())
    print(
        f"counted {record['n_items']} items ({record['backend']}, {record['measure']}) -> {args.out}; "
        f"buckets: {sizes}"
    )
    return 0
