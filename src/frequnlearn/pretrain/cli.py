"""`frequnlearn pretrain --data DATA_DIR --preset small --out MODEL_DIR [--config FILE] [key=value ...]`."""

from __future__ import annotations

import argparse

from frequnlearn.cli_common import add_command, add_settings, config_default
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.models.presets import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "pretrain",
        help="train a GPT-2 preset from scratch on a generated corpus (resumable)",
        description="Train a GPT-2 of a named size on DATA_DIR's corpus: tokenizer, packing, accelerate loop, "
        "checkpoints every save_every steps, a knowledge check per group and exposure; the model directory "
        "gets a model card (README.md) beside run.json. Rerunning the same command resumes from the newest "
        "readable checkpoint; a finished run is reused only for the same settings and the same corpus (its "
        "content hash is recorded). Several processes: `accelerate launch --multi_gpu --num_processes 2 -m "
        "frequnlearn.cli pretrain ...` (also on a machine without GPUs, where they train on the CPU) or "
        "`torchrun --nproc_per_node 2 -m frequnlearn.cli pretrain ...`; batch_size stays the global batch.",
    )
    p.add_argument(
        "--data", required=True, metavar="DATA_DIR", help="directory written by `frequnlearn generate`"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="MODEL_DIR",
        help="where the model, logs and checkpoints go: a new directory, or one `pretrain` wrote before",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an existing directory that `pretrain` did not make (files of other names are kept)",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"model size: {', '.join(PRESETS)} (default: pretrain.preset of --config, else "
        f"{config_default(PretrainConfig, 'preset')})",
    )
    add_settings(p, "pretrain", "epochs=40 lr=0.002 log_with=[tensorboard]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.records import check_output_dir

    check_output_dir(args.out, "model", overwrite=args.overwrite)
    overrides = ([f"preset={args.preset}"] if args.preset else []) + list(args.overrides)
    cfg = load_config(PretrainConfig, args.config, overrides, section="pretrain")
    if args.dry_run:
        return _dry_run(args, cfg)
    from frequnlearn.pretrain import pretrain

    out = pretrain(args.data, cfg, args.out)
    print(out)
    return 0


def _dry_run(args: argparse.Namespace, cfg: PretrainConfig) -> int:
    from pathlib import Path

    from frequnlearn.cli_common import describe_out, print_dry_run
    from frequnlearn.errors import DataError

    data = Path(args.data)
    missing = [name for name in ("manifest.json", "corpus.jsonl", "qa.jsonl") if not (data / name).is_file()]
    if missing:
        raise DataError(f"--data {data}: no {missing[0]}; give a directory written by `frequnlearn generate`")
    preset = cfg.model_preset()
    length = f"{cfg.max_steps} optimizer steps" if cfg.max_steps else f"{cfg.epochs:g} epochs"
    print_dry_run(
        "pretrain",
        [
            f"would read {data} (a generated data directory)",
            f"would train {cfg.preset}: {preset.n_layer} layers, width {preset.n_embd}, {preset.n_head} heads, "
            f"{preset.n_positions} positions, about {preset.n_params() / 1e6:.2f}M parameters; {length} of "
            f"{cfg.batch_size} x {cfg.seq_len} tokens",
            f"would write {describe_out(args.out, 'model')} (a finished run of the same settings and corpus "
            "is reused; a cut one resumes)",
        ],
        cfg,
    )
    return 0
