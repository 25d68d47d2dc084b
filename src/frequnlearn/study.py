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
from frequnlearn.config import config_hash, to_dict
from frequnlearn.config.study import StudyConfig, parse_method
from frequnlearn.errors import DataError
from frequnlearn.records import QAItem, read_json, write_json

STAGE_FILE = ".stage.json"
# Bumped whenever `generate` writes different items for the same config (e.g. how candidates are drawn).
DATA_FORMAT = 3


class NothingToUnlearn(DataError):
    """A level has no eligible items for one model (e.g. it knows none of them)."""


# ---------------------------------------------------------------- plan


@dataclass
class Task:
    kind: str  # generate | pretrain | baseline | oracle | unlearn | attack | report
    name: str
    weight: float = 1.0  # rough relative cost, for the time estimate
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
        tasks.append(Task("generate", "data", 0.2))
        # Every seed pretrains its own models; each is unlearned with that same seed.
        models = [(model_tag(size, seed), size, seed, [seed]) for seed in s.seeds for size in s.model_sizes]
        for tag, size, seed, _ in models:
            tasks.append(Task("pretrain", tag, 6.0, {"size": size, "seed": seed}))
    else:
        if cfg.count.backend != "ground-truth":
            tasks.append(Task("count", "items", 0.5))
        # One given model, scored once; the seeds vary the unlearning runs (and their sampled sets).
        tag = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(s.model or "model").name).strip("-")
        models = [(tag, None, s.seeds[0], list(s.seeds))]
    for tag, size, seed, run_seeds in models:
        tasks.append(Task("baseline", tag, 0.5, {"size": size, "seed": seed}))
        if cfg.attacks.oracle:
            tasks.append(Task("oracle", tag, 6.0, {"size": size, "seed": seed}))
        for run_seed in run_seeds:
            prefix = tag if s.setting == "synthetic" else f"{tag}/s{run_seed}"
            for method in s.methods:
                for selection in s.selections:
                    for level in s.levels:
                        tasks.append(
                            Task(
                                "unlearn",
                                f"{prefix}/{run_name(method, level, selection)}",
                                1.0,
                                {
                                    "model": tag,
                                    "size": size or tag,
                                    "seed": run_seed,
                                    "method": method,
                                    "level": level,
                                    "selection": selection,
                                },
                            )
                        )
                        if cfg.attacks.active and selection in cfg.attacks.selections:
                            tasks.append(Task("attack", tasks[-1].name, 1.0, dict(tasks[-1].params)))
    tasks.append(Task("report", "report", 0.2))
    return tasks


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
    counts: dict[str, int] = {}
    for task in plan(cfg):
        counts[task.kind] = counts.get(task.kind, 0) + 1
        lines.append(f"  [{task.kind:8}] {task.name}")
    lines.append("  total: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------- stage bookkeeping


def stage_key(*parts: Any) -> str:
    return config_hash(*parts)


def stage_done(path: Path, key: str) -> bool:
    marker = path / STAGE_FILE
    if not marker.is_file():
        return False
    try:
        return read_json(marker).get("key") == key
    except (DataError, json.JSONDecodeError):
        return False


def mark_done(path: Path, key: str, info: dict[str, Any] | None = None) -> None:
    write_json(path / STAGE_FILE, {"key": key, **(info or {})})


def clear_if_stale(path: Path, key: str) -> None:
    """A stage directory written for another key is removed before the stage runs again."""
    marker = path / ".stage-key"
    if path.exists() and marker.is_file() and marker.read_text().strip() != key:
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)


# ---------------------------------------------------------------- progress


