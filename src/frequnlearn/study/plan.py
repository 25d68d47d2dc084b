"""The study's plan: a DAG of tasks, from the config alone (nothing is loaded).

Each task has a kind (its stage), a name (its output's name), its parameters, the ids of the tasks
whose outputs it reads, and the resources it asks of an executor. The list is in a valid order (every
input before its reader), the order the local executor runs it in and `--dry-run` prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn.config.study import StudyConfig
from frequnlearn.layout import DATA_DIR, ORACLE_DATA_DIR, world_suffix

# Stages that run a model: torch threads (and a GPU, where the cluster has one).
MODEL_KINDS = ("pretrain", "baseline", "oracle", "unlearn", "attack")


@dataclass(frozen=True)
class Resources:
    """What a task asks of the machine that runs it: CPU cores (its torch threads) and GPUs (used by
    an executor only where the cluster has GPUs)."""

    cpus: int = 1
    gpus: float = 0.0


@dataclass
class Task:
    kind: str  # generate | count | pretrain | baseline | oracle_data | oracle | unlearn | attack | report
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # ids of the tasks whose outputs this one reads
    resources: Resources = field(default_factory=Resources)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def model_tag(size: str, seed: int, world: int | None = None) -> str:
    """A pretrained model's name; `world` only in a study of several generated worlds."""
    return f"{size}-s{seed}{world_suffix(world)}"


def run_name(method: str, level: str, selection: str) -> str:
    return f"{method}/{level}-{selection}"


def worlds_of(cfg: StudyConfig) -> list[int]:
    """The generated worlds (generate seeds) a study spans: `study.worlds`, else generate's seed alone."""
    return list(cfg.study.worlds) or [cfg.generate.seed]


def plan(cfg: StudyConfig, threads: int = 1) -> list[Task]:
    """Every unit of work in a valid order; the same list drives `--dry-run`, the progress display and
    the executors. A stage that runs a model asks for `threads` CPU cores (and one GPU where there are)."""
    s = cfg.study
    tasks: list[Task] = []
    made: dict[str, str] = {}  # what a task makes ("data:<world>", "model:<tag>", ...) -> its id
    model_res = Resources(cpus=threads, gpus=1.0)

    def add(task: Task, makes: list[str], reads: list[str]) -> Task:
        task.inputs = tuple(dict.fromkeys(made[r] for r in reads if r in made))
        tasks.append(task)
        made.update({m: task.id for m in makes})
        return task

    several = s.setting == "synthetic" and len(worlds_of(cfg)) > 1
    models: list[tuple[str, str | None, int, int | None, list[int]]] = []
    if s.setting == "synthetic":
        for world in worlds_of(cfg):
            label = world if several else None
            add(Task("generate", f"{DATA_DIR}{world_suffix(label)}", {"world": world}), [f"data:{world}"], [])
            # Every seed pretrains its own models; each is unlearned with that same seed. With
            # `pretrain.ensemble`, the seeds of one size are one task: trained together, batched.
            groups = [[seed] for seed in s.seeds for _ in s.model_sizes]
            sizes = [size for _ in s.seeds for size in s.model_sizes]
            if cfg.pretrain.ensemble:
                groups, sizes = [list(s.seeds) for _ in s.model_sizes], list(s.model_sizes)
            for size, seeds in zip(sizes, groups):
                tags = [model_tag(size, seed, label) for seed in seeds]
                p = cfg.pretrain_for(size, seeds[0])
                # What the time estimate scales measured throughput by: parameters and tokens (or epochs).
                tokens = p.max_steps * p.batch_size * p.seq_len if p.max_steps else None
                work = {"n_params": p.model_preset().n_params(), "epochs": p.epochs, "tokens": tokens}
                # The models a task makes, each tag with its seed: one, or an ensemble's.
                params = {
                    "size": size,
                    "seed": seeds[0],
                    "world": world,
                    "tags": tags,
                    "seeds": seeds,
                    **work,
                }
                name = (
                    tags[0]
                    if len(seeds) == 1
                    else f"{size}-" + "+".join(f"s{x}" for x in seeds) + world_suffix(label)
                )
                add(
                    Task("pretrain", name, params, resources=model_res),
                    [f"model:{tag}" for tag in tags],
                    [f"data:{world}"],
                )
            for seed in s.seeds:
                for size in s.model_sizes:
                    models.append((model_tag(size, seed, label), size, seed, world, [seed]))
    else:
        if cfg.count.backend != "ground-truth":
            add(Task("count", "items", {"world": None}), ["data:None"], [])
        # One given model, scored once; the seeds vary the unlearning runs (and their sampled sets).
        tag = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(s.model or "model").name).strip("-")
        models.append((tag, None, s.seeds[0], None, list(s.seeds)))
    for tag, size, seed, world, run_seeds in models:
        n_params = cfg.pretrain_for(size, seed).model_preset().n_params() if size else None
        ident = {"size": size, "seed": seed, "world": world, "n_params": n_params}
        data, model = f"data:{world}", f"model:{tag}"
        add(Task("baseline", tag, ident, resources=model_res), [f"baseline:{tag}"], [data, model])
        if cfg.attacks.oracle:
            if f"oracle_data:{world}" not in made:  # one reduced corpus per world, shared by its models
                label = f"{ORACLE_DATA_DIR}{world_suffix(world if several else None)}"
                add(Task("oracle_data", label, {"world": world}), [f"oracle_data:{world}"], [data])
            reads = [data, model, f"baseline:{tag}", f"oracle_data:{world}"]
            add(Task("oracle", tag, ident, resources=model_res), [f"oracle:{tag}"], reads)
        for run_seed in run_seeds:
            prefix = tag if s.setting == "synthetic" else f"{tag}/s{run_seed}"
            for method in s.methods:
                for selection in s.selections:
                    for level in s.levels:
                        name = f"{prefix}/{run_name(method, level, selection)}"
                        params = {
                            "model": tag,
                            "size": size or tag,
                            "seed": run_seed,
                            "world": world,
                            "method": method,
                            "level": level,
                            "selection": selection,
                            "n_params": n_params,
                        }
                        reads = [data, model, f"baseline:{tag}"]
                        add(Task("unlearn", name, params, resources=model_res), [f"unlearn:{name}"], reads)
                        if cfg.attacks.active and selection in cfg.attacks.selections:
                            reads = [*reads, f"oracle:{tag}", f"unlearn:{name}"]
                            add(Task("attack", name, dict(params), resources=model_res), [], reads)
    report = Task("report", "report")
    report.inputs = tuple(t.id for t in tasks)
    tasks.append(report)
    return tasks


def inputs_of(task: Task, tasks: list[Task]) -> list[Task]:
    """The tasks whose outputs `task` reads, in plan order."""
    ids = set(task.inputs)
    return [t for t in tasks if t.id in ids]


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
    if s.setting == "synthetic":
        lines.append(f"  worlds (generate seeds): {worlds_of(cfg)}")
    lines.append(
        f"  executor: {s.executor}"
        + (f" at {s.ray_address}, up to {s.max_retries} retries" if s.executor == "ray" else "")
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
