"""`frequnlearn generate`: write the synthetic people, corpus, QA items and biography prompts."""

from __future__ import annotations

import argparse

from frequnlearn.cli_common import add_command, add_settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(
        sub,
        "generate",
        help="write the synthetic biography corpus with controlled exposure (Setting A)",
        description=(
            "Write a data directory: people.jsonl, corpus.jsonl (biographies repeated `exposure` times, "
            "plus retain-group QA), qa.jsonl, bio_prompts.jsonl and manifest.json. Settings come from the "
            "`generate:` section of --config, then from KEY=VALUE overrides (e.g. n_people=600 "
            "'exposure_levels=[1,2,4,8,16,32]')."
        ),
    )
    parser.add_argument(
        "--out",
        required=True,
        help="data directory to write: a new one (missing parent folders are created), or one `generate` "
        "wrote before",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing directory that `generate` did not make (files of other names are kept)",
    )
    add_settings(parser, "generate", "n_people=600")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.config.generate import GenerateConfig, group_sizes
    from frequnlearn.data.generate import MANIFEST, run_generate
    from frequnlearn.records import read_json

    cfg = load_config(GenerateConfig, args.config, args.overrides, section="generate")
    if args.dry_run:
        from frequnlearn.cli_common import describe_out, print_dry_run
        from frequnlearn.records import check_output_dir

        check_output_dir(args.out, "data", overwrite=args.overwrite)
        sizes = ", ".join(f"{g} {n}" for g, n in group_sizes(cfg.n_people, cfg.group_fractions).items())
        levels = cfg.exposure_levels or [1, cfg.high_exposure]
        print_dry_run(
            "generate",
            [
                f"would write {describe_out(args.out, 'data')}",
                f"{cfg.n_people} people ({sizes}); biography copies per person: {levels}",
            ],
            cfg,
        )
        return 0
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
