"""The study's plan: a DAG of tasks, from the config alone (nothing is loaded).

Each task has a kind (its stage), a name (its output's name), its parameters, the ids of the tasks
whose outputs it reads, and the resources it asks of an executor. The list is in a valid order (every
input before its reader), the order the local executor runs it in and `--dry-run` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn.config.study import StudyConfig, StudyOptions, SuiteModel
from frequnlearn.layout import DATA_DIR, ORACLE_DATA_DIR, pretrain_task_name, world_suffix

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
                add(
                    Task("pretrain", pretrain_task_name(size, seeds, label), params, resources=model_res),
                    [f"model:{tag}" for tag in tags],
                    [f"data:{world}"],
                )
            for seed in s.seeds:
                for size in s.model_sizes:
                    models.append((model_tag(size, seed, label), size, seed, world, [seed]))
    else:
        if cfg.count.backend != "ground-truth":
            add(Task("count", "items", {"world": None}), ["data:None"], [])
        # Each given model (one, or each size of a suite) scored once; the seeds vary the unlearning
        # runs (and their sampled sets).
        for entry in s.suite():
            models.append((entry.tag, None, s.seeds[0], None, list(s.seeds)))
    for tag, size, seed, world, run_seeds in models:
        n_params = cfg.pretrain_for(size, seed).model_preset().n_params() if size else real_params(cfg, tag)
        ident = {"size": size, "seed": seed, "world": world, "n_params": n_params}
        if s.models:  # a suite: which weights, and how many passes over the counted corpus they made
            entry = suite_model(s, tag)
            ident.update(
                model=tag, hub_id=entry.id, revision=entry.revision, corpus_epochs=entry.corpus_epochs
            )
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
                        if s.models:
                            params["corpus_epochs"] = ident["corpus_epochs"]
                        reads = [data, model, f"baseline:{tag}"]
                        add(Task("unlearn", name, params, resources=model_res), [f"unlearn:{name}"], reads)
                        if cfg.attacks.active and selection in cfg.attacks.selections:
                            reads = [*reads, f"oracle:{tag}", f"unlearn:{name}"]
                            add(Task("attack", name, dict(params), resources=model_res), [], reads)
    report = Task("report", "report")
    report.inputs = tuple(t.id for t in tasks)
    tasks.append(report)
    return tasks


def suite_model(s: StudyOptions, tag: str | None) -> SuiteModel:
    """The entry of the real setting's model named `tag` (the one model when there is no suite)."""
    suite = s.suite()
    for entry in suite:
        if entry.tag == tag or (tag is None and len(suite) == 1):
            return entry
    raise ValueError(f"no model named {tag!r} in this study; its models are {[m.tag for m in suite]}")


def real_params(cfg: StudyConfig, tag: str) -> int | None:
    """Parameters of a given model, from its shape (a local config.json, or the shapes of the suites
    frequnlearn knows); None when unknown, and then the size cannot enter a size trend."""
    from frequnlearn.models.footprint import architecture

    arch = architecture(suite_model(cfg.study, tag).id)
    return arch.n_params() if arch is not None else None


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
        if s.models:
            lines.append(f"  model suite: {len(s.models)} sizes, each unlearned with the same settings")
        else:
            lines.append(f"  model: {s.model}" + (f" (gguf {s.gguf_file})" if s.gguf_file else ""))
        lines.append(f"  items: {s.items}; frequency by {s.compare_by} via count backend {cfg.count.backend}")
        lines.extend(counting_lines(cfg))
        lines.append(f"  prompt format: {s.prompt_format}")
        lines.extend(footprint_lines(cfg))
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


def counting_lines(cfg: StudyConfig) -> list[str]:
    """How the real setting's items get their frequency: backend, index, measure and buckets."""
    c = cfg.count
    if c.backend == "ground-truth":
        return ["  counting: the table's own buckets (ground-truth), no corpus queried"]
    where = {"infinigram-api": f"index {c.api_index} at {c.api_url}"}.get(c.backend, f"corpus {c.corpus}")
    window = f", max_diff_tokens {c.max_diff_tokens}" if c.measure == "window" and c.max_diff_tokens else ""
    buckets = f"{c.bucket_method} buckets {c.buckets}" + (
        f" at {c.thresholds}" if c.bucket_method == "thresholds" else ""
    )
    return [
        f"  counting: backend {c.backend}, {where}; measure {c.measure}{window}, "
        f"spellings {c.case_variants}; {buckets}"
    ]


