"""`frequnlearn unlearn`: unlearn a QA table from any causal LM, evaluating forget and retain items as it goes."""

from __future__ import annotations

import argparse
import random
from typing import Any

from frequnlearn.cli_common import add_command, add_settings
from frequnlearn.errors import ConfigError

TABLE_HELP = """\
tables (--forget, --retain, --eval-items):
  SOURCE[?COLUMN=VALUE[,VALUE...][&COLUMN=VALUE...]]   (quote it: ? and & are special to the shell)
  SOURCE is a .jsonl/.json/.csv/.tsv/.parquet file, a generated data directory (its qa.jsonl),
  a directory from datasets' save_to_disk, or what datasets.load_dataset takes (a hub name or a
  folder of data files) with an optional split (NAME:SPLIT, default train; a dataset config goes
  in the query as config=NAME). Filters keep the rows whose column equals one of the values.
  Columns: question, answer, item_id (rename with question_column=, answer_column=, id_column=);
  same-named QAItem columns (candidates, paraphrase, group, frequency, ...) are kept for evaluation.

prompt_format (plain, olmo, chat or a string with {question} and {answer}) is used for training and
for evaluation alike.

examples:
  frequnlearn unlearn --model runs/tiny/model --method simnpo+gd --out runs/u1 \\
      --forget 'data/qa.jsonl?group=forget_high&attribute=employer' \\
      --retain 'data/qa.jsonl?group=retain&attribute=employer' lr=0.0001 max_steps=40
  frequnlearn unlearn --model allenai/OLMo-7B-0724-SFT-hf --forget facts.csv --retain keep.csv \\
      --method npo+kl --out runs/olmo prompt_format=olmo evaluate.metrics=[prob,gen]
  frequnlearn unlearn --model allenai/OLMo-7B-0724-SFT-hf --forget facts.csv --retain keep.csv \\
      --method npo+kl --out runs/olmo-lora 'lora={r: 16, alpha: 32}' lora_merge=true log_with=[tensorboard]

outputs in --out: model/ (weights, tokenizer, model card README.md and run.json; with lora, the
adapter; with lora_merge, the merged weights and adapter/ the adapter), trajectory.parquet (per-item evaluation rows
at each evaluated step, with a role column: forget, retain (held out from the retain loss, see
--eval-retain) or eval), log.jsonl (loss terms per step), sets.json (item ids per set),
utility.json (with evaluate.metrics=[..., utility]), run.json (config, seed, versions, hardware,
final losses, and under `run` the run's identity: model, parameters, seed, method). They are built
in a scratch directory beside --out and moved in together when the run ends, run.json last: a
killed run leaves --out as it was, and its rerun starts afresh.
"""


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "unlearn",
        help="unlearn a QA table from a causal LM (every registered method, plugins included)",
        description="Unlearn the --forget items from --model while keeping the --retain items, evaluating "
        "both before unlearning and along the way. Config keys (method, lr, epochs, eval_steps, lora, "
        "log_with, ...) come from the `unlearn:` section of --config and key=value overrides; "
        "evaluate.KEY=VALUE overrides the evaluation settings (the `evaluate:` section).",
        epilog=TABLE_HELP,
    )
    p.add_argument("--model", required=True, help="local model directory or hub id of a causal LM")
    p.add_argument("--forget", required=True, metavar="TABLE", help="the items to unlearn")
    p.add_argument("--retain", metavar="TABLE", help="items to keep (needed by retain_loss gd or kl)")
    p.add_argument(
        "--method",
        metavar="FORGET[+RETAIN]",
        help="e.g. ga, npo, simnpo+gd, dpo+kl, rmu+act (sets method and retain_loss; an unknown name lists "
        "the choices; default: unlearn.method and unlearn.retain_loss of --config, else ga)",
    )
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="import a .py file or module whose losses register with "
        "frequnlearn.unlearn.losses.base.register, so --method can name them (repeatable; "
        "only what is named here is imported)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory: a new one (missing parent folders are created), or one `unlearn` wrote "
        "before, replaced only when the run ends",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing directory that `unlearn` did not make (files of other names are kept)",
    )
    p.add_argument("--eval-items", metavar="TABLE", help="more items to evaluate along the way (role 'eval')")
    p.add_argument(
        "--eval-retain",
        type=int,
        metavar="N",
        help="hold out a seeded sample of N retain items, with every item of their people, from the retain "
        "loss and evaluate them as role 'retain' (default: a fifth of the retain items; all of them when "
        "retain_loss=none): retain damage is never measured on what the loss trains",
    )
    p.add_argument(
        "--bio-prompts", metavar="PATH", help="bio_prompts.jsonl of a generated data directory (probe 'bio')"
    )
    add_settings(p, "unlearn", "lr=0.0001 max_steps=40 'lora={r: 8}' evaluate.metrics=[prob,gen]")
    p.set_defaults(func=run)


