"""Minutes of the default study's pretraining, and seconds to equal knowledge, for each faster path
as a ratio against today's path (the config as committed) measured in the same run.

The default study (`configs/tiny.yaml`) spends most of its time pretraining one model. This script
generates that study's world, pretrains it as the config says (fp32, one model), then with each
faster path, and reads what every model knows from its run.json (the knowledge check: greedy answers
to each group's held-out birth-city questions, the study's "known" rule). A path reaches equal
knowledge when every group is within `--tolerance` (2 points) of today's; only then is its time a
"seconds to equal knowledge" figure.

Paths: `bf16` (autocast, where the CPU has avx512_bf16 or amx_bf16), `compile` (torch.compile, with
`--compile`: it takes minutes to compile on 2 cores), `target, constant` (`--target-every N`: a
constant learning rate until each forget group knows what today's run knows less the tolerance,
`pretrain.stop_known`, checked every N steps; the checks' time counts) and `ensemble K` (`--seeds K`:
K seeds trained together against K solo runs; each solo seed is trained and checked too).

    .venv/bin/python benchmarks/bench_default_study.py [--config configs/tiny.yaml] [--threads 2]
        [--compile] [--target-every N] [--seeds K] [--epochs E]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

GROUPS = ("retain", "forget_high", "forget_low")


def outcome(model_dir: Path) -> tuple[dict[str, float], str]:
    """Accuracy per group of the final knowledge check, from the run's own record, and where a run
    with a knowledge target ended if it ended early."""
    summary = json.loads((model_dir / "run.json").read_text())["summary"]
    by_group = summary["knowledge"]["by_group"]
    known = {g: by_group[g]["accuracy"] for g in GROUPS if g in by_group}
    stopped = (
        f" | stopped at step {summary['steps']} of {summary['planned_steps']}"
        if summary.get("stopped_by_knowledge_target")
        else ""
    )
    return known, stopped


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def line(
    name: str,
    seconds: float,
    base_seconds: float,
    known: dict[str, float],
    base: dict[str, float],
    tol: float,
) -> str:
    gaps = {g: known[g] - base[g] for g in base}
    equal = all(abs(d) <= tol for d in gaps.values())
    shown = ", ".join(f"{g} {known[g]:.3f} ({gaps[g]:+.3f})" for g in base)
    verdict = (
        f"equal knowledge: seconds to equal knowledge x{base_seconds / seconds:.2f}"
        if equal
        else f"not equal knowledge (a group moved more than {tol:.2f})"
    )
    return f"  {name:14s} {seconds / 60:5.2f} min  x{base_seconds / seconds:.2f} of today's  | {shown} | {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the config's study.num_threads)"
    )
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling)")
    parser.add_argument(
        "--seeds", type=int, default=0, help="also K seeds as one ensemble against K solo runs"
    )
    parser.add_argument(
        "--epochs", type=float, default=None, help="fewer epochs than the config (a smoke run)"
    )
    parser.add_argument(
        "--target-every",
        type=int,
        default=0,
        help="also a constant-rate run that stops at today's knowledge (pretrain.stop_known), checked every N steps",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.02, help="equal knowledge: every group within this"
    )
    args = parser.parse_args()

    import torch

    from frequnlearn.config import load_config
    from frequnlearn.config.study import StudyConfig
    from frequnlearn.data.generate import generate
    from frequnlearn.pretrain import pretrain
    from frequnlearn.pretrain.ensemble import pretrain_ensemble
    from frequnlearn.pretrain.settings import cpu_bf16_supported

    study = load_config(StudyConfig, args.config)
    threads = args.threads or study.study.num_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    size = study.study.model_sizes[0]
    cfg = dataclasses.replace(
        study.pretrain_for(size, study.study.seeds[0]), num_threads=threads, save_every=10**6
    )
    if args.epochs:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    print(
        f"{args.config}: {study.generate.n_people} people, preset {size}, {cfg.epochs:g} epochs, batch "
        f"{cfg.batch_size}, threads {threads}; CPU bf16: {'yes' if cpu_bf16_supported() else 'no'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate(study.generate, root / "data")
        base_s = timed(lambda: pretrain(data, cfg, root / "today"))
        base, _ = outcome(root / "today")
        print(
            f"  {'today':14s} {base_s / 60:5.2f} min  x1.00            | "
            + ", ".join(f"{g} {v:.3f}" for g, v in base.items())
        )
        variants: dict[str, Any] = {}
        if cpu_bf16_supported():
            variants["bf16"] = dataclasses.replace(cfg, mixed_precision="bf16")
        else:
            print(
                "  bf16           not measured: this CPU would emulate it (refused by mixed_precision: bf16)"
            )
        if args.compile:
            variants["compile"] = dataclasses.replace(cfg, compile=True)
        if args.target_every:
            # Epochs chosen by a knowledge target: today's knowledge (less the tolerance) in each forget
            # group, at the peak rate throughout (a cosine would meet it only as it ends).
            targets = {
                g: round(max(base[g] - args.tolerance, 0.01), 4)
                for g in ("forget_high", "forget_low")
                if g in base
            }
            variants["target, constant"] = dataclasses.replace(
                cfg, schedule="constant", stop_known=targets, eval_every=args.target_every
            )
        for name, variant in variants.items():
            out = root / name.replace(", ", "-")
            seconds = timed(lambda v=variant, o=out: pretrain(data, v, o))
            known, stopped = outcome(out)
            print(line(name, seconds, base_s, known, base, args.tolerance) + stopped)
        if args.seeds >= 2:
            seeds = list(range(args.seeds))
            solo_s = base_s  # seed 0 solo is today's run
            for s in seeds[1:]:
                solo_s += timed(
                    lambda s=s: pretrain(data, dataclasses.replace(cfg, seed=s), root / f"solo{s}")
                )
            cfgs = [dataclasses.replace(cfg, seed=s, ensemble=True) for s in seeds]
            dirs = [root / f"ens{s}" for s in seeds]
            ens_s = timed(lambda: pretrain_ensemble(data, cfgs, dirs))
            for s, d in zip(seeds, dirs):
                solo = root / ("today" if s == 0 else f"solo{s}")
                print(
                    line(
                        f"ensemble s{s}",
                        ens_s / len(seeds),
                        solo_s / len(seeds),
                        outcome(d)[0],
                        outcome(solo)[0],
                        args.tolerance,
                    )
                )
            print(
                f"  ensemble of {len(seeds)}: {ens_s / 60:.2f} min against {solo_s / 60:.2f} min for {len(seeds)} "
                f"solo runs: x{solo_s / ens_s:.2f}"
            )


if __name__ == "__main__":
    main()
