"""`frequnlearn pretrain --data DATA_DIR --preset small --out MODEL_DIR [--config PATH] [key=value ...]`."""

from __future__ import annotations

import argparse

from frequnlearn.models.presets import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="train a GPT-2 preset from scratch on a generated corpus (resumable)",
        description="Train a GPT-2 of a named size on DATA_DIR's corpus: tokenizer, packing, accelerate loop, "
        "checkpoints every save_every steps, a knowledge check per group and exposure. Rerunning the same "
        "command resumes from the newest readable checkpoint; a finished run is reused only for the same "
        "settings and the same corpus (its content hash is recorded). Several processes: `accelerate launch --multi_gpu "
        "--num_processes 2 -m frequnlearn.cli pretrain ...` (also on a machine without GPUs, where they train "
        "on the CPU) or `torchrun --nproc_per_node 2 -m frequnlearn.cli pretrain ...`; batch_size stays the "
        "global batch. Options come before the key=value overrides.",
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
        help=f"model size: {', '.join(PRESETS)} (default: the config's)",
    )
    p.add_argument(
        "--config", default=None, metavar="PATH", help="YAML file; its `pretrain:` section is read"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. epochs=40 lr=0.002 n_layer=6 log_with=[tensorboard]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frequnlearn.config import load_config
    from frequnlearn.config.pretrain import PretrainConfig
    from frequnlearn.pretrain import pretrain
    from frequnlearn.records import check_output_dir

    check_output_dir(args.out, "model", overwrite=args.overwrite)
    overrides = ([f"preset={args.preset}"] if args.preset else []) + list(args.overrides)
    cfg = load_config(PretrainConfig, args.config, overrides, section="pretrain")
    out = pretrain(args.data, cfg, args.out)
    print(out)
    return 0
