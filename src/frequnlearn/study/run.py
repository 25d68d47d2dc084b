"""The whole controlled (or real-model) experiment from one config: resumable and idempotent.

Each stage writes into the run directory under a key derived from its own config and inputs
(`.stage.json`). A rerun skips a stage whose key matches and whose output is complete, resumes a
pretraining run from its last checkpoint, and restarts an unlearning run that was cut (runs are short
and deterministic, so the result equals an uninterrupted one). Changing one field reruns only the
stages whose key it changes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any

from frequnlearn import progress as bars
from frequnlearn.config import to_dict
from frequnlearn.config.study import StudyConfig, parse_method
from frequnlearn.errors import DataError
from frequnlearn.records import (
    QAItem,
    claim,
    clear_if_stale,
    mark_done,
    read_json,
    read_jsonl,
    remove_own,
    run_info,
    stage_done,
    stage_key,
    write_json,
)
from frequnlearn.study.plan import Task, inputs_of, plan
from frequnlearn.study.sets import EVAL_ROLES, SETS_FORMAT, NothingToUnlearn, select_sets
from frequnlearn.study.status import Estimate, Progress, n_params_of

TIMINGS_FILE = "timings.json"
POLL_SECONDS = 5.0


class Study:
    """Runs a plan in one run directory: each task's path and key, and per task kind one method that
    calls its stage's `run_<stage>` (which writes outputs, run record and done marker)."""

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
            "unlearn": self.unlearn,
            "oracle": self._attacks_stage,
            "attack": self._attacks_stage,
            "report": self._report,
        }
        with bars.quiet_third_party():
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
        estimate.pretrained(tokens_per_s, n_params_of(task), summary["tokens_seen"] / summary["epochs"])

    def _is_done(self, task: Task) -> bool:
        if task.kind == "report":
            return False  # cheap, and always reflects the current records
        path, key = self.path_and_key(task)
        return stage_done(path, key)

    # ---- keys: each stage's own config plus the keys of its inputs
    def _data_key(self) -> str:
        if self.s.setting == "synthetic":
            from frequnlearn.data.generate import generate_key

            return generate_key(self.cfg.generate)
        return stage_key("items", self.s.items, self.s.retain_items, self.s.compare_by, self.cfg.count)

    def pretrain_cfg(self, size: str, seed: int) -> Any:
        return self.cfg.pretrain_for(size, seed)

    def model_key(self, task_params: dict[str, Any]) -> str:
        if self.s.setting == "real":
            return stage_key("model", self.s.model, self.s.gguf_file, self.s.dtype)
        from frequnlearn.pretrain import RUNTIME_FIELDS

        # Fields that change only speed or logging do not make a new model; nor does a change of the
        # QA items (candidates, counts) that leaves the training corpus byte for byte the same.
        cfg = to_dict(self.pretrain_cfg(task_params["size"], task_params["seed"]))
        return stage_key(
            "pretrain", self.corpus_hash(), {k: v for k, v in cfg.items() if k not in RUNTIME_FIELDS}
        )

    def corpus_hash(self) -> str:
        """The content hash of the training corpus the generate stage recorded in its manifest."""
        manifest = self.data_dir / "manifest.json"
        if not manifest.is_file():
            return "missing"
        return str(read_json(manifest).get("files", {}).get("corpus.jsonl", "missing"))

    def baseline_key(self, params: dict[str, Any]) -> str:
        return stage_key(
            "baseline",
            self.model_key(params),
            self._data_key(),
            self.cfg.evaluate,
            self.s.attribute,
            self.s.prompt_format,
        )

    def path_and_key(self, task: Task) -> tuple[Path, str]:
        if task.kind == "generate":
            return self.data_dir, self._data_key()
        if task.kind == "count":
            return self.run_dir / "items", self._data_key()
        if task.kind == "pretrain":
            return self.model_dir(task.name), self.model_key(task.params)
        if task.kind == "baseline":
            return self.model_dir(task.name) / "baseline", self.baseline_key(task.params)
        if task.kind == "unlearn":
            p = task.params
            return self.unlearn_dir(task), stage_key(
                "unlearn",
                SETS_FORMAT,
                self.baseline_key(p),
                self.unlearn_cfg(p),
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

    def unlearn_cfg(self, params: dict[str, Any]) -> Any:
        forget, retain = parse_method(params["method"])
        return dataclasses.replace(
            self.cfg.method_unlearn(params["method"]),
            method=forget,
            retain_loss=retain,
            seed=params["seed"],
            prompt_format=self.s.prompt_format,
        )

    # ---- stages: each calls its stage's run_<stage>, which writes outputs, run record and marker
    def _generate(self, task: Task) -> None:
        from frequnlearn.data.generate import run_generate

        run_generate(self.cfg.generate, self.data_dir)
        self._items = None

    def _count(self, task: Task) -> None:
        """The items as loaded (candidates filled), counted by the count stage into items/items.jsonl
        with its run record (items.run.json) beside them."""
        from frequnlearn.frequency.stage import run_count
        from frequnlearn.records import write_jsonl

        out = self.run_dir / "items"
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "loaded.jsonl", self._load_real_items())
        run_count(out / "loaded.jsonl", out / "items.jsonl", self.cfg.count)
        self._items = None
        mark_done(out, self._data_key())

    def _pretrain(self, task: Task) -> None:
        import torch

        from frequnlearn.pretrain import pretrain

        path, key = self.path_and_key(task)
        clear_if_stale(path, key)
        # pretrain may pin torch's thread count; later stages must not depend on whether it ran in
        # this process (summation order changes with threads, and near-tied ranks with it).
        threads = torch.get_num_threads()
        try:
            pretrain(self.data_dir, self.pretrain_cfg(task.params["size"], task.params["seed"]), path)
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

    def all_items(self) -> tuple[list[QAItem], dict[str, Any]]:
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

    def score_items(
        self,
        model: Any,
        tok: Any,
        items: list[QAItem],
        bios: dict[str, Any],
        step: int,
        model_name: str,
        run_id: str,
    ) -> Any:
        from frequnlearn.evaluate.stage import score

        return score(
            model,
            tok,
            items,
            self.cfg.evaluate,
            self.s.prompt_format,
            bios,
            step=step,
            model_name=model_name,
            run_id=run_id,
        )

    def identity(self, task: Task) -> dict[str, Any]:
        """What a task's outputs are, as their run records state it for the report: the run id and the
        task's parameters (model tag, size, parameters, seed; for unlearning method, level, selection)."""
        return {"run_id": task.name, "task": task.name, "model": task.name, **task.params}

    def _baseline(self, task: Task) -> None:
        """Score every studied item once before unlearning: the source of the 'known' selection."""
        from frequnlearn.evaluate.stage import run_baseline

        path, key = self.path_and_key(task)
        model, tok = self._load_model(task.name)
        items, bios = self.all_items()
        record = {**run_info(self.cfg, task.params.get("seed")), "run": self.identity(task)}
        run_baseline(
            self.cfg.evaluate, self.s.prompt_format, model, tok, items, bios, path, record=record, key=key
        )

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
        items, _ = self.all_items()
        known = self.known_items(p["model"]) if p["selection"] == "known" else None
        retain_items = None
        if self.s.setting == "real" and self.s.retain_items:
            from frequnlearn.data.real import load_items

            retain_items = load_items(self.s.retain_items)
        return select_sets(items, known, self.s, p["seed"], level=p["level"], retain_items=retain_items)

    def unlearn(self, task: Task) -> None:
        from frequnlearn.unlearn.stage import UnlearnInputs, run_unlearn

        path, key = self.path_and_key(task)
        try:
            sets = self.sets_for(task)
        except NothingToUnlearn as why:
            # Recorded, not fatal: the other models and selections still make a study.
            bars.message(f"skipping {task.name}: {why}")
            self._skip(task, path, key, str(why))
            return
        _, bios = self.all_items()
        model, tok = self._load_model(task.params["model"])
        inputs = UnlearnInputs(
            model=model,
            tokenizer=tok,
            forget=sets["forget"],
            retain=sets["retain"],
            evaluated=[(role, sets[name]) for name, role in EVAL_ROLES.items()],
            identity=self.identity(task),
            bios=bios,
            sets={k: [it.item_id for it in v] for k, v in sets.items()},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Attacks start from the unlearned weights.
        keep = self.s.keep_models or self.cfg.attacks.active
        run_unlearn(self.unlearn_cfg(task.params), self.cfg.evaluate, inputs, path, key=key, keep_model=keep)

    def _skip(self, task: Task, path: Path, key: str, why: str) -> None:
        """A run the study cannot make: its run record and done marker say why."""
        remove_own(path, self.run_dir)
        path.mkdir(parents=True)
        record = {"run": self.identity(task), "skipped": why}
        write_json(path / "run.json", record)
        mark_done(path, key, {**record["run"], "skipped": why})

    def _attacks_stage(self, task: Task) -> None:
        from frequnlearn.attacks import stage

        (stage.run_oracle if task.kind == "oracle" else stage.run_attack)(self, task)

    def _report(self, task: Task) -> None:
        from frequnlearn.report import build_report

        build_report(self.run_dir)
