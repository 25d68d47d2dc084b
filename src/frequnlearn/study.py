"""The whole controlled (or real-model) experiment from one config: resumable and idempotent.

Each stage writes into the run directory under a key derived from its own config and inputs
(`.stage.json`). A rerun skips a stage whose key matches and whose output is complete, resumes a
pretraining run from its last checkpoint, and restarts an unlearning run that was cut (runs are short
and deterministic, so the result equals an uninterrupted one). Changing one field reruns only the
stages whose key it changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn import progress as bars
from frequnlearn.config import to_dict
from frequnlearn.config.study import StudyConfig, StudyOptions, parse_method
from frequnlearn.errors import DataError
from frequnlearn.records import (
    FORGET_GROUPS,
    QAItem,
    claim,
    clear_if_stale,
    mark_done,
    read_json,
    read_jsonl,
    run_info,
    stage_done,
    stage_key,
    write_json,
    write_parquet,
)

TIMINGS_FILE = "timings.json"
POLL_SECONDS = 5.0
# Bumped whenever `generate` writes different items for the same config (e.g. how candidates are drawn).
DATA_FORMAT = 3
# Bumped whenever `select_sets` draws different sets from the same inputs (part of each unlearn run's key).
SETS_FORMAT = 2


class NothingToUnlearn(DataError):
    """A level has no eligible items for one model (e.g. it knows none of them)."""


# ---------------------------------------------------------------- plan


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
    own = [t for t in tasks if t.name == tag and t.kind in ("pretrain", "baseline")]
    if task.kind in ("pretrain",):
        return data
    if task.kind == "baseline":
        return data + [t for t in own if t.kind == "pretrain"]
    if task.kind == "attack":
        oracle = [t for t in tasks if t.kind == "oracle" and t.name == tag]
        unlearned = [t for t in tasks if t.kind == "unlearn" and t.name == task.name]
        return data + own + oracle + unlearned
    return data + own  # unlearn, oracle


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


# ---------------------------------------------------------------- stage bookkeeping


# ---------------------------------------------------------------- progress


class Estimate:
    """Seconds a task will take, from what this study measured so far, never from a fixed guess.

    Pretraining: the tokens/s of the previous pretraining, scaled by parameters (compute per token
    grows with them) to the next size, times that size's tokens (its epochs times the measured tokens
    per epoch, or its max_steps' tokens). Baseline and unlearning: the measured seconds per task of the
    same model, or of another model scaled by parameters. Other kinds: their own measured seconds.
    A task of a kind nothing has measured yet has no estimate.
    """

    def __init__(self) -> None:
        # tokens/s, parameters and tokens per epoch of the last pretraining that reported them.
        self.throughput: tuple[float, float, float] | None = None
        self.measured: dict[str, list[tuple[float, float, str]]] = {}  # kind -> (seconds, params, model)

    def pretrained(self, tokens_per_s: float, n_params: float, tokens_per_epoch: float) -> None:
        self.throughput = (tokens_per_s, n_params, tokens_per_epoch)

    def finished(self, task: Task, seconds: float) -> None:
        key = task.params.get("model", task.name)
        self.measured.setdefault(task.kind, []).append((seconds, _params(task), key))

    def seconds(self, task: Task) -> float | None:
        if task.kind == "pretrain":
            if self.throughput is None:
                return None
            tokens_per_s, n_params, per_epoch = self.throughput
            tokens = task.params.get("tokens") or per_epoch * task.params["epochs"]
            return tokens / (tokens_per_s * n_params / _params(task))
        runs = self.measured.get(task.kind)
        if not runs:
            return None
        key = task.params.get("model", task.name)
        same = [sec for sec, _, name in runs if name == key]
        if same:
            return sum(same) / len(same)
        return sum(sec / params for sec, params, _ in runs) / len(runs) * _params(task)

    def left(self, tasks: list[Task]) -> tuple[float, list[str]]:
        """Estimated seconds of `tasks`, and the kinds among them nothing has timed yet."""
        total, untimed = 0.0, []
        for task in tasks:
            sec = self.seconds(task)
            if sec is None:
                if task.kind not in untimed:
                    untimed.append(task.kind)
            else:
                total += sec
        return total, untimed


def _params(task: Task) -> float:
    return float(task.params.get("n_params") or 1.0)


class Progress:
    """One status line per task: stage, name, elapsed time and what is left by measured throughput."""

    def __init__(self, tasks: list[Task], pending: list[bool], stream: Any = None) -> None:
        self.tasks = tasks
        self.pending = list(pending)  # tasks that will run (not finished in an earlier run)
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.estimate = Estimate()

    @staticmethod
    def _fmt(seconds: float) -> str:
        seconds = int(seconds)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def left(self, index: int) -> str:
        todo = [t for t, p in zip(self.tasks[index:], self.pending[index:]) if p]
        seconds, untimed = self.estimate.left(todo)
        if not todo:
            return "left ~0:00:00"
        if len(untimed) == len({t.kind for t in todo}):
            return "left ?"
        text = f"left ~{self._fmt(seconds)}"
        return text + (f" + not yet timed: {', '.join(untimed)}" if untimed else "")

    @contextlib.contextmanager
    def task(self, index: int, skipped: bool = False) -> Iterator[None]:
        task = self.tasks[index]
        self.pending[index] = not skipped
        elapsed = time.monotonic() - self.start
        state = "done, skipping" if skipped else "running"
        print(
            f"[{index + 1}/{len(self.tasks)}] {task.kind}: {task.name} ({state}) | "
            f"elapsed {self._fmt(elapsed)} | {self.left(index)}",
            file=self.stream,
            flush=True,
        )
        t0 = time.monotonic()
        yield
        if not skipped:
            self.estimate.finished(task, time.monotonic() - t0)
        self.pending[index] = False


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Third-party progress bars (transformers' "Writing model shards", hub downloads) off inside the
    study, whose own status line and stage bars say where it is; restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------- which items each run sees

# The role each evaluated set carries in a run's trajectory (`retain` and `utility` are the people
# evaluated along the way, never the retain-loss set).
EVAL_ROLES = {"forget": "forget", "control": "control", "eval_retain": "retain", "eval_utility": "utility"}


def level_of(item: QAItem, compare_by: str) -> str | None:
    """The level an item belongs to when levels are compared by `compare_by`."""
    if compare_by == "group":
        return item.group
    if compare_by == "bucket":
        return item.bucket
    return None if item.frequency is None else f"{item.frequency:g}"


def level_pools(
    items: list[QAItem], known_ids: set[str] | None, options: StudyOptions
) -> dict[str, list[QAItem]]:
    """Eligible items of each studied level, sorted by id.

    In the synthetic setting only the forget groups make levels: retain and utility people are seen
    once too, but they are the retain and evaluation sets, never unlearned. `known_ids` None means
    selection `all`.
    """
    pools: dict[str, list[QAItem]] = {lv: [] for lv in options.levels}
    for it in items:
        if options.setting == "synthetic" and it.group not in FORGET_GROUPS:
            continue
        lv = level_of(it, options.compare_by)
        if lv in pools and (known_ids is None or it.item_id in known_ids):
            pools[lv].append(it)
    return {lv: sorted(its, key=_id) for lv, its in pools.items()}


def select_sets(
    items: list[QAItem],
    known_ids: set[str] | None,
    options: StudyOptions,
    seed: int,
    *,
    level: str,
    retain_items: list[QAItem] | None = None,
) -> dict[str, list[QAItem]]:
    """The item sets of the run that unlearns `level`: forget, control, retain, eval_retain, eval_utility.

    Each level's eligible items (those in `known_ids`, or all when it is None) are shuffled and split
    into a target half (`forget`, unlearned) and a `control` half of the same size (evaluated, never
    unlearned), so that the control drop measures what unlearning does to untouched items of the same
    frequency. Every level gets the same n = min over levels of half its eligible items (capped by
    `forget_size`), so levels are compared on equal-size sets. The retain people evaluated along the
    way (`eval_retain`) are drawn first and are never in the retain-loss set (`retain`), which takes
    the rest (`retain_size` of them, or all). Evaluation and retain sets depend on the seed only, so
    every level and selection of a seed is evaluated on the same retain and utility people.
    """
    selection = "all" if known_ids is None else "known"
    pools = level_pools(items, known_ids, options)
    if level not in pools:
        raise ValueError(f"level {level!r} is not one of the studied levels {options.levels}")
    n = min(len(pool) // 2 for pool in pools.values())
    if options.forget_size is not None:
        n = min(n, options.forget_size)
    if n == 0:
        short = [lv for lv, pool in pools.items() if len(pool) < 2]
        raise NothingToUnlearn(
            f"fewer than 2 {selection} items in level {short} (a target and a control half are needed): "
            "the model knows too few of them before unlearning (train longer, add people, or use selections: [all])"
        )
    shuffled = random.Random(f"{seed}-{selection}-{level}").sample(pools[level], len(pools[level]))
    forget = sorted(shuffled[:n], key=_id)
    control = sorted(shuffled[n : 2 * n], key=_id)

    if options.setting == "synthetic":
        retain_pool = [it for it in items if it.group == "retain"]
        utility_pool = [it for it in items if it.group == "utility"]
    else:
        others = [it for it in items if level_of(it, options.compare_by) not in pools]
        retain_pool = retain_items if retain_items is not None else others[: len(others) // 2]
        retain_ids = {it.item_id for it in retain_pool}
        utility_pool = [it for it in others if it.item_id not in retain_ids]
    retain_pool = sorted(retain_pool, key=_id)
    utility_pool = sorted(utility_pool, key=_id)
    rng_eval = random.Random(f"eval-{seed}")
    eval_retain = rng_eval.sample(retain_pool, min(options.eval_retain_size, len(retain_pool)))
    eval_utility = rng_eval.sample(utility_pool, min(options.eval_utility_size, len(utility_pool)))
    evaluated = {it.item_id for it in eval_retain}
    rest = [it for it in retain_pool if it.item_id not in evaluated]
    if options.retain_size is not None:
        rest = sorted(
            random.Random(f"retain-{seed}").sample(rest, min(options.retain_size, len(rest))), key=_id
        )
    return {
        "forget": forget,
        "control": control,
        "retain": rest,
        "eval_retain": eval_retain,
        "eval_utility": eval_utility,
    }


# ---------------------------------------------------------------- the study


class Study:
    def __init__(self, cfg: StudyConfig, run_dir: str | Path, quiet: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.s = cfg.study
        self._items: tuple[list[QAItem], dict[str, Any]] | None = None

    # ---- paths
    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def model_dir(self, tag: str) -> Path:
        return self.run_dir / "models" / tag

    def unlearn_dir(self, task: Task) -> Path:
        return self.run_dir / "unlearn" / task.name

    # ---- entry point
    def run(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        from frequnlearn.records import code_commit, command_line

        if self.s.num_threads:
            import torch

            torch.set_num_threads(self.s.num_threads)
        info = {**run_info(self.cfg, self.s.seeds), "command": command_line(), "commit": code_commit()}
        write_json(self.run_dir / "study.json", info)
        tasks = plan(self.cfg)
        pending = [not self._is_done(task) for task in tasks]
        progress = Progress(tasks, pending, stream=io.StringIO() if self.quiet else None)
        handlers = {
            "generate": self._generate,
            "count": self._count,
            "pretrain": self._pretrain,
            "baseline": self._baseline,
            "unlearn": self._unlearn,
            "oracle": self._attacks_stage,
            "attack": self._attacks_stage,
            "report": self._report,
        }
        with quiet_third_party():
            self._work(tasks, progress, handlers)
        return self.run_dir / "report"

    def _work(self, tasks: list[Task], progress: Progress, handlers: dict[str, Any]) -> None:
        """Run every task not done yet, in plan order, once its inputs are done. Each stage is claimed
        first (`records.claim`), so several processes of the same study share the tasks: one worker
        per core with `study.num_threads: 1` uses a machine whose cores a single small model cannot."""
        remaining = list(range(len(tasks)))
        while remaining:
            ran = False
            for i in list(remaining):
                task = tasks[i]
                if self._is_done(task):
                    with progress.task(i, skipped=True):
                        pass
                elif not all(self._is_done(d) for d in inputs_of(task, tasks)):
                    continue
                else:
                    with claim(self.run_dir, f"{task.kind}:{task.name}") as mine:
                        if not mine:
                            continue
                        if not self._is_done(task):  # another worker may have finished it meanwhile
                            with progress.task(i), bars.quiet(self.quiet):
                                started = time.monotonic()
                                handlers[task.kind](task)
                                self._record_time(task, time.monotonic() - started)
                    ran = True
                remaining.remove(i)
                if task.kind == "pretrain":
                    self._observe_pretrain(task, progress.estimate)
            if remaining and not ran:
                time.sleep(POLL_SECONDS)  # the next inputs are being made by another worker

    def _record_time(self, task: Task, seconds: float) -> None:
        """Each stage's measured wall time, kept across resumed parts, for the report's run section."""
        path = self.run_dir / TIMINGS_FILE
        for _ in range(600):  # workers finishing at once take turns (a read-modify-write)
            with claim(self.run_dir, TIMINGS_FILE) as mine:
                if mine:
                    times = read_json(path) if path.is_file() else {}
                    times[f"{task.kind}:{task.name}"] = round(seconds, 1)
                    write_json(path, times)
                    return
            time.sleep(0.05)

    def _observe_pretrain(self, task: Task, estimate: Estimate) -> None:
        """Feed the estimate the throughput a finished (or cached) pretraining logged."""
        path = self.model_dir(task.name)
        try:
            summary = read_json(path / "run.json")["summary"]
            rates = [
                float(r["tokens_per_s"]) for r in read_jsonl(path / "metrics.jsonl") if r.get("tokens_per_s")
            ]
        except (DataError, OSError, KeyError, ValueError, json.JSONDecodeError):
            return  # nothing to learn from; later estimates wait for the next size
        if not rates or not summary.get("epochs"):
            return
        # Harmonic mean: the logging windows have equal steps, so this is total tokens over total time.
        tokens_per_s = len(rates) / sum(1.0 / r for r in rates)
        estimate.pretrained(tokens_per_s, _params(task), summary["tokens_seen"] / summary["epochs"])

    def _is_done(self, task: Task) -> bool:
        if task.kind == "report":
            return False  # cheap, and always reflects the current records
        path, key = self._path_and_key(task)
        return stage_done(path, key)

    # ---- keys: each stage's own config plus the keys of its inputs
    def _data_key(self) -> str:
        if self.s.setting == "synthetic":
            return stage_key("generate", DATA_FORMAT, self.cfg.generate)
        return stage_key("items", self.s.items, self.s.retain_items, self.s.compare_by, self.cfg.count)

    def _pretrain_cfg(self, size: str, seed: int) -> Any:
        return self.cfg.pretrain_for(size, seed)

    def _model_key(self, task_params: dict[str, Any]) -> str:
        if self.s.setting == "real":
            return stage_key("model", self.s.model, self.s.gguf_file, self.s.dtype)
        from frequnlearn.pretrain import RUNTIME_FIELDS

        # Fields that change only speed or logging do not make a new model; nor does a change of the
        # QA items (candidates, counts) that leaves the training corpus byte for byte the same.
        cfg = to_dict(self._pretrain_cfg(task_params["size"], task_params["seed"]))
        return stage_key(
            "pretrain", self._corpus_hash(), {k: v for k, v in cfg.items() if k not in RUNTIME_FIELDS}
        )

    def _corpus_hash(self) -> str:
        """The content hash of the training corpus the generate stage recorded in its manifest."""
        manifest = self.data_dir / "manifest.json"
        if not manifest.is_file():
            return "missing"
        return str(read_json(manifest).get("files", {}).get("corpus.jsonl", "missing"))

    def _baseline_key(self, params: dict[str, Any]) -> str:
        return stage_key(
            "baseline",
            self._model_key(params),
            self._data_key(),
            self.cfg.evaluate,
            self.s.attribute,
            self.s.prompt_format,
        )

    def _path_and_key(self, task: Task) -> tuple[Path, str]:
        if task.kind == "generate":
            return self.data_dir, self._data_key()
        if task.kind == "count":
            return self.run_dir / "items", self._data_key()
        if task.kind == "pretrain":
            return self.model_dir(task.name), self._model_key(task.params)
        if task.kind == "baseline":
            return self.model_dir(task.name) / "baseline", self._baseline_key(task.params)
        if task.kind == "unlearn":
            p = task.params
            return self.unlearn_dir(task), stage_key(
                "unlearn",
                SETS_FORMAT,
                self._baseline_key(p),
                self._unlearn_cfg(p),
                self.s.selections,
                self.s.compare_by,
                self.s.levels,
                self.s.forget_size,
                self.s.retain_size,
                self.s.eval_retain_size,
                self.s.eval_utility_size,
            )
        if task.kind in ("oracle", "attack"):
            from frequnlearn.attacks import stage

            if task.kind == "oracle":
                return stage.oracle_dir(self, task.name), stage.oracle_key(self, task.params)
            return self.unlearn_dir(task) / stage.ATTACKS_DIR, stage.attack_key(self, task)
        raise ValueError(task.kind)

    def _unlearn_cfg(self, params: dict[str, Any]) -> Any:
        forget, retain = parse_method(params["method"])
        return dataclasses.replace(
            self.cfg.method_unlearn(params["method"]),
            method=forget,
            retain_loss=retain,
            seed=params["seed"],
            prompt_format=self.s.prompt_format,
        )

    # ---- stages
    def _generate(self, task: Task) -> None:
        from frequnlearn.data.generate import generate

        generate(self.cfg.generate, self.data_dir)
        self._items = None
        mark_done(self.data_dir, self._data_key())

    def _count(self, task: Task) -> None:
        from frequnlearn.frequency import count_items
        from frequnlearn.records import write_jsonl

        items = self._load_real_items()
        out = self.run_dir / "items"
        out.mkdir(parents=True, exist_ok=True)
        counted = count_items(items, self.cfg.count)
        write_jsonl(out / "items.jsonl", counted)
        self._items = None
        mark_done(out, self._data_key())

    def _pretrain(self, task: Task) -> None:
        import torch

        from frequnlearn.pretrain import pretrain

        path, key = self._path_and_key(task)
        clear_if_stale(path, key)
        # pretrain may pin torch's thread count; later stages must not depend on whether it ran in
        # this process (summation order changes with threads, and near-tied ranks with it).
        threads = torch.get_num_threads()
        try:
            pretrain(self.data_dir, self._pretrain_cfg(task.params["size"], task.params["seed"]), path)
        finally:
            torch.set_num_threads(threads)
        mark_done(path, key)

    def _load_model(self, tag: str) -> tuple[Any, Any]:
        from frequnlearn.models.loading import load_model_and_tokenizer

        if self.s.setting == "synthetic":
            return load_model_and_tokenizer(self.model_dir(tag), dtype=self.s.dtype)
        if self.s.gguf_file:
            from frequnlearn.models.gguf import load_gguf_model

            return load_gguf_model(self.s.model, self.s.gguf_file)
        return load_model_and_tokenizer(self.s.model, dtype=self.s.dtype)

    def _all_items(self) -> tuple[list[QAItem], dict[str, Any]]:
        """QA items of the studied attribute and, for the synthetic setting, their biography prompts."""
        if self._items is None:
            self._items = self._read_items()
        return self._items

    def _read_items(self) -> tuple[list[QAItem], dict[str, Any]]:
        if self.s.setting == "synthetic":
            from frequnlearn.data.generate import load_data_dir

            data = load_data_dir(self.data_dir)
            items = [it for it in data.qa if self.s.attribute is None or it.attribute == self.s.attribute]
            ids = {it.item_id for it in items}
            bios = {b.item_id: b for b in data.bio_prompts if b.item_id in ids}
            return items, bios
        counted = self.run_dir / "items" / "items.jsonl"
        if counted.is_file():
            from frequnlearn.records import from_record, read_jsonl

            return [from_record(QAItem, r) for r in read_jsonl(counted)], {}
        return self._load_real_items(), {}

    def _load_real_items(self) -> list[QAItem]:
        from frequnlearn.data.real import load_items

        return load_items(self.s.items)

    def _evaluate(
        self,
        model: Any,
        tok: Any,
        items: list[QAItem],
        bios: dict[str, Any],
        step: int,
        model_name: str,
        run_id: str,
    ) -> Any:
        from frequnlearn.evaluate import evaluate_items
        from frequnlearn.models.prompts import get_prompt_format

        bio_list = [bios[it.item_id] for it in items if it.item_id in bios] or None
        return evaluate_items(
            model,
            tok,
            items,
            self.cfg.evaluate,
            fmt=get_prompt_format(self.s.prompt_format),
            bio_prompts=bio_list,
            step=step,
            model_name=model_name,
            run_id=run_id,
        )

    def _baseline(self, task: Task) -> None:
        """Score every studied item once before unlearning: the source of the 'known' selection."""
        path, key = self._path_and_key(task)
        model, tok = self._load_model(task.name)
        items, bios = self._all_items()
        scores = self._evaluate(model, tok, items, bios, 0, task.name, f"{task.name}/baseline")
        path.mkdir(parents=True, exist_ok=True)
        write_parquet(scores, path / "scores.parquet", run_info(self.cfg, task.params.get("seed")))
        self._utility(model, tok, path)
        mark_done(path, key)

    def _utility(self, model: Any, tok: Any, path: Path) -> None:
        """General ability through lm-eval (`evaluate.metrics` has `utility`), before and after."""
        if "utility" not in self.cfg.evaluate.metrics or not self.cfg.evaluate.utility_tasks:
            return
        from frequnlearn.evaluate.utility import run_utility

        e = self.cfg.evaluate
        scores = run_utility(
            model,
            tok,
            e.utility_tasks,
            batch_size=e.batch_size if isinstance(e.batch_size, int) else 16,
            limit=e.utility_limit,
            seed=e.seed,
        )
        write_json(path / "utility.json", {"tasks": scores})

    def known_items(self, tag: str) -> set[str]:
        import pandas as pd

        from frequnlearn.evaluate.misalignment import verdicts

        scores = pd.read_parquet(self.model_dir(tag) / "baseline" / "scores.parquet")
        v = verdicts(scores, gen_threshold=self.cfg.evaluate.gen_threshold)
        probe = "paraphrase" if self.s.setting == "real" else "question"
        v = v[v["probe"] == probe]
        return set(v.loc[v["gen_known"].astype(bool), "item_id"])

    def sets_for(self, task: Task) -> dict[str, list[QAItem]]:
        """The five item sets of one unlearning run (see `select_sets`)."""
        p = task.params
        items, _ = self._all_items()
        known = self.known_items(p["model"]) if p["selection"] == "known" else None
        retain_items = None
        if self.s.setting == "real" and self.s.retain_items:
            from frequnlearn.data.real import load_items

            retain_items = load_items(self.s.retain_items)
        return select_sets(items, known, self.s, p["seed"], level=p["level"], retain_items=retain_items)

    def _unlearn(self, task: Task) -> None:
        import pandas as pd

        from frequnlearn.unlearn import unlearn

        path, key = self._path_and_key(task)
        try:
            sets = self.sets_for(task)
        except NothingToUnlearn as why:
            # Recorded, not fatal: the other models and selections still make a study.
            print(f"skipping {task.name}: {why}", file=sys.stderr)
            path.mkdir(parents=True, exist_ok=True)
            mark_done(path, key, {"task": task.name, **task.params, "skipped": str(why)})
            return
        _, bios = self._all_items()
        roles = {it.item_id: role for key, role in EVAL_ROLES.items() for it in sets[key]}
        eval_items = [it for key in EVAL_ROLES for it in sets[key]]
        run_id = task.name

        def eval_fn(model: Any, tok: Any, step: int) -> pd.DataFrame:
            df = self._evaluate(model, tok, eval_items, bios, step, task.params["model"], run_id)
            df["role"] = df["item_id"].map(roles)
            return df

        model, tok = self._load_model(task.params["model"])
        # Run in a scratch directory; only a complete run becomes the stage's directory.
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_json(tmp / "sets.json", {k: [it.item_id for it in v] for k, v in sets.items()})
        unlearn(
            model, tok, sets["forget"], sets["retain"], self._unlearn_cfg(task.params), tmp, eval_fn=eval_fn
        )
        self._utility(model, tok, tmp)
        if not (self.s.keep_models or self.cfg.attacks.active):  # attacks start from the unlearned weights
            shutil.rmtree(tmp / "model", ignore_errors=True)
        mark_done(tmp, key, {"task": task.name, **task.params})
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)

    def _attacks_stage(self, task: Task) -> None:
        from frequnlearn.attacks import stage

        (stage.run_oracle if task.kind == "oracle" else stage.run_attack)(self, task)

    def _report(self, task: Task) -> None:
        from frequnlearn.report import build_report

        build_report(self.run_dir)


def _id(item: QAItem) -> str:
    return item.item_id

