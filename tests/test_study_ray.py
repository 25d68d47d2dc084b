"""The study on Ray: the same per-item results as in one process, every task run exactly once by the
workers of a local cluster (over two generated worlds), a task whose worker dies retried, and a study
resumed across executors."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from frequnlearn.cli import main
from frequnlearn.config.study import load_study_config
from frequnlearn.layout import RunLayout
from frequnlearn.study import plan
from frequnlearn.study.executors import RayExecutor
from frequnlearn.study.run import run_plan, study_layout
from frequnlearn.study.tasks import TaskRunner

pytest.importorskip("ray")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# configs/tiny.yaml at a size a test runs in a minute: fewer people, epochs, sizes and steps.
TINY = [
    "generate.n_people=60",
    "pretrain.epochs=6",
    "study.model_sizes=[tiny]",
    "study.methods=[ga+gd]",
    "study.selections=[known,all]",
    "unlearn.max_steps=4",
    "unlearn.eval_steps=[0,2,4]",
    "evaluate.max_new_tokens=8",
    "evaluate.metrics=[prob,gen]",
    "evaluate.probes=[question]",
    "study.eval_retain_size=6",
    "study.eval_utility_size=3",
    "study.n_boot=200",
    "study.num_threads=1",
]


def per_item(run: Path) -> dict[str, pd.DataFrame]:
    """Every per-item table of a run directory (trajectories, baseline scores), by path."""
    lay = RunLayout(run)
    tables = {p.relative_to(run).as_posix(): RunLayout.trajectory(p) for p in lay.unlearn_runs()}
    tables.update({f"{tag}/baseline": path for tag, path in lay.model_scores("baseline")})
    return {name: pd.read_parquet(path) for name, path in sorted(tables.items()) if path.is_file()}


def task_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in RunLayout(run).task_log.read_text().splitlines()]


@pytest.mark.slow
def test_tiny_study_on_ray_gives_the_local_results_and_resumes_locally(tmp_path, capsys):
    cfg = str(CONFIGS / "tiny.yaml")
    t0 = time.monotonic()
    assert main(["study", cfg, *TINY, "--out", str(tmp_path / "local"), "--quiet"]) == 0
    t1 = time.monotonic()
    assert main(["study", cfg, *TINY, "study.executor=ray", "--out", str(tmp_path / "ray"), "--quiet"]) == 0
    t2 = time.monotonic()
    with capsys.disabled():
        print(f"\n  tiny study: local {t1 - t0:.0f} s, ray (local cluster) {t2 - t1:.0f} s", file=sys.stderr)
    local, ray = per_item(tmp_path / "local"), per_item(tmp_path / "ray")
    assert len(local) == 3 and set(local) == set(ray)  # a baseline and two unlearning runs (known: skipped)
    for name in local:
        pd.testing.assert_frame_equal(local[name], ray[name], obj=name)
    records = [
        {
            p.relative_to(run).as_posix(): json.loads(RunLayout.run_record(p).read_text())["run"]
            for p in RunLayout(run).unlearn_runs()
        }
        for run in (tmp_path / "local", tmp_path / "ray")
    ]
    assert len(records[0]) == 4 and records[0] == records[1]  # the same runs, skipped ones included
    ran = Counter(e["task"] for e in task_log(tmp_path / "ray") if e["event"] == "end")
    assert set(ran.values()) == {1}
    # Stopped under one executor, resumed under the other: nothing left to do but the report.
    capsys.readouterr()
    assert main(["study", cfg, *TINY, "--out", str(tmp_path / "ray")]) == 0
    err = capsys.readouterr().err
    assert "(running)" in err and err.count("(running)") == 1 and "report: report (running)" in err


class KillsOneWorker(TaskRunner):
    """The study's runner, except that the first time it reaches the unlearning run `victim` it kills
    its own process (as the kernel's out-of-memory killer or a lost node would), leaving `marker`."""

    def __init__(self, cfg, layout, threads, victim: str, marker: Path) -> None:
        super().__init__(cfg, layout, threads)
        self.victim, self.marker = victim, marker

    def __getstate__(self):
        return {**super().__getstate__(), "victim": self.victim, "marker": self.marker}

    def __setstate__(self, state):
        self.__init__(state["cfg"], state["layout"], state["threads"], state["victim"], state["marker"])
        self.plugins = state["plugins"]

    def __call__(self, task):
        if task.id == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(task)


GRID = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 3,
           batch_size: 8, lr: 3.0e-3, save_every: 10, eval_per_group: 2}
unlearn: {lr: 2.0e-3, max_steps: 2, eval_steps: [0, 2], batch_size: 4}
evaluate: {metrics: [prob, gen], utility_tasks: [], max_new_tokens: 6, batch_size: 16}
study: {model_sizes: [tiny], worlds: [3, 4], methods: [ga+gd], selections: [all], eval_retain_size: 4,
        eval_utility_size: 4, n_boot: 100, num_threads: 1, executor: ray, max_retries: 2}
"""


@pytest.fixture
def ray_two_cpus():
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's runner, in the workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_two_ray_workers_run_each_task_once_and_retry_a_killed_one(tmp_path, ray_two_cpus):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    cfg = load_study_config(path)
    run, marker = tmp_path / "run", tmp_path / "killed.pid"
    tasks = plan(cfg, threads=1)
    victim = next(t.id for t in tasks if t.kind == "unlearn" and t.params["world"] == 4)
    runner = KillsOneWorker(cfg, study_layout(cfg, run), 1, victim, marker)
    run_plan(tasks, runner, RayExecutor(max_retries=2), quiet=True)
    events = task_log(run)
    ends = Counter(e["task"] for e in events if e["event"] == "end")
    starts = Counter(e["task"] for e in events if e["event"] == "start")
    assert ends == Counter({t.id: 1 for t in tasks})  # every task finished exactly once
    assert starts[victim] == 2 and all(starts[t] == 1 for t in ends if t != victim)
    assert marker.is_file()  # it was killed, then rerun on a fresh worker
    killed = marker.read_text()
    assert not next(e["where"] for e in events if e["task"] == victim and e["event"] == "end").endswith(
        f":{killed}"
    )
    workers = {e["where"] for e in events if e["event"] == "end"}
    assert len(workers) >= 2  # the tasks were shared out, not run by one process
    assert RunLayout(run).report.joinpath("report.html").is_file()
    # Two generated worlds: each its data and its model, and every run record names its world.
    lay = study_layout(cfg, run)
    assert all(lay.data_manifest(w).is_file() for w in (3, 4)) and not RunLayout(run).data().exists()
    worlds = {json.loads(RunLayout.run_record(p).read_text())["run"]["world"] for p in lay.unlearn_runs()}
    assert worlds == {3, 4}
