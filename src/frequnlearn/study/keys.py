"""Every task's key, in one place: a hash of the task's own config and the keys of what it reads.

A stage's output directory is done for a key when its marker names that key (`records.stage_done`),
so changing one field reruns exactly the stages whose key it changes. The keys of pretraining are the
pretraining stage's own (`pretrain.run_key`: the settings that decide the weights, the thread count
among them, and the corpus's content hash), so the marker it writes is the one the study checks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from frequnlearn.config import to_dict
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.config.study import StudyConfig, parse_method
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.layout import RunLayout
from frequnlearn.records import read_json, stage_done, stage_key
from frequnlearn.study.plan import Task, suite_model
from frequnlearn.study.sets import SETS_FORMAT

# The corpus hash of a data directory not generated yet: no finished stage was keyed with it.
MISSING = "missing"
# Fields that say how a study runs, not what it computes: two processes that differ only there run
# the same study.
RUNTIME_OPTIONS = ("executor", "ray_address", "max_retries")


def config_key(cfg: StudyConfig) -> str:
    """The key of a study's config (recorded in study.json and in its lock)."""
    parts = to_dict(cfg)
    parts["study"] = {k: v for k, v in parts["study"].items() if k not in RUNTIME_OPTIONS}
    return stage_key("study", parts)


class Keys:
    """The configs and keys of one study's tasks in one run directory.

    `threads` is the torch thread count the study runs with (resolved once, by the process that plans):
    a pretraining that does not pin its own count uses it, and it is part of the model's key.
    """

    def __init__(self, cfg: StudyConfig, layout: RunLayout, threads: int) -> None:
        self.cfg = cfg
        self.s = cfg.study
        self.layout = layout
        self.threads = threads

    # ---- the configs each stage runs with
    def generate_cfg(self, world: int) -> GenerateConfig:
        return dataclasses.replace(self.cfg.generate, seed=world)

    def pretrain_cfg(self, size: str, seed: int) -> PretrainConfig:
        p = self.cfg.pretrain_for(size, seed)
        return dataclasses.replace(p, num_threads=p.num_threads or self.threads)

    def unlearn_cfg(self, params: dict[str, Any]) -> UnlearnConfig:
        forget, retain = parse_method(params["method"])
        return dataclasses.replace(
            self.cfg.method_unlearn(params["method"]),
            method=forget,
            retain_loss=retain,
            seed=params["seed"],
            prompt_format=self.s.prompt_format,
        )

    # ---- keys
    def data(self, world: int) -> str:
        if self.s.setting == "synthetic":
            from frequnlearn.data.generate import generate_key

            return generate_key(self.generate_cfg(world))
        return stage_key("items", self.s.items, self.s.retain_items, self.s.compare_by, self.cfg.count)

    def corpus_hash(self, world: int) -> str:
        """The content hash of a world's training corpus, as its generate stage recorded it."""
        manifest = self.layout.data_manifest(world)
        if not manifest.is_file():
            return MISSING
        return str(read_json(manifest).get("files", {}).get("corpus.jsonl", MISSING))

    def model(self, params: dict[str, Any]) -> str:
        if self.s.setting == "real":
            if not self.s.models:  # one model: the key it always had
                return stage_key("model", self.s.model, self.s.gguf_file, self.s.dtype)
            entry = suite_model(self.s, params["model"])
            return stage_key("model", entry.id, entry.revision, self.s.dtype)
        from frequnlearn.pretrain import run_key

        return run_key(self.pretrain_cfg(params["size"], params["seed"]), self.corpus_hash(params["world"]))

    def baseline(self, params: dict[str, Any]) -> str:
        return stage_key(
            "baseline",
            self.model(params),
            self.data(params["world"]),
            self.cfg.evaluate,
            self.s.attribute,
            self.s.prompt_format,
        )

    def unlearn(self, params: dict[str, Any]) -> str:
        s = self.s
        return stage_key(
            "unlearn",
            SETS_FORMAT,
            self.baseline(params),
            self.unlearn_cfg(params),
            s.selections,
            s.compare_by,
            s.levels,
            s.forget_size,
            s.retain_size,
            s.eval_retain_size,
            s.eval_utility_size,
        )

    def oracle_data(self, world: int) -> str:
        return stage_key("oracle-data", self.corpus_hash(world), self.s.compare_by, self.s.levels)

    def oracle(self, params: dict[str, Any]) -> str:
        model = stage_key("oracle", self.model(params), self.s.compare_by, self.s.levels)
        return stage_key("oracle-scores", model, self.baseline(params))

    def attack(self, params: dict[str, Any]) -> str:
        # Which runs are attacked and whether there is an oracle do not change one run's attacks.
        own = {k: v for k, v in to_dict(self.cfg.attacks).items() if k not in ("oracle", "selections")}
        return stage_key("attack", self.unlearn(params), own, self.cfg.generate.n_templates)

    # ---- what a task writes, and whether it is there
    def outputs(self, task: Task) -> list[tuple[Path, str]]:
        """(directory, key) of each output of `task`; the task is done when every one is."""
        lay, p = self.layout, task.params
        if task.kind == "generate":
            return [(lay.data(p["world"]), self.data(p["world"]))]
        if task.kind == "count":
            return [(lay.items, self.data(p["world"]))]
        if task.kind == "pretrain":
            return [
                (lay.model(tag), self.model({**p, "seed": seed})) for tag, seed in zip(p["tags"], p["seeds"])
            ]
        if task.kind == "baseline":
            return [(lay.baseline(task.name), self.baseline(p))]
        if task.kind == "oracle_data":
            return [(lay.oracle_data(p["world"]), self.oracle_data(p["world"]))]
        if task.kind == "oracle":
            return [(lay.oracle_baseline(task.name), self.oracle(p))]
        if task.kind == "unlearn":
            return [(lay.unlearn(task.name), self.unlearn(p))]
        if task.kind == "attack":
            return [(lay.attacks(task.name), self.attack(p))]
        if task.kind == "report":
            return []
        raise ValueError(f"unknown task kind {task.kind!r}")

    def done(self, task: Task) -> bool:
        """Whether every output of `task` is there for its key (the report is always rebuilt: it is
        cheap and reflects the current records)."""
        outputs = self.outputs(task)
        return bool(outputs) and all(stage_done(path, key) for path, key in outputs)
