"""`frequnlearn evaluate`: per-item scores of one model on a QA table, with summaries beside them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from frequnlearn.cli_common import add_command, add_settings, config_default
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.errors import ConfigError, DataError

EPILOG = """\
items (--items): SOURCE[?COLUMN=VALUE[,VALUE...][&COLUMN=VALUE...]], a .jsonl/.json/.csv/.tsv/.parquet
  file, a generated data directory (its qa.jsonl) or a datasets name; --select adds the same filters.

outputs, for --out scores.parquet:
  scores.parquet              one row per (item, probe, family), run info in the Parquet metadata
  scores.summary.csv          mean and bootstrap CI of every metric per group and per frequency level
  scores.misalignment.csv     prob/gen verdict agreement per group and per frequency level
  scores.run.json             config, seed, versions, hardware, inputs, timings (and utility results),
                              and the hashes of the three files above
  The four are written as a set: built beside --out, moved in with scores.run.json removed first and
  written last, so a run record always describes the files beside it.

examples:
  frequnlearn evaluate --model runs/tiny/model --items runs/tiny/data/qa.jsonl \\
      --bio runs/tiny/data/bio_prompts.jsonl --select group=forget_high --out scores.parquet
  frequnlearn evaluate --model runs/u1/model --items facts.csv --metrics prob,gen,utility \\
      --prompt-format olmo --out u1.parquet batch_size=32 utility_tasks=[tinyMMLU]
