"""Training throughput of `frequnlearn.pretrain`'s faster paths as ratios against the default solo
loop, measured in the same run: K seeds trained together (`ensemble: true`) against K separate runs,
torch.compile (`compile: true`), bf16 autocast where the CPU has it, and the default loop against a
bare PyTorch loop (`--bare`).

Every figure is tokens/s after a warm-up (torch.compile compiles during it), from the runs' own
metrics.jsonl; each path runs `--repeats` times alternating with the others, best kept (the machine
may be shared). An ensemble's tokens/s counts all K models' tokens, so its ratio against one solo
run is how much sooner K seeds are trained than by K runs one after another.

    .venv/bin/python benchmarks/bench_pretrain.py [--quick] [--presets mini,tiny] [--ks 2,4]
        [--steps 80] [--threads N] [--compile-presets mini] [--bare]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def make_data(root: Path, n_people: int) -> Path:
    from frequnlearn.config.generate import GenerateConfig
    from frequnlearn.data.generate import generate

    return generate(GenerateConfig(n_people=n_people), root / "data")


def logged_rate(out: Path, cfg, warmup: int) -> float:
    """Tokens/s of one model's run after `warmup` steps, from its metrics.jsonl."""
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


def solo(data: Path, cfg, out: Path, warmup: int) -> float:
    from frequnlearn.pretrain import pretrain

    pretrain(data, cfg, out)
    return logged_rate(out, cfg, warmup)


def together(data: Path, cfg, k: int, out: Path, warmup: int) -> float:
    """All K models' tokens/s: each member logs its own, the ensemble's is their sum."""
    from frequnlearn.pretrain.ensemble import pretrain_ensemble

    cfgs = [dataclasses.replace(cfg, seed=s, ensemble=True) for s in range(k)]
    dirs = [out / f"s{s}" for s in range(k)]
    pretrain_ensemble(data, cfgs, dirs)
    return sum(logged_rate(d, c, warmup) for d, c in zip(dirs, cfgs))


def bare(data: Path, cfg, tokenizer_dir: Path, warmup: int) -> float:
    import torch
    from transformers import AutoTokenizer

    from frequnlearn.models.presets import build_model, get_preset
    from frequnlearn.pretrain.data import BatchStream, prepare_data
    from frequnlearn.pretrain.settings import build_optimizer, build_scheduler

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    model = build_model(get_preset(cfg.preset), tok, seed=cfg.seed)
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


def paths_for(
    data: Path, cfg, ks: list[int], warmup: int, compiled: bool, bf16: bool, with_bare: bool, solo_dir: Path
) -> dict:
    """The paths measured on one preset, each a function of its output directory returning tokens/s."""
    paths = {"solo": lambda out: solo(data, cfg, out, warmup)}
    for k in ks:
        paths[f"ensemble K={k}"] = lambda out, k=k: together(data, cfg, k, out, warmup)
    if compiled:
        fast = dataclasses.replace(cfg, compile=True)
        paths["solo compile"] = lambda out: solo(data, fast, out, warmup)
        for k in ks[-1:]:
            paths[f"ensemble K={k} compile"] = lambda out, k=k: together(data, fast, k, out, warmup)
    if bf16:
        half = dataclasses.replace(cfg, mixed_precision="bf16")
        paths["solo bf16"] = lambda out: solo(data, half, out, warmup)
    if with_bare:  # after "solo", whose directory holds the tokenizer it reads
        paths["bare loop"] = lambda out: bare(data, cfg, solo_dir, warmup)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer people and steps (a smoke run)")
    parser.add_argument("--presets", default="mini,tiny")
    parser.add_argument("--ks", default="2,4", help="ensemble sizes to measure")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--compile-presets",
        default="mini",
        help="presets whose torch.compile figures are measured (compiling takes minutes on 2 cores; empty: none)",
    )
    parser.add_argument("--bare", action="store_true", help="also the default loop against a bare loop")
    args = parser.parse_args()

    import torch

    from frequnlearn.config import load_config
    from frequnlearn.config.pretrain import PretrainConfig
    from frequnlearn.pretrain.settings import cpu_bf16_supported

    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (40 if args.quick else 80)
    warmup = 10 if args.quick else 20
    ks = [int(k) for k in args.ks.split(",") if k]
    bf16 = cpu_bf16_supported()
    print(
        f"{steps} steps, first {warmup} not timed, threads {torch.get_num_threads()}, "
        f"best of {args.repeats}; CPU bf16: {'yes' if bf16 else 'no (avx512_bf16/amx_bf16 absent)'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data(root, 60 if args.quick else 300)
        for preset in [p for p in args.presets.split(",") if p]:
            overrides = [
                f"preset={preset}",
                f"max_steps={steps}",
                f"log_every={warmup}",
                "save_every=100000",
                "eval_per_group=1",
                "eval_attributes=[employer]",
                f"num_threads={torch.get_num_threads()}",
            ]
            cfg = load_config(PretrainConfig, overrides=overrides)
            paths = paths_for(
                data,
                cfg,
                ks,
                warmup,
                preset in args.compile_presets.split(","),
                bf16,
                args.bare,
                root / f"{preset}-solo-0",
            )
            rates: dict[str, list[float]] = {name: [] for name in paths}
            for i in range(args.repeats):
                for name, run in paths.items():
                    out = root / f"{preset}-{name.replace(' ', '-').replace('=', '')}-{i}"
                    rates[name].append(run(out))
            best = {name: max(v) for name, v in rates.items()}
            print(f"preset {preset}, batch {cfg.batch_size} x {cfg.seq_len} tokens")
            for name, values in rates.items():
                print(
                    f"  {name:22s} tokens/s {best[name]:>9,.0f}  x{best[name] / best['solo']:.2f} of solo"
                    f"  ({', '.join(f'{v:,.0f}' for v in values)})"
                )
            for k in ks:
                print(
                    f"  ratio ensemble K={k} / {k} separate runs: {best[f'ensemble K={k}'] / best['solo']:.2f}"
                )
            if not bf16:
                print(
                    "  bf16: not measured (the CPU would emulate it; mixed_precision: bf16 is refused here)"
                )


if __name__ == "__main__":
    main()