def footprint_lines(cfg: StudyConfig) -> list[str]:
    """Per size of the real setting: parameters, passes over the counted corpus, and the GPU memory and
    time expected on one H200 (`models.footprint`); sizes whose shape is unknown say so."""
    from frequnlearn.models import footprint as fp

    s, u, e = cfg.study, cfg.unlearn, cfg.evaluate
    work = real_workload(cfg)
    lines = [
        f"  expected on one {fp.H200.name} (bf16 weights, gradients, AdamW moments and activations; "
        f"{fp.DEFAULT_MFU:.0%} of its {fp.H200.bf16_flops / 1e12:.0f} TFLOP/s; {work.steps} steps of "
        f"{u.batch_size} x {fp.QA_TOKENS} tokens, {work.eval_points} evaluations of {work.eval_items} items "
        f"x {len(e.probes)} probes per run; loading and utility tasks not counted):"
    ]
    width = max(len(m.tag) for m in s.suite())
    total, unknown, counts = 0.0, [], []
    for entry in s.suite():
        arch = fp.architecture(entry.id)
        source = entry.id + (f"@{entry.revision}" if entry.revision else "")
        epochs = f"corpus epochs {entry.corpus_epochs:g}; " if s.models else ""
        if arch is None:
            unknown.append(entry.tag)
            lines.append(f"    {entry.tag:<{width}}  {source}; {epochs}shape unknown (no estimate)")
            continue
        f = fp.footprint(arch, work)
        total += f.seconds
        counts.append(f.n_params)
        lines.append(f"    {entry.tag:<{width}}  {source}; {epochs}{f.line()}")
    if len(counts) > 1:
        lines.append(f"    x{max(counts) / min(counts):.0f} parameters from the smallest to the largest")
    if counts:
        lines.append(
            f"    total: {total / 3600:.1f} GPU hours"
            + (f" (without {', '.join(unknown)})" if unknown else "")
        )
    return lines


def real_workload(cfg: StudyConfig) -> Any:
    """The unlearning runs of one real model as `models.footprint` sizes them. Without
    `study.forget_size`, a level is assumed to hold 60 items (a third of the 181 capitals)."""
    import math

    from frequnlearn.config.study import parse_method
    from frequnlearn.models.footprint import Workload

    s, u, e = cfg.study, cfg.unlearn, cfg.evaluate
    n_forget = s.forget_size or 60
    steps = u.max_steps or u.epochs * math.ceil(n_forget / u.batch_size)
    points = {0, *(x for x in u.eval_steps if x <= steps), steps}
    if u.eval_every:
        points |= set(range(0, steps + 1, u.eval_every))
    methods = [parse_method(m) for m in s.methods]
    return Workload(
        runs=len(s.seeds) * len(s.methods) * len(s.selections) * len(s.levels),
        steps=steps,
        batch_size=u.batch_size,
        retain=any(retain != "none" for _, retain in methods),
        grad_accum=u.grad_accum,
        eval_points=len(points),
        eval_items=2 * n_forget + s.eval_retain_size + s.eval_utility_size,
        probes=len(e.probes),
        gen_tokens=e.max_new_tokens,
        eval_batch=e.batch_size if isinstance(e.batch_size, int) else 64,
        frozen_copy=any(_needs_frozen_copy(f, r) for f, r in methods),
    )


def _needs_frozen_copy(forget: str, retain: str) -> bool:
    """Whether a method keeps a frozen copy of the model (losses on its logits or activations), by
    the needs its losses registered (nothing registered: no copy assumed)."""
    from frequnlearn import names

    losses = [names.table(names.FORGET_LOSS).get(forget), names.table(names.RETAIN_LOSS).get(retain)]
    needs = set().union(*(getattr(loss, "needs", frozenset()) for loss in losses))
    return bool(needs & {"ref_logits", "ref_hidden"})
