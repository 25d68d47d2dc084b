"""`frequnlearn generate`: write the synthetic people, corpus, QA items and biography prompts."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="write the synthetic biography corpus with controlled exposure (Setting A)",
        description=(
            "Write a data directory: people.jsonl, corpus.jsonl (biographies repeated `exposure` times, "
            "plus retain-group QA), qa.jsonl, bio_prompts.jsonl and manifest.json. Settings come from the "
            "`generate:` section of --config, then from KEY=VALUE overrides (e.g. n_people=600 "
            "'exposure_levels=[1,2,4,8,16,32]')."
        ),
    )
    parser.add_argument("--config", type=Path, help="study YAML file; its `generate:` section is read")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="data directory to write: a new one, or one `generate` wrote before (its parent must exist)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing directory that `generate` did not make (files of other names are kept)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.config.generate import GenerateConfig
    from frequnlearn.data.generate import MANIFEST, run_generate
    from frequnlearn.records import read_json

    cfg = load_config(GenerateConfig, args.config, args.overrides, section="generate")
    out = run_generate(cfg, args.out, overwrite=args.overwrite)
    counts = read_json(out / MANIFEST)["counts"]
    groups = ", ".join(f"{g} {n}" for g, n in counts["groups"].items())
    exposure = ", ".join(f"x{k}: {n}" for k, n in counts["exposure"].items())
    docs = counts["documents"]
    print(
        f"wrote {out}: {counts['people']} people ({groups}; exposure {exposure}), "
        f"{docs['bio']} biographies + {docs['qa']} QA documents, {counts['qa_items']} QA items"
    )
    return 0
