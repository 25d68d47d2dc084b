"""Who runs a study's tasks: this process, one task at a time (`local`, the default), or Ray (`ray`),
which runs each task as a Ray task on a local cluster or on the cluster at `study.ray_address`.

Both take the same plan and the same `TaskRunner`, and a task decides for itself whether its outputs
are already there for its key, so a study stopped under one executor resumes under the other with
whatever was finished kept. With Ray each task asks for the CPUs (its torch threads) and, where the
cluster has any, the GPU its stage declares; a task starts once the tasks it reads have finished, and
one whose worker dies (killed, out of memory, a node lost) is retried up to `study.max_retries` times.
A task that fails with an error of its own (bad input, a diverged loss) is not retried: it would fail
the same way; the study stops with that task's error. The run directory must be on a filesystem every
node sees.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from frequnlearn import progress as bars
from frequnlearn.errors import ConfigError, FrequnlearnError
from frequnlearn.study.plan import Task
from frequnlearn.study.tasks import Outcome, TaskRunner

# Without a finished task for this long, the Ray executor says what it waits for.
HEARTBEAT_SECONDS = 60.0


class Events(Protocol):
    """What an executor tells the study about its tasks (the study prints and records them)."""

    def skipped(self, index: int) -> None: ...

    @contextlib.contextmanager
    def running(self, index: int) -> Iterator[None]: ...

    def finished(self, index: int, outcome: Outcome, remote: bool = False) -> None: ...

    def waiting(self, indices: list[int], since: float) -> None: ...


class Executor(Protocol):
    def run(self, tasks: list[Task], runner: TaskRunner, events: Events) -> None: ...


class LocalExecutor:
    """Every task in this process, in plan order (a valid order: inputs first)."""

    def run(self, tasks: list[Task], runner: TaskRunner, events: Events) -> None:
        for i, task in enumerate(tasks):
            if runner.keys.done(task):
                events.skipped(i)
                continue
            with events.running(i):
                outcome = runner.run_if_needed(task)
            events.finished(i, outcome)


@dataclass
class RayExecutor:
    """Each task a Ray task. `address`: `local` starts a cluster on this machine for the study (and
    stops it after), `auto` joins the one `ray start` runs here, `ray://HOST:PORT` a remote one
    (Ray Client). A Ray session already open in this process (`ray.init()` called before) is used as
    it is. `num_cpus` bounds a local cluster (default: every core)."""

    address: str = "local"
    max_retries: int = 2
    num_cpus: int | None = None

    def run(self, tasks: list[Task], runner: TaskRunner, events: Events) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "study.executor: ray is not installed here; pip install 'frequnlearn[ray]', "
                "or run with study.executor=local"
            ) from None

        started_here = not ray.is_initialized()
        if started_here:
            self._connect(ray)
        try:
            self._run(ray, tasks, runner, events)
        finally:
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> None:
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        env = {"env_vars": {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}}
        if self.address.startswith("ray://"):
            ray.init(address=self.address, runtime_env=env, **quiet)
        elif self.address == "auto":
            ray.init(address="auto", runtime_env=env, **quiet)
        else:
            ray.init(
                address="local", num_cpus=self.num_cpus, include_dashboard=False, runtime_env=env, **quiet
            )

    def _run(self, ray: Any, tasks: list[Task], runner: TaskRunner, events: Events) -> None:
        from ray.exceptions import RayError, RayTaskError

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        max_cpus = max((int(r.get("CPU", 1)) for r in nodes), default=1)
        has_gpus = any(r.get("GPU", 0) > 0 for r in nodes)
        remote = ray.remote(run_task)
        shared = ray.put(runner)
        refs: dict[str, Any] = {}
        index: dict[Any, int] = {}
        for i, task in enumerate(tasks):
            if runner.keys.done(task):
                events.skipped(i)
                continue
            res = task.resources
            ref = remote.options(
                name=task.id,
                # A node smaller than the thread count still runs the task (with more threads than cores).
                num_cpus=min(res.cpus, max_cpus),
                num_gpus=res.gpus if has_gpus else 0,
                max_retries=self.max_retries,
                retry_exceptions=False,
            ).remote(shared, task, *[refs[d] for d in task.inputs if d in refs])
            refs[task.id] = ref
            index[ref] = i
        pending = list(index)
        since = time.monotonic()
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=HEARTBEAT_SECONDS)
            if not ready:
                events.waiting([index[r] for r in pending], since)
                continue
            since = time.monotonic()
            ref = ready[0]
            try:
                outcome = ray.get(ref)
            except RayTaskError as err:
                _cancel(ray, pending)
                if isinstance(err.cause, FrequnlearnError):
                    raise err.cause from None  # the stage's own one-line error
                raise
            except RayError as err:
                _cancel(ray, pending)
                task = tasks[index[ref]]
                raise TaskLost(
                    f"{task.id}: its Ray worker was lost {self.max_retries + 1} time(s) "
                    f"({type(err).__name__}: killed, out of memory, or a node gone); what finished is kept, "
                    "rerun the same command to resume (or raise study.max_retries)"
                ) from None
            events.finished(index[ref], outcome, remote=True)


class TaskLost(FrequnlearnError):
    """A task's process died more often than the study retries it."""


def _cancel(ray: Any, refs: list[Any]) -> None:
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def run_task(runner: TaskRunner, task: Task, *inputs: Outcome) -> Outcome:
    """A task in a Ray worker: torch pinned to the study's thread count, third-party bars and our own
    off (the driver prints one line per task), then the runner. `inputs` are the outcomes of the tasks
    it reads; Ray passes them only once those finished."""
    import torch

    torch.set_num_threads(runner.threads)
    with bars.quiet_third_party(), bars.quiet(True):
        return runner.run_if_needed(task)


def executor_for(options: Any) -> Executor:
    """The executor `study.executor` names."""
    if options.executor == "ray":
        return RayExecutor(address=options.ray_address, max_retries=options.max_retries)
    return LocalExecutor()
