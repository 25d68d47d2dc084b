"""The study's plan: every unit of work in order, from the config alone (nothing is loaded)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn.config.study import StudyConfig


@dataclass
class Task:
    kind: str  # generate | count | pretrain | baseline | oracle | unlearn | attack | report
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def model_tag(size: str, seed: int) -> str:
    return f"{size}-s{seed}"


def run_name(method: str, level: str, selection: str) -> str:
    return f"{method}/{level}-{selection}"


def plan(cfg: StudyConfig) -> list[Task]:
    """Every unit of work in order; the same list drives `--dry-run`, the progress display and `run`."""
    s = cfg.study
    tasks: list[Task] = []
    if s.setting == "synthetic":
        tasks.append(Task("generate", "data"))
        # Every seed pretrains its own models; each is unlearned with that same seed.
        models = [(model_tag(size, seed), size, seed, [seed]) for seed in s.seeds for size in s.model_sizes]
        for tag, size, seed, _ in models:
            p = cfg.pretrain_for(size, seed)
            # What the time estimate scales measured throughput by: parameters and tokens (or epochs).
            tokens = p.max_steps * p.batch_size * p.seq_len if p.max_steps else None
            work = {"n_params": p.model_preset().n_params(), "epochs": p.epochs, "tokens": tokens}
            tasks.append(Task("pretrain", tag, {"size": size, "seed": seed, **work}))
    else:
        if cfg.count.backend != "ground-truth":
            tasks.append(Task("count", "items"))
        # One given model, scored once; the seeds vary the unlearning runs (and their sampled sets).
        tag = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(s.model or "model").name).strip("-")
        models = [(tag, None, s.seeds[0], list(s.seeds))]
    for tag, size, seed, run_seeds in models:
        n_params = cfg.pretrain_for(size, seed).model_preset().n_params() if size else None
        tasks.append(Task("baseline", tag, {"size": size, "seed": seed, "n_params": n_params}))
        if cfg.attacks.oracle:
            tasks.append(Task("oracle", tag, {"size": size, "seed": seed, "n_params": n_params}))
        for run_seed in run_seeds:
            prefix = tag if s.setting == "synthetic" else f"{tag}/s{run_seed}"
            for method in s.methods:
                for selection in s.selections:
                    for level in s.levels:
                        tasks.append(
                            Task(
                                "unlearn",
                                f"{prefix}/{run_name(method, level, selection)}",
                                {
                                    "model": tag,
                                    "size": size or tag,
                                    "seed": run_seed,
                                    "method": method,
                                    "level": level,
                                    "selection": selection,
                                    "n_params": n_params,
                                },
                            )
                        )
                        if cfg.attacks.active and selection in cfg.attacks.selections:
                            tasks.append(Task("attack", tasks[-1].name, dict(tasks[-1].params)))
    tasks.append(Task("report", "report"))
    return tasks


def inputs_of(task: Task, tasks: list[Task]) -> list[Task]:
    """The tasks whose outputs `task` reads: a worker starts a task only once these are done."""
    if task.kind == "report":
        return [t for t in tasks if t.kind != "report"]
    if task.kind in ("generate", "count"):
        return []
    data = [t for t in tasks if t.kind in ("generate", "count")]
    tag = task.name if task.kind in ("pretrain", "baseline", "oracle") else task.params["model"]
    # pretrain reads the data; baseline also the model; unlearn and oracle also the baseline scores.
    reads = {"pretrain": (), "baseline": ("pretrain",)}.get(task.kind, ("pretrain", "baseline"))
    own = [t for t in tasks if t.name == tag and t.kind in reads]
    if task.kind != "attack":
        return data + own
    oracle = [t for t in tasks if t.kind == "oracle" and t.name == tag]
    unlearned = [t for t in tasks if t.kind == "unlearn" and t.name == task.name]
    return data + own + oracle + unlearned


def param_span(cfg: StudyConfig) -> float:
    """Largest over smallest parameter count of the studied sizes (the sizes' range for Finding 2)."""
    counts = [cfg.pretrain_for(size, 0).model_preset().n_params() for size in cfg.study.model_sizes]
    return max(counts) / min(counts)


def describe_plan(cfg: StudyConfig, run_dir: Path) -> str:
    s = cfg.study
    lines = [f"study: {s.setting} setting -> {run_dir}"]
    if s.setting == "real":
        lines.append(f"  model: {s.model}" + (f" (gguf {s.gguf_file})" if s.gguf_file else ""))
        lines.append(f"  items: {s.items}; frequency by {s.compare_by} via count backend {cfg.count.backend}")
        lines.append(f"  prompt format: {s.prompt_format}")
    lines.append(
        f"  seeds: {s.seeds}; methods: {s.methods}; levels ({s.compare_by}): {s.levels}; "
        f"selections: {s.selections}; attribute: {s.attribute}"
    )
    tasks = plan(cfg)
    if s.setting == "synthetic":
        sizes = {t.params["size"]: t.params for t in tasks if t.kind == "pretrain"}
        lines.append(
            "  model sizes: "
            + "; ".join(
                f"{size} {p['n_params'] / 1e6:.2f}M parameters, "
                + (f"{p['tokens']} tokens" if p["tokens"] else f"{p['epochs']:g} epochs")
                for size, p in sizes.items()
            )
            + (
                f" (x{param_span(cfg):.1f} parameters from the smallest to the largest)"
                if len(sizes) > 1
                else ""
            )
        )
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.kind] = counts.get(task.kind, 0) + 1
        lines.append(f"  [{task.kind:8}] {task.name}")
    lines.append("  total: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)