class Progress:
    """One status line per task: stage, name, elapsed time and an estimate of what is left."""

    def __init__(self, tasks: list[Task], stream: Any = None) -> None:
        self.tasks = tasks
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.done_weight = 0.0
        self.spent = 0.0
        self.total_weight = sum(t.weight for t in tasks)

    @staticmethod
    def _fmt(seconds: float) -> str:
        seconds = int(seconds)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    @contextlib.contextmanager
    def task(self, index: int, skipped: bool = False) -> Iterator[None]:
        task = self.tasks[index]
        elapsed = time.monotonic() - self.start
        if self.done_weight > 0 and self.spent > 0:
            eta = self._fmt(self.spent / self.done_weight * (self.total_weight - self.done_weight))
        else:
            eta = "?"
        state = "done, skipping" if skipped else "running"
        print(
            f"[{index + 1}/{len(self.tasks)}] {task.kind}: {task.name} ({state}) | "
            f"elapsed {self._fmt(elapsed)} | left ~{eta}",
            file=self.stream,
            flush=True,
        )
        t0 = time.monotonic()
        yield
        if skipped:
            self.total_weight -= task.weight
        else:
            self.spent += time.monotonic() - t0
            self.done_weight += task.weight


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
        from frequnlearn.records import run_info

        write_json(self.run_dir / "study.json", run_info(self.cfg, self.s.seeds))
        tasks = plan(self.cfg)
        progress = Progress(tasks, stream=io.StringIO() if self.quiet else None)
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
        for i, task in enumerate(tasks):
            skipped = self._is_done(task)
            with progress.task(i, skipped=skipped), bars.quiet(self.quiet):
                if not skipped:
                    handlers[task.kind](task)
        return self.run_dir / "report"

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
        return dataclasses.replace(self.cfg.pretrain, preset=size, seed=seed)

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
                self._baseline_key(p),
                self._unlearn_cfg(p),
                self.s.selections,
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

    def _level_of(self, item: QAItem) -> str | None:
        if self.s.compare_by == "group":
            return item.group
        if self.s.compare_by == "bucket":
            return item.bucket
        return None if item.frequency is None else f"{item.frequency:g}"

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
        write_parquet(scores, path / "scores.parquet", self.cfg, task.params.get("seed"))
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

    def select_sets(self, task: Task) -> dict[str, list[QAItem]]:
        """Forget, retain and evaluation sets of one unlearning run, equal-size across levels."""
        p = task.params
        items, _ = self._all_items()
        rng = random.Random(f"{p['seed']}-{p['selection']}")
        by_level: dict[str, list[QAItem]] = {lv: [] for lv in self.s.levels}
        for it in items:
            lv = self._level_of(it)
            if lv in by_level:
                by_level[lv].append(it)
        if p["selection"] == "known":
            known = self.known_items(p["model"])
            by_level = {lv: [it for it in its if it.item_id in known] for lv, its in by_level.items()}
        n = min(len(v) for v in by_level.values())
        if self.s.forget_size is not None:
            n = min(n, self.s.forget_size)
        if n == 0:
            empty = [lv for lv, v in by_level.items() if not v]
            raise NothingToUnlearn(
                f"no {p['selection']} items in {empty} for {p['model']}: the model knows none of them before "
                "unlearning (train longer, add people, or use selections: [all])"
            )
        forget = sorted(rng.sample(sorted(by_level[p["level"]], key=_id), n), key=_id)
        forget_ids = {it.item_id for it in forget}
        if self.s.setting == "synthetic":
            retain_pool = [it for it in items if it.group == "retain"]
            utility_pool = [it for it in items if it.group == "utility"]
        else:
            others = [
                it for it in items if self._level_of(it) not in by_level and it.item_id not in forget_ids
            ]
            if self.s.retain_items:
                from frequnlearn.data.real import load_items

                retain_pool = load_items(self.s.retain_items)
            else:
                retain_pool = others[: len(others) // 2]
            utility_pool = [it for it in others if it not in retain_pool]
        retain_pool = sorted(retain_pool, key=_id)
        utility_pool = sorted(utility_pool, key=_id)
        rng_eval = random.Random(f"eval-{p['seed']}")
        retain = (
            retain_pool
            if self.s.retain_size is None
            else rng.sample(retain_pool, min(self.s.retain_size, len(retain_pool)))
        )
        eval_retain = rng_eval.sample(retain_pool, min(self.s.eval_retain_size, len(retain_pool)))
        eval_utility = rng_eval.sample(utility_pool, min(self.s.eval_utility_size, len(utility_pool)))
        return {"forget": forget, "retain": retain, "eval_retain": eval_retain, "eval_utility": eval_utility}

    def _unlearn(self, task: Task) -> None:
        import pandas as pd

        from frequnlearn.unlearn import unlearn

        path, key = self._path_and_key(task)
        try:
            sets = self.select_sets(task)
        except NothingToUnlearn as why:
            # Recorded, not fatal: the other models and selections still make a study.
            print(f"skipping {task.name}: {why}", file=sys.stderr)
            path.mkdir(parents=True, exist_ok=True)
            mark_done(path, key, {"task": task.name, **task.params, "skipped": str(why)})
            return
        _, bios = self._all_items()
        roles = {it.item_id: "forget" for it in sets["forget"]}
        roles.update({it.item_id: "retain" for it in sets["eval_retain"]})
        roles.update({it.item_id: "utility" for it in sets["eval_utility"]})
        eval_items = sets["forget"] + sets["eval_retain"] + sets["eval_utility"]
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


def write_parquet(df: Any, path: Path, cfg: Any, seed: int | None) -> None:
    """Parquet with the run's config, seed, versions and hardware in its metadata; atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from frequnlearn.records import atomic_open, run_info

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"frequnlearn"] = json.dumps(run_info(cfg, seed), default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh)
