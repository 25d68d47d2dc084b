"""Training throughput of `frequnlearn.pretrain` against a bare PyTorch loop, in the same run.

Same model, same initial weights, same packed batches, same optimizer; the bare loop has no
accelerate, logging, checkpoints or progress bar. Both are timed over the same steps after a warm-up,
alternating twice, best of each kept (the machine may be shared). Prints tokens/s and the ratio.

    .venv/bin/python benchmarks/bench_pretrain.py [--quick] [--preset tiny] [--steps 200] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def make_data(root: Path, n_people: int) -> Path:
    from frequnlearn.config.generate import GenerateConfig
    from frequnlearn.data.generate import generate

    return generate(GenerateConfig(n_people=n_people), root / "data")


def ours(data: Path, cfg, out: Path, warmup: int) -> float:
    from frequnlearn.pretrain import pretrain

    pretrain(data, cfg, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = seconds = 0.0
    step_tokens = cfg.batch_size * cfg.seq_len
    prev = 0
    for row in rows:
        n = (row["step"] - prev) * step_tokens
        if prev >= warmup:
            tokens += n
            seconds += n / row["tokens_per_s"]
        prev = row["step"]
    return tokens / seconds


def bare(data: Path, cfg, tokenizer_dir: Path, warmup: int) -> float:
    import torch
    from transformers import AutoTokenizer

    from frequnlearn.models.presets import build_model, get_preset
    from frequnlearn.pretrain.data import BatchStream, prepare_data
    from frequnlearn.pretrain.loop import build_optimizer, build_scheduler

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    preset = get_preset(cfg.preset)
    model = build_model(preset, tok, seed=cfg.seed)
    stream = BatchStream(prepare_data(data, tok, cfg), cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, cfg.max_steps)
    model.train()
    start = 0.0
    for step in range(cfg.max_steps):
        if step == warmup:
            start = time.perf_counter()
        ids, labels, _ = stream.batch(step)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    return (cfg.max_steps - warmup) * cfg.batch_size * cfg.seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer people and steps (a smoke run)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from frequnlearn.config import load_config
    from frequnlearn.config.pretrain import PretrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (60 if args.quick else 200)
    warmup = 10 if args.quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data(root, 60 if args.quick else 300)
        overrides = [
            f"preset={args.preset}",
            f"max_steps={steps}",
            f"log_every={warmup}",
            "save_every=100000",
            "eval_per_group=1",
            "eval_attributes=[employer]",
        ]
        cfg = load_config(PretrainConfig, overrides=overrides)
        results: dict[str, list[float]] = {"pretrain": [], "bare": []}
        for i in range(2):
            out = root / f"run{i}"
            results["pretrain"].append(ours(data, cfg, out, warmup))
            results["bare"].append(bare(data, cfg, out, warmup))
    best = {k: max(v) for k, v in results.items()}
    print(
        f"preset {args.preset}, batch {cfg.batch_size} x {cfg.seq_len} tokens, {steps} steps, "
        f"threads {torch.get_num_threads()}"
    )
    for name, values in results.items():
        print(
            f"  {name:9s} tokens/s: " + ", ".join(f"{v:,.0f}" for v in values) + f" (best {best[name]:,.0f})"
        )
    print(f"ratio pretrain / bare: {best['pretrain'] / best['bare']:.3f}")


if __name__ == "__main__":
    main()