def method_overrides(spec: str) -> list[str]:
    """`simnpo+gd` -> method and retain_loss overrides; a bare `ga` leaves retain_loss as configured."""
    from frequnlearn.config.unlearn import method_names

    forget_methods, retain_losses = method_names()
    forget, plus, retain = spec.partition("+")
    if forget not in forget_methods or (plus and retain not in retain_losses):
        raise ConfigError(
            f"--method {spec!r}: expected FORGET[+RETAIN] with FORGET in {', '.join(forget_methods)} "
            f"and RETAIN in {', '.join(retain_losses)}, e.g. simnpo+gd"
        )
    return [f"method={forget}"] + ([f"retain_loss={retain}"] if plus else [])


def split_retain(
    retain: list[Any], n_eval: int | None, seed: int, trained: bool
) -> tuple[list[Any], list[Any]]:
    """(retain-loss items, evaluated retain items), disjoint by person: a person whose item is evaluated
    gives the loss none of theirs (other attributes of the same person would leak what is measured).

    Without a retain loss nothing is trained on, so every retain item may be evaluated.
    """
    if not trained:
        chosen = (
            retain
            if n_eval is None or n_eval >= len(retain)
            else random.Random(f"eval-retain-{seed}").sample(retain, n_eval)
        )
        return retain, chosen
    n = max(1, len(retain) // 5) if n_eval is None else n_eval
    chosen = random.Random(f"eval-retain-{seed}").sample(retain, min(n, len(retain)))

    def person(it: Any) -> Any:
        return ("person", it.person_id) if it.person_id is not None else ("item", it.item_id)

    held = {person(it) for it in chosen}
    return [it for it in retain if person(it) not in held], chosen


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.config.unlearn import UnlearnConfig
    from frequnlearn.records import check_output_dir
    from frequnlearn.unlearn.losses import load_plugins

    # Before anything validates a method name: a plugin's loss joins the registry on import.
    load_plugins(args.plugin, key="--plugin")
    eval_over = [o for o in args.overrides if o.startswith("evaluate.")]
    unlearn_over = [o for o in args.overrides if not o.startswith("evaluate.")]
    if args.method:
        unlearn_over += method_overrides(args.method)
    cfg = load_config(UnlearnConfig, args.config, unlearn_over, section="unlearn")
    ecfg = load_config(EvalConfig, args.config, eval_over, section="evaluate")
    out = check_output_dir(args.out, "unlearn", overwrite=args.overwrite)
    if args.dry_run:
        return _dry_run(args, cfg, ecfg)
    forget, retain, eval_retain, extra = _tables(args, cfg)
    bios = _bio_prompts(args.bio_prompts) if args.bio_prompts else {}
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.unlearn.stage import UnlearnInputs, run_unlearn

    model, tok = load_model_and_tokenizer(args.model, dtype=cfg.dtype)
    inputs = UnlearnInputs(
        model=model,
        tokenizer=tok,
        forget=forget,
        retain=retain,
        evaluated=[("forget", forget), ("retain", eval_retain), ("eval", extra)],
        identity={
            "run_id": out.name,
            "model": args.model,
            "n_params": sum(p.numel() for p in model.parameters()),
            "seed": cfg.seed,
            "method": cfg.method if cfg.retain_loss == "none" else f"{cfg.method}+{cfg.retain_loss}",
        },
        bios=bios,
        # Item ids per set: the retain loss trains on `retain`, role "retain" evaluates `eval_retain`.
        sets={
            k: [it.item_id for it in v]
            for k, v in (("forget", forget), ("retain", retain), ("eval_retain", eval_retain))
        },
        info=_record(args, ecfg),
    )
    result = run_unlearn(cfg, ecfg, inputs, out)
    print(
        f"unlearned {len(forget)} items with {cfg.method}+{cfg.retain_loss}: {result.steps} steps in {result.seconds:.1f}s"
    )
    terms = ("loss", "forget_loss", "retain_loss", "forget_token_logp", "retain_token_logp")
    print("final: " + ", ".join(f"{k}={result.final[k]:.4g}" for k in terms if k in result.final))
    if result.trajectory is not None:
        print(_accuracy_table(result.trajectory))
    weights = (
        "model (merged), adapter"
        if cfg.lora and cfg.lora_merge
        else "model" + (" (LoRA adapter)" if cfg.lora else "")
    )
    print(f"wrote {out}/{weights}, trajectory.parquet, log.jsonl, sets.json, run.json")
    return 0


def _dry_run(args: argparse.Namespace, cfg: Any, ecfg: Any) -> int:
    """Check the model argument and the local tables (loaded: they are small), say what would run."""
    from frequnlearn.cli_common import describe_model, describe_out, is_local, print_dry_run

    lines = [f"would load {describe_model(args.model)}"]
    specs = [s for s in (args.forget, args.retain, args.eval_items) if s]
    if all(is_local(s) for s in specs):
        forget, retain, eval_retain, extra = _tables(args, cfg)
        lines.append(
            f"would unlearn {len(forget)} items, {len(retain)} in the retain loss; evaluate {len(eval_retain)} "
            f"held-out retain items" + (f" and {len(extra)} more" if extra else "")
        )
    else:
        lines.append("tables from a hub dataset are not loaded in a dry run: " + ", ".join(specs))
    if args.bio_prompts:
        lines.append(f"would read {len(_bio_prompts(args.bio_prompts))} biography prompts")
    method = cfg.method if cfg.retain_loss == "none" else f"{cfg.method}+{cfg.retain_loss}"
    length = f"{cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs} epochs"
    tuned = f"LoRA r={cfg.lora.r}" + (", merged" if cfg.lora_merge else "") if cfg.lora else "every weight"
    lines.append(
        f"method {method}, lr {cfg.lr:g}, {length}, training {tuned}; metrics {','.join(ecfg.metrics)}"
    )
    lines.append(f"would write {describe_out(args.out, 'unlearn')}")
    print_dry_run("unlearn", lines, cfg)
    return 0


def _record(args: argparse.Namespace, ecfg: Any) -> dict[str, Any]:
    """What the run record adds about this command: its inputs, their hashes and the evaluation."""
    from frequnlearn.config import to_dict
    from frequnlearn.records import input_hashes
    from frequnlearn.unlearn.losses import plugin_records

    return {
        "inputs": {
            "model": args.model,
            "forget": args.forget,
            "retain": args.retain,
            "eval_items": args.eval_items,
            "eval_retain": args.eval_retain,
            "bio_prompts": args.bio_prompts,
        },
        "evaluate": to_dict(ecfg),
        "plugins": plugin_records(),
        "inputs_sha256": input_hashes(
            forget=args.forget, retain=args.retain, eval_items=args.eval_items, bio_prompts=args.bio_prompts
        ),
    }


def _tables(args: argparse.Namespace, cfg: Any) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(forget, retain-loss, evaluated retain, extra evaluated) items from the table arguments, checked."""
    from frequnlearn.data.tables import check_overlap, load_table

    cols = {
        "question_column": cfg.question_column,
        "answer_column": cfg.answer_column,
        "id_column": cfg.id_column,
    }
    forget = load_table(args.forget, name="--forget", **cols)
    retain = load_table(args.retain, name="--retain", **cols) if args.retain else []
    if cfg.retain_loss != "none" and not retain:
        raise ConfigError(
            f"--retain: retain_loss={cfg.retain_loss} needs a retain table; give --retain TABLE or retain_loss=none"
        )
    check_overlap(forget, retain)
    extra = load_table(args.eval_items, name="--eval-items", **cols) if args.eval_items else []
    if args.eval_retain is not None and args.eval_retain < 0:
        raise ConfigError("--eval-retain: must be >= 0")
    retain, eval_retain = split_retain(retain, args.eval_retain, cfg.seed, cfg.retain_loss != "none")
    if cfg.retain_loss != "none" and not retain:
        raise ConfigError(
            f"--eval-retain: holding out {len(eval_retain)} items leaves no retain items to train on; lower it"
        )
    return forget, retain, eval_retain, extra


def _bio_prompts(path: str) -> dict[str, Any]:
    from frequnlearn.records import read_bio_prompts

    return {b.item_id: b for b in read_bio_prompts(path, "--bio-prompts")}


def _accuracy_table(traj: Any) -> str:
    """Share of items known (the `evaluate.known` rule) and ranked first, per role and evaluated step."""
    q = traj[traj["probe"] == "question"]
    parts = []
    for family, column, label in (("gen", "known", "known"), ("prob", "rank_correct", "rank1")):
        sub = q[q["family"] == family]
        if len(sub) and sub[column].notna().any():
            parts.append(
                sub.pivot_table(index="step", columns="role", values=column, aggfunc="mean").add_prefix(
                    f"{label}:"
                )
            )
    if not parts:
        return ""
    import pandas as pd

    return pd.concat(parts, axis=1).round(3).to_string()