"""


def _families_help() -> str:
    from frequnlearn.evaluate.families import FAMILIES, NEEDS

    lines = ["metric families (--metrics, evaluate.metrics):"]
    for name, cls in FAMILIES.items():
        lines.append(f"  {name:<9}{cls.help}")
        if cls.needs:
            lines.append(f"  {'':<9}needs {'; '.join(NEEDS[n] for n in cls.needs)}")
    return "\n".join(lines) + "\n\n"


def register(sub: Any) -> None:
    from frequnlearn.evaluate.families import family_names

    p = add_command(
        sub,
        "evaluate",
        help="score a model on QA items: likelihood, ranking, True/False, greedy generation, utility",
        description="Evaluate --model on every --items row with probability- and generation-based metrics "
        "and write one row per (item, probe, family). Settings come from the `evaluate:` section of "
        "--config and key=value overrides; the flags below override both.",
        epilog=_families_help() + EPILOG,
    )
    p.add_argument("--model", required=True, help="local model directory or hub id of a causal LM")
    p.add_argument("--items", required=True, metavar="TABLE", help="QA table to evaluate")
    p.add_argument(
        "--bio", metavar="PATH", help="bio_prompts.jsonl: biography completion probes (probe 'bio')"
    )
    p.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="COLUMN=VALUE[,VALUE]",
        help="keep only items whose column has one of the values (repeatable)",
    )
    p.add_argument(
        "--metrics",
        metavar="LIST",
        help=f"comma-separated families of {','.join(family_names())} (default: evaluate.metrics of --config, "
        f"else {config_default(EvalConfig, 'metrics')})",
    )
    p.add_argument(
        "--prompt-format",
        metavar="FORMAT",
        help="plain, olmo, chat, or a '{question}...{answer}' string (default: evaluate.prompt_format of "
        f"--config, else {config_default(EvalConfig, 'prompt_format')})",
    )
    p.add_argument("--step", type=int, default=0, help="checkpoint step recorded in every row")
    p.add_argument("--run-id", help="run id recorded in every row (default: the --out file's stem)")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH.parquet",
        help="output Parquet file (new, or written by `evaluate` before); the three files beside it share its stem",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace output files that `evaluate` did not write"
    )
    add_settings(p, "evaluate", "batch_size=16")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from frequnlearn.config import from_dict, load_config, to_dict

    cfg = load_config(EvalConfig, args.config, args.overrides, section="evaluate")
    data = to_dict(cfg)
    if args.metrics is not None:
        data["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.prompt_format is not None:
        data["prompt_format"] = args.prompt_format
    try:
        return from_dict(EvalConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{err} (from --metrics/--prompt-format or the config)") from None


def _items_spec(items: str, selects: list[str]) -> str:
    for sel in selects:
        if "=" not in sel:
            raise ConfigError(f"--select {sel!r}: expected COLUMN=VALUE, e.g. group=forget_high")
    if not selects:
        return items
    return items + ("&" if "?" in items else "?") + "&".join(selects)


def _bio_prompts(path: str) -> list[Any]:
    from frequnlearn.records import read_bio_prompts

    return read_bio_prompts(path, "--bio")


def output_files(out: Path) -> dict[str, Path]:
    """The Parquet file and the three files beside it that share its stem."""
    stem = out.with_suffix("")
    return {
        "scores": out,
        "summary": Path(f"{stem}.summary.csv"),
        "misalignment": Path(f"{stem}.misalignment.csv"),
        "run": Path(f"{stem}.run.json"),
    }


def _written_here(out: Path) -> bool:
    """Whether the existing outputs at `out` are an earlier evaluation's (its Parquet carries our
    metadata, or, when a kill took the Parquet away, its run record names what it wrote)."""
    import pyarrow.parquet as pq

    files = output_files(out)
    if out.is_file():
        try:
            return b"frequnlearn" in (pq.read_schema(out).metadata or {})
        except (OSError, ValueError):
            return False
    try:
        record = json.loads(files["run"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "n_rows" in record and "inputs" in record


def _write_csv(df: Any, path: Path) -> None:
    from frequnlearn.records import atomic_open

    with atomic_open(path) as fh:
        df.to_csv(fh, index=False)


def summaries(df: Any, cfg: Any) -> tuple[Any, Any]:
    """(metric summary, misalignment rates), each per group, per frequency and per bucket where present.

    The grouping column is named in `by` and its value, as text, in `level`, so one table holds all.
    """
    import pandas as pd

    from frequnlearn.evaluate.misalignment import rates, verdicts
    from frequnlearn.evaluate.summary import summarize

    levels = [c for c in ("group", "frequency", "bucket") if df[c].notna().any()]
    v = verdicts(df, gen_threshold=cfg.gen_threshold)
    metric_parts, rate_parts = [], []
    for col in levels:
        keys = ["model", "step", "probe", col]
        s = summarize(df, by=keys, n_boot=cfg.n_boot, seed=cfg.seed, ci=cfg.ci)
        r = rates(v, by=keys)
        for part, out in ((s, metric_parts), (r, rate_parts)):
            part = part.rename(columns={col: "level"})
            part["level"] = part["level"].map(
                lambda x: "" if pd.isna(x) else (f"{x:g}" if isinstance(x, float) else str(x))
            )
            part.insert(3, "by", col)
            out.append(part)
    return (
        pd.concat(metric_parts, ignore_index=True) if metric_parts else pd.DataFrame(),
        pd.concat(rate_parts, ignore_index=True) if rate_parts else pd.DataFrame(),
    )


def run(args: argparse.Namespace) -> int:
    from frequnlearn.records import check_output_files, remove_stale_temps

    cfg = _config(args)
    out = Path(args.out)
    if out.suffix != ".parquet":
        raise ConfigError(f"--out {out}: name a .parquet file, e.g. scores.parquet")
    files = output_files(out)
    check_output_files(list(files.values()), _written_here(out), overwrite=args.overwrite)
    spec = _items_spec(args.items, args.select)
    if args.dry_run:
        return _dry_run(args, cfg, spec, files)
    from frequnlearn.data.tables import load_table
    from frequnlearn.evaluate import evaluate_items
    from frequnlearn.evaluate.utility import utility_scores
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.models.prompts import get_prompt_format

    remove_stale_temps(out.with_suffix(""))
    fmt = get_prompt_format(cfg.prompt_format)
    items = load_table(spec, name="--items")
    bios = _bios_for(args, cfg)

    model, tok = load_model_and_tokenizer(args.model, dtype=cfg.dtype, device=cfg.device)
    run_id = args.run_id if args.run_id is not None else out.stem
    start = time.perf_counter()
    df = evaluate_items(
        model,
        tok,
        items,
        cfg,
        fmt=fmt,
        bio_prompts=bios,
        step=args.step,
        model_name=args.model,
        run_id=run_id,
    )
    seconds = time.perf_counter() - start
    utility = utility_scores(model, tok, cfg, items, fmt)
    _write_outputs(args, cfg, df, files, _run_record(args, cfg, items, df, seconds, utility, run_id))
    print(f"evaluated {len(items)} items ({len(df)} rows) in {seconds:.1f}s -> {out}")
    print(_headline(df))
    if utility:
        for task, metrics in utility.items():
            print(f"utility {task}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    broken = df.loc[~df["finite"], "item_id"].nunique()
    if broken:
        # Scores of a broken model must not pass for results: the files are written, the exit says no.
        raise DataError(
            f"--model {args.model}: {broken} of {len(items)} items got non-finite logits (NaN/inf weights?); "
            f"their rows in {out} have finite=False and no scores or verdicts"
        )
    return 0


def _dry_run(args: argparse.Namespace, cfg: Any, spec: str, files: dict[str, Path]) -> int:
    """Check the model argument and a local table (loaded: it is small), say what would run."""
    from frequnlearn.cli_common import describe_model, is_local, print_dry_run
    from frequnlearn.data.tables import load_table

    lines = [f"would load {describe_model(args.model)}"]
    if is_local(spec):
        lines.append(f"would score {len(load_table(spec, name='--items'))} items of {spec}")
    else:
        lines.append(f"would load the items from {spec} (a hub dataset: not loaded in a dry run)")
    bios = _bios_for(args, cfg)
    if bios:
        lines.append(f"would read {len(bios)} biography prompts")
    lines.append(f"metrics {','.join(cfg.metrics)} on probes {','.join(cfg.probes)}")
    lines.append("would write " + ", ".join(str(p) for p in files.values()))
    print_dry_run("evaluate", lines, cfg)
    return 0


def _bios_for(args: argparse.Namespace, cfg: Any) -> Any:
    """The biography prompts `--bio` names; a metric family that needs them without `--bio` is an error."""
    if args.bio:
        return _bio_prompts(args.bio)
    if args.metrics is not None:
        from frequnlearn.evaluate.families import FAMILIES

        for name in cfg.metrics:
            if "bio_prompts" in FAMILIES[name].needs:
                raise ConfigError(
                    f"--metrics: {name!r} needs biography prompts; give --bio bio_prompts.jsonl"
                )
    return None


def _run_record(
    args: argparse.Namespace, cfg: Any, items: Any, df: Any, seconds: float, utility: Any, run_id: str
) -> dict[str, Any]:
    from frequnlearn.records import input_hashes, run_info

    info = run_info(cfg, cfg.seed)
    info["inputs"] = {
        "model": args.model,
        "items": args.items,
        "select": args.select,
        "bio": args.bio,
        "step": args.step,
        "run_id": run_id,
    }
    info["inputs_sha256"] = input_hashes(items=args.items, bio=args.bio)
    info["n_items"] = len(items)
    info["n_rows"] = len(df)
    info["seconds"] = round(seconds, 3)
    if utility is not None:
        info["utility"] = utility
    return info


def _write_outputs(
    args: argparse.Namespace, cfg: Any, df: Any, files: dict[str, Path], info: dict[str, Any]
) -> None:
    """The four files are one set: built in a scratch directory, then moved in with run.json (which
    records the others' hashes) removed first and written last."""
    from frequnlearn.records import output_set, sha256_file, write_json, write_parquet

    out = Path(args.out)
    names = {key: path.name for key, path in files.items()}
    metric_summary, misalignment = summaries(df, cfg)
    with output_set(out.parent, list(names.values()), names["run"], prefix=out.stem) as scratch:
        write_parquet(df, scratch / names["scores"], info)
        _write_csv(metric_summary, scratch / names["summary"])
        _write_csv(misalignment, scratch / names["misalignment"])
        info["files"] = {
            names[k]: sha256_file(scratch / names[k]) for k in ("scores", "summary", "misalignment")
        }
        write_json(scratch / names["run"], info)


def _headline(df: Any) -> str:
    """Per group and probe: share of items known (the `evaluate.known` rule), ranked first and affirmed
    as true, over finite rows."""
    lines = [f"{'group':<14}{'probe':<12}{'n':>5}{'known':>8}{'rank1':>8}{'tf':>8}"]
    for (group, probe), sub in df.groupby(["group", "probe"], dropna=False, sort=True):

        def share(family: str, column: str, rows: Any = sub) -> str:
            values = rows.loc[(rows["family"] == family) & rows["finite"], column].dropna()
            return f"{values.mean():.3f}" if len(values) else "-"

        lines.append(
            f"{str(group):<14}{probe:<12}{sub['item_id'].nunique():>5}"
            f"{share('gen', 'known'):>8}{share('prob', 'rank_correct'):>8}{share('tf', 'tf_correct'):>8}"
        )
    return "\n".join(lines)
