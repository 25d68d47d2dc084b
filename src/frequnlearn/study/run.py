"""The whole controlled (or real-model) experiment from one config: resumable and idempotent.

Each stage writes into the run directory under a key derived from its own config and inputs
(`.stage.json`). A rerun skips a stage whose key matches and whose output is complete, resumes a
pretraining run from its last checkpoint, and restarts an unlearning run that was cut (runs are short
and deterministic, so the result equals an uninterrupted one). Changing one field reruns only the
stages whose key it changes.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from frequnlearn import progress as bars
from frequnlearn.config.study import StudyConfig
from frequnlearn.errors import DataError
from frequnlearn.layout import RunLayout
from frequnlearn.records import claim, read_json, read_jsonl, run_info, write_json
from frequnlearn.study.plan import Task, inputs_of, plan
from frequnlearn.study.status import Estimate, Progress, n_params_of, quiet_third_party
from frequnlearn.study.tasks import TaskRunner

POLL_SECONDS = 5.0


def run_study(cfg: StudyConfig, run_dir: str | Path, quiet: bool = False) -> Path:
    """Run every task of `cfg`'s plan not done yet in `run_dir`, then the report; returns the report's
    directory."""
    return _Driver(cfg, RunLayout(run_dir), quiet).run()


class _Driver:
    """Runs a plan in one run directory, one task at a time, in plan order once its inputs are done."""

    def __init__(self, cfg: StudyConfig, layout: RunLayout, quiet: bool) -> None:
        import torch

        self.cfg, self.layout, self.quiet = cfg, layout, quiet
        if cfg.study.num_threads:
            torch.set_num_threads(cfg.study.num_threads)
        self.runner = TaskRunner(cfg, layout, torch.get_num_threads())

    def run(self) -> Path:
        from frequnlearn.records import code_commit, command_line

        self.layout.root.mkdir(parents=True, exist_ok=True)
        info = {
            **run_info(self.cfg, self.cfg.study.seeds),
            "command": command_line(),
            "commit": code_commit(),
        }
        write_json(self.layout.study_record, info)
        tasks = plan(self.cfg, self.runner.threads)
        pending = [not self._is_done(task) for task in tasks]
        progress = Progress(tasks, pending, stream=io.StringIO() if self.quiet else None)
        with quiet_third_party():
            self._work(tasks, progress)
        return self.layout.report

    def _is_done(self, task: Task) -> bool:
        return self.runner.keys.done(task)

    def _work(self, tasks: list[Task], progress: Progress) -> None:
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
                    with claim(self.layout.root, task.id) as mine:
                        if not mine:
                            continue
                        if not self._is_done(task):  # another worker may have finished it meanwhile
                            with progress.task(i), bars.quiet(self.quiet):
                                started = time.monotonic()
                                self.runner(task)
                                self._record_time(task, time.monotonic() - started)
                    ran = True
                remaining.remove(i)
                if task.kind == "pretrain":
                    self._observe_pretrain(task, progress.estimate)
            if remaining and not ran:
                time.sleep(POLL_SECONDS)  # the next inputs are being made by another worker

    def _record_time(self, task: Task, seconds: float) -> None:
        """Each stage's measured wall time, kept across resumed parts, for the report's run section."""
        path = self.layout.timings
        for _ in range(600):  # workers finishing at once take turns (a read-modify-write)
            with claim(self.layout.root, path.name) as mine:
                if mine:
                    times = read_json(path) if path.is_file() else {}
                    times[f"{task.kind}:{task.name}"] = round(seconds, 1)
                    write_json(path, times)
                    return
            time.sleep(0.05)

    def _observe_pretrain(self, task: Task, estimate: Estimate) -> None:
        """Feed the estimate the throughput a finished (or cached) pretraining logged."""
        try:
            summary = read_json(self.layout.model_record(task.name))["summary"]
            rates = [
                float(r["tokens_per_s"])
                for r in read_jsonl(self.layout.pretrain_log(task.name))
                if r.get("tokens_per_s")
            ]
        except (DataError, OSError, KeyError, ValueError, json.JSONDecodeError):
            return  # nothing to learn from; later estimates wait for the next size
        if not rates or not summary.get("epochs"):
            return
        # Harmonic mean: the logging windows have equal steps, so this is total tokens over total time.
        tokens_per_s = len(rates) / sum(1.0 / r for r in rates)
        estimate.pretrained(tokens_per_s, n_params_of(task), summary["tokens_seen"] / summary["epochs"])
