"""What each kind of task does: build its stage's explicit inputs from the run directory, then call
that stage's public function, which writes the outputs and their done marker.

A `TaskRunner` holds only the config, the layout and the thread count, so an executor can send it to
another process (a Ray worker) and run any task there exactly as in this one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn import progress
from frequnlearn.config.study import StudyConfig
from frequnlearn.layout import RunLayout
from frequnlearn.records import FORGET_GROUPS, QAItem, append_jsonl, read_json, run_info, write_jsonl
from frequnlearn.study.inputs import Inputs
from frequnlearn.study.keys import Keys
from frequnlearn.study.plan import Task
from frequnlearn.study.sets import EVAL_ROLES, NothingToUnlearn, level_of, select_sets


@dataclass
class Outcome:
    """What became of a task: whether it ran (or found its outputs there), how long it took, where
    (host:pid), and a note for the study's log (e.g. why an unlearning run was skipped)."""

    ran: bool
    seconds: float = 0.0
    where: str = ""
    note: str | None = None


class TaskRunner:
    """Runs one task of a study in one run directory (callable: `runner(task)` returns a note for the
    study's log, e.g. why an unlearning run was skipped, or None)."""

    def __init__(
        self, cfg: StudyConfig, layout: RunLayout, threads: int, plugins: list[str] | None = None
    ) -> None:
        self.cfg = cfg
        self.s = cfg.study
        self.layout = layout
        self.threads = threads
        self.keys = Keys(cfg, layout, threads)
        self.inputs = Inputs(cfg, layout)
        # The study's plugins (`study.plugins`), in every process that runs its tasks: a plugin file
        # by its absolute path, for a worker whose working directory is another.
        if plugins is None:
            plugins = [str(Path(p).resolve()) if _is_file(p) else p for p in cfg.study.plugins]
        self.plugins = plugins
        _load_plugins(plugins)

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "layout": self.layout, "threads": self.threads, "plugins": self.plugins}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cfg"], state["layout"], state["threads"], state["plugins"])  # type: ignore[misc]

    def __call__(self, task: Task) -> str | None:
        return getattr(self, f"_{task.kind}")(task)

    def run_if_needed(self, task: Task) -> Outcome:
        """Run `task` unless its outputs are there for its key; a line in the task log when it starts and
        one when it ends (a task that started twice and ended once was retried after its process died)."""
        where = f"{platform.node()}:{os.getpid()}"
        if self.keys.done(task):
            return Outcome(ran=False, where=where)
        log = self.layout.task_log
        self.layout.root.mkdir(parents=True, exist_ok=True)
        append_jsonl(log, {"task": task.id, "event": "start", "where": where, "time": time.time()})
        started = time.monotonic()
        note = self(task)
        seconds = time.monotonic() - started
        append_jsonl(log, {"task": task.id, "event": "end", "where": where, "seconds": round(seconds, 3)})
        return Outcome(ran=True, seconds=seconds, where=where, note=note)

    def identity(self, task: Task) -> dict[str, Any]:
        """What a task's outputs are, as their run records state it for the report: the run id and the
        task's parameters (model tag, size, parameters, seed, world; for unlearning method, level,
        selection)."""
        return {"run_id": task.name, "task": task.name, "model": task.name, **task.params}

    def _record(self, task: Task) -> dict[str, Any]:
        return {**run_info(self.cfg, task.params.get("seed")), "run": self.identity(task)}

    # ---- data
    def _generate(self, task: Task) -> None:
        from frequnlearn.data.generate import run_generate

        world = task.params["world"]
        run_generate(self.keys.generate_cfg(world), self.layout.data(world))
        self.inputs.forget()

    def _count(self, task: Task) -> None:
        """The items as loaded (candidates filled), counted by the count stage into items.jsonl with its
        run record beside them; this task's done marker last."""
        from frequnlearn.frequency.stage import run_count
        from frequnlearn.records import mark_done

        lay = self.layout
        lay.items.mkdir(parents=True, exist_ok=True)
        write_jsonl(lay.loaded_items, self.inputs.table_items())
        run_count(lay.loaded_items, lay.counted_items, self.cfg.count)
        self.inputs.forget()
        mark_done(lay.items, self.keys.data(task.params["world"]))

    # ---- models
    def _pretrain(self, task: Task) -> None:
        """Each model of the task (a tag and its seed: one, or an ensemble's seeds trained together),
        resumed where a cut run stopped; pretraining marks each model's directory done."""
        from frequnlearn.pretrain import pretrain
        from frequnlearn.pretrain.ensemble import pretrain_ensemble
        from frequnlearn.records import clear_if_stale, stage_done

        p = task.params
        paths = [self.layout.model(tag) for tag in p["tags"]]
        cfgs = [self.keys.pretrain_cfg(p["size"], seed) for seed in p["seeds"]]
        for path, seed in zip(paths, p["seeds"]):
            key = self.keys.model({**p, "seed": seed})
            if not stage_done(path, key):  # a model of an ensemble may be done already
                clear_if_stale(path, key)
        with _threads_kept():
            if len(cfgs) > 1:
                pretrain_ensemble(self.layout.data(p["world"]), cfgs, paths)
            else:
                pretrain(self.layout.data(p["world"]), cfgs[0], paths[0])

    def _model(self, tag: str) -> tuple[Any, Any]:
        return self.inputs.model(self.layout.model(tag) if self.s.setting == "synthetic" else None, tag)

    def _baseline(self, task: Task) -> None:
        """Score every studied item once before unlearning: the source of the 'known' selection."""
        from frequnlearn.evaluate.stage import run_baseline

        model, tok = self._model(task.name)
        items, bios = self.inputs.items(task.params["world"])
        run_baseline(
            self.cfg.evaluate,
            self.s.prompt_format,
            model,
            tok,
            items,
            bios,
            self.layout.baseline(task.name),
            record=self._record(task),
            key=self.keys.baseline(task.params),
        )

    # ---- the never-learned reference
    def _oracle_data(self, task: Task) -> None:
        from frequnlearn.attacks.oracle import run_oracle_data

        world = task.params["world"]
        people = {it.person_id for it in self.inputs.data(world).qa if self._studied(it)}
        run_oracle_data(
            self.layout.data(world), self.layout.oracle_data(world), people, self.keys.oracle_data(world)
        )

    def _oracle(self, task: Task) -> None:
        from frequnlearn.attacks.stage import OracleInputs, run_oracle

        p = task.params
        items, bios = self.inputs.items(p["world"])
        inputs = OracleInputs(
            oracle_data=self.layout.oracle_data(p["world"]),
            model_dir=self.layout.model(task.name),
            pretrain=self.keys.pretrain_cfg(p["size"], p["seed"]),
            items=items,
            bios=bios,
            evaluate=self.cfg.evaluate,
            prompt_format=self.s.prompt_format,
            dtype=self.s.dtype,
            record=self._record(task),
        )
        run_oracle(
            inputs, self.layout.oracle(task.name), self.layout.oracle_baseline(task.name), self.keys.oracle(p)
        )

    # ---- unlearning
    def sets(self, task: Task) -> dict[str, list[QAItem]]:
        """The five item sets of one unlearning run (see `study.sets.select_sets`)."""
        p = task.params
        items, _ = self.inputs.items(p["world"])
        known = self.inputs.known(p["model"]) if p["selection"] == "known" else None
        retain = self.inputs.retain_items()
        return select_sets(items, known, self.s, p["seed"], level=p["level"], retain_items=retain)

    def _unlearn(self, task: Task, keep_model: bool = False) -> str | None:
        from frequnlearn.unlearn.stage import UnlearnInputs, record_skipped, run_unlearn

        path, key, ident = self.layout.unlearn(task.name), self.keys.unlearn(task.params), self.identity(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            sets = self.sets(task)
        except NothingToUnlearn as why:
            # Recorded, not fatal: the other models and selections still make a study.
            progress.message(f"skipping {task.name}: {why}")
            record_skipped(path, ident, str(why), key=key)
            return f"skipped: {why}"
        _, bios = self.inputs.items(task.params["world"])
        model, tok = self._model(task.params["model"])
        inputs = UnlearnInputs(
            model=model,
            tokenizer=tok,
            forget=sets["forget"],
            retain=sets["retain"],
            evaluated=[(role, sets[name]) for name, role in EVAL_ROLES.items()],
            identity=ident,
            bios=bios,
            sets={k: [it.item_id for it in v] for k, v in sets.items()},
        )
        # Attacks start from the unlearned weights.
        keep = keep_model or self.s.keep_models or self.cfg.attacks.active
        run_unlearn(
            self.keys.unlearn_cfg(task.params), self.cfg.evaluate, inputs, path, key=key, keep_model=keep
        )
        return None

    # ---- attacks
    def _attack(self, task: Task) -> str | None:
        from frequnlearn.attacks.stage import AttackInputs, record_not_attacked, run_attack
        from frequnlearn.config.attacks import bio_attribute

        p, lay = task.params, self.layout
        run = lay.unlearn(task.name)
        out, key = lay.attacks(task.name), self.keys.attack(p)
        ident = {"task": task.name, **p}
        record = _read_record(lay.run_record(run))
        if not record.get("skipped") and not (lay.unlearned_model(run) / "config.json").is_file():
            # Unlearned without attacks, its weights were not kept: unlearn again (deterministic) to keep them.
            self._unlearn(Task("unlearn", task.name, dict(p)), keep_model=True)
            record = _read_record(lay.run_record(run))
        if record.get("skipped"):
            record_not_attacked(out, key, ident, record["skipped"])
            return f"not attacked: {record['skipped']}"
        items, _ = self.inputs.items(p["world"])
        by_id = {it.item_id: it for it in items}
        # The run's own items: its candidates were redrawn for it (study.sets.run_candidates).
        drawn = {it.item_id: it for it in self.sets(Task("unlearn", task.name, dict(p)))["forget"]}
        forget = [drawn.get(i, by_id[i]) for i in read_json(lay.run_sets(run))["forget"]]
        wanted = {it.person_id for it in forget}
        people = [pr for pr in self.inputs.data(p["world"]).people if pr.person_id in wanted]
        inputs = AttackInputs(
            model_dir=lay.unlearned_model(run),
            forget=forget,
            benign_pool=[it for it in items if not self._studied(it)],
            people=people,
            config=self.cfg.attacks,
            bio_attribute=bio_attribute(
                self.cfg.attacks, self.s.attribute, list(self.cfg.generate.attributes)
            ),
            n_templates=self.cfg.generate.n_templates,
            evaluate=self.cfg.evaluate,
            prompt_format=self.s.prompt_format,
            dtype=self.s.dtype,
            seed=p["seed"],
            identity=ident,
            record=run_info(self.cfg, p["seed"]),
        )
        run_attack(inputs, out, key)
        return None

    def _studied(self, item: QAItem) -> bool:
        """Whether an item belongs to a studied level (in the synthetic setting only forget groups do)."""
        if self.s.setting == "synthetic" and item.group not in FORGET_GROUPS:
            return False
        return level_of(item, self.s.compare_by) in set(self.s.levels)

    # ---- the report
    def _report(self, task: Task) -> None:
        from frequnlearn.report import build_report

        build_report(self.layout.root)


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or Path(spec).is_file()


def _load_plugins(specs: list[str]) -> None:
    if specs:
        from frequnlearn.unlearn.losses import load_plugins

        load_plugins(specs, key="study.plugins")


def _read_record(path: Any) -> dict[str, Any]:
    """An unlearning run's record (run.json), which says whether the study skipped it; {} if none."""
    return read_json(path) if path.is_file() else {}


@contextlib.contextmanager
def _threads_kept() -> Iterator[None]:
    """Pretraining pins torch's thread count; later stages must not depend on whether it ran in this
    process (summation order changes with threads, and near-tied ranks with it)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
