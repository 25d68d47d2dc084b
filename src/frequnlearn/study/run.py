"""The whole controlled (or real-model) experiment from one config: resumable and idempotent.

Each stage writes into the run directory under a key derived from its own config and inputs
(`.stage.json`). A rerun skips a stage whose key matches and whose output is complete, resumes a
pretraining run from its last checkpoint, and restarts an unlearning run that was cut (runs are short
and deterministic, so the result equals an uninterrupted one). Changing one field reruns only the
stages whose key it changes. The plan (`plan`) says what there is to do, an executor (`executors`)
runs it, here or on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

from frequnlearn import progress
from frequnlearn.config.study import StudyConfig
from frequnlearn.errors import DataError
from frequnlearn.layout import RunLayout
from frequnlearn.records import read_json, read_jsonl, run_info, write_json
from frequnlearn.study.executors import Executor, executor_for
from frequnlearn.study.keys import config_key
from frequnlearn.study.lock import study_lock
from frequnlearn.study.plan import Task, plan, worlds_of
from frequnlearn.study.status import Progress, n_params_of
from frequnlearn.study.tasks import Outcome, TaskRunner


def study_layout(cfg: StudyConfig, run_dir: str | Path) -> RunLayout:
    return RunLayout(Path(run_dir), several_worlds=len(worlds_of(cfg)) > 1)


def run_study(cfg: StudyConfig, run_dir: str | Path, quiet: bool = False) -> Path:
    """Run every task of `cfg`'s plan not done yet in `run_dir` with the executor `study.executor`
    names, the report last, holding the directory's study lock; returns the report's directory."""
    import torch

    from frequnlearn.records import code_commit, command_line

    layout = study_layout(cfg, run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    key = config_key(cfg)
    with study_lock(layout.lock, key):
        if cfg.study.num_threads:
            torch.set_num_threads(cfg.study.num_threads)
        # One count for the whole study, whichever process runs a task: summation order depends on it.
        runner = TaskRunner(cfg, layout, torch.get_num_threads())
        info = {**run_info(cfg, cfg.study.seeds), "command": command_line(), "commit": code_commit()}
        tasks = plan(cfg, runner.threads)
        # The plan's task ids: the report reads only these, so runs (and times) that an earlier config
        # of this directory made, of a size or method since removed, do not enter it.
        planned = [t.id for t in tasks if t.kind != "report"]
        write_json(layout.study_record, {**info, "config_key": key, "tasks": planned})
        run_plan(tasks, runner, executor_for(cfg.study), quiet=quiet)
    return layout.report


def run_plan(tasks: list[Task], runner: TaskRunner, executor: Executor, quiet: bool = False) -> None:
    """Run `tasks` (a plan) with `executor`: one status line per task, each task's measured time kept
    in the run directory."""
    pending = [not runner.keys.done(task) for task in tasks]
    status = Progress(tasks, pending, stream=io.StringIO() if quiet else None)
    with progress.quiet_third_party(), progress.quiet(quiet):
        executor.run(tasks, runner, _Events(runner.layout, tasks, status))


class _Events:
    """What the study does as tasks finish: print their line, record their time, learn throughput."""

    def __init__(self, layout: RunLayout, tasks: list[Task], progress: Progress) -> None:
        self.layout, self.tasks, self.progress = layout, tasks, progress

    def skipped(self, index: int) -> None:
        self.progress.skipped(index)
        self._observe_pretrain(self.tasks[index])

    @contextlib.contextmanager
    def running(self, index: int) -> Iterator[None]:
        self.progress.started(index)
        yield

    def finished(self, index: int, outcome: Outcome, remote: bool = False) -> None:
        task = self.tasks[index]
        if not outcome.ran:
            self.progress.skipped(index)  # another process finished it meanwhile
        else:
            self._record_time(task, outcome.seconds)
            self.progress.finished(index, outcome.seconds, outcome.where if remote else None)
        self._observe_pretrain(task)

    def waiting(self, indices: list[int], since: float) -> None:
        self.progress.waiting(indices, since)

    def _record_time(self, task: Task, seconds: float) -> None:
        """Each stage's measured wall time, kept across resumed parts, for the report's run section
        (written by the study's process alone)."""
        path = self.layout.timings
        times = read_json(path) if path.is_file() else {}
        times[task.id] = round(seconds, 1)
        write_json(path, times)

    def _observe_pretrain(self, task: Task) -> None:
        """Feed the estimate the throughput a finished (or cached) pretraining logged."""
        if task.kind != "pretrain":
            return
        for tag in task.params["tags"]:
            try:
                summary = read_json(self.layout.model_record(tag))["summary"]
                rates = [
                    float(r["tokens_per_s"])
                    for r in read_jsonl(self.layout.pretrain_log(tag))
                    if r.get("tokens_per_s")
                ]
            except (DataError, OSError, KeyError, ValueError, json.JSONDecodeError):
                continue  # nothing to learn from; later estimates wait for the next size
            if not rates or not summary.get("epochs"):
                continue
            # Harmonic mean: the logging windows have equal steps, so this is total tokens over total time.
            tokens_per_s = len(rates) / sum(1.0 / r for r in rates)
            self.progress.estimate.pretrained(
                tokens_per_s, n_params_of(task), summary["tokens_seen"] / summary["epochs"]
            )
