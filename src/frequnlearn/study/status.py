"""The study's status line: one line per task, with what is left estimated from measured throughput."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from frequnlearn import progress
from frequnlearn.study.plan import Task


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
        self.measured.setdefault(task.kind, []).append((seconds, n_params_of(task), key))

    def seconds(self, task: Task) -> float | None:
        if task.kind == "pretrain":
            if self.throughput is None:
                return None
            tokens_per_s, n_params, per_epoch = self.throughput
            tokens = task.params.get("tokens") or per_epoch * task.params["epochs"]
            return tokens / (tokens_per_s * n_params / n_params_of(task))
        runs = self.measured.get(task.kind)
        if not runs:
            return None
        key = task.params.get("model", task.name)
        same = [sec for sec, _, name in runs if name == key]
        if same:
            return sum(same) / len(same)
        return sum(sec / params for sec, params, _ in runs) / len(runs) * n_params_of(task)

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


def n_params_of(task: Task) -> float:
    return float(task.params.get("n_params") or 1.0)


class Progress:
    """One status line per task: stage, name, elapsed time and what is left by measured throughput.

    The lines go through `progress.message` (above an open bar, and into a log), or into `stream` when
    one is given (the study's --quiet keeps them in memory).
    """

    def __init__(self, tasks: list[Task], pending: list[bool], stream: Any = None) -> None:
        self.tasks = tasks
        self.pending = list(pending)  # tasks that will run (not finished in an earlier run)
        self.stream = stream
        self.start = progress.clock()
        self.estimate = Estimate()

    def left(self, index: int) -> str:
        todo = [t for t, p in zip(self.tasks[index:], self.pending[index:]) if p]
        seconds, untimed = self.estimate.left(todo)
        if not todo:
            return "left ~0:00:00"
        if len(untimed) == len({t.kind for t in todo}):
            return "left ?"
        text = f"left ~{progress.hms(seconds)}"
        return text + (f" + not yet timed: {', '.join(untimed)}" if untimed else "")

    @contextlib.contextmanager
    def task(self, index: int, skipped: bool = False) -> Iterator[None]:
        task = self.tasks[index]
        self.pending[index] = not skipped
        elapsed = progress.clock() - self.start
        state = "done, skipping" if skipped else "running"
        line = (
            f"[{index + 1}/{len(self.tasks)}] {task.kind}: {task.name} ({state}) | "
            f"elapsed {progress.hms(elapsed)} | {self.left(index)}"
        )
        if self.stream is None:
            progress.message(line)
        else:
            print(line, file=self.stream, flush=True)
        t0 = progress.clock()
        yield
        if not skipped:
            self.estimate.finished(task, progress.clock() - t0)
        self.pending[index] = False
