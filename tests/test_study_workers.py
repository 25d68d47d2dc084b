"""Several processes of one study share its tasks: each stage runs in exactly one of them, a stage
starts only after its inputs are done, and the result equals a single process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from frequnlearn.config.study import load_study_config
from frequnlearn.records import CLAIMS_DIR, claim
from frequnlearn.study import inputs_of, plan

CONFIG = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 3,
           batch_size: 8, lr: 3.0e-3, save_every: 10, eval_per_group: 2}
unlearn: {lr: 2.0e-3, max_steps: 2, eval_steps: [0, 2], batch_size: 4}
evaluate: {metrics: [prob, gen], utility_tasks: [], max_new_tokens: 6, batch_size: 16}
study: {model_sizes: [tiny], seeds: [0, 1], methods: [ga+gd], selections: [all], eval_retain_size: 4,
        eval_utility_size: 4, n_boot: 100, num_threads: 1}
"""


def test_a_claim_is_held_by_one_process_and_freed_when_it_dies(tmp_path):
    with claim(tmp_path, "pretrain:tiny-s0") as first:
        with claim(tmp_path, "pretrain:tiny-s0") as second:
            assert first and not second
    with claim(tmp_path, "pretrain:tiny-s0") as again:
        assert again  # released on exit
    # A claim whose process is gone (a killed worker) is taken over.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import platform

    stale = tmp_path / CLAIMS_DIR / "unlearn_tiny-s0.json"
    stale.write_text(json.dumps({"pid": int(dead.stdout), "host": platform.node()}))
    with claim(tmp_path, "unlearn:tiny-s0") as taken:
        assert taken
    assert not stale.exists()
    # A live holder on another machine (a shared run directory) cannot be checked: it keeps its claim.
    stale.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere"}))
    with claim(tmp_path, "unlearn:tiny-s0") as taken:
        assert not taken


def test_every_task_waits_only_for_what_it_reads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    tasks = plan(load_study_config(path))
    names = {(t.kind, t.name): t for t in tasks}
    unlearn = next(t for t in tasks if t.kind == "unlearn" and t.params["model"] == "tiny-s1")
    assert {(d.kind, d.name) for d in inputs_of(unlearn, tasks)} == {
        ("generate", "data"),
        ("pretrain", "tiny-s1"),
        ("baseline", "tiny-s1"),
    }
    assert [d.name for d in inputs_of(names[("baseline", "tiny-s0")], tasks)] == ["data", "tiny-s0"]
    assert len(inputs_of(names[("report", "report")], tasks)) == len(tasks) - 1
    # Plan order is a valid order: every input comes before the task that reads it.
    for i, t in enumerate(tasks):
        assert all(tasks.index(d) < i for d in inputs_of(t, tasks))


def _trajectories(run: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((run / "unlearn").glob("**/trajectory.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values(["run_id", "step", "item_id", "probe", "family"])


@pytest.mark.slow
def test_two_workers_share_a_study_and_match_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cmd = [sys.executable, "-m", "frequnlearn.cli", "study", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [*cmd, "--out", str(tmp_path / "one"), "--quiet"], env=env, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / "two")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    ran = [
        {line.split("] ", 1)[1].split(" (running)")[0] for line in log.splitlines() if "(running)" in line}
        for log in logs
    ]
    tasks = plan(load_study_config(path))
    every = {f"{t.kind}: {t.name}" for t in tasks if t.kind != "report"}
    assert (ran[0] | ran[1]) >= every  # each stage ran ...
    assert not (ran[0] & ran[1]) - {"report: report"}  # ... in one worker only (both may write the report)
    assert ran[0] - {"report: report"} and ran[1] - {"report: report"}  # and both did work
    pd.testing.assert_frame_equal(
        _trajectories(tmp_path / "one").reset_index(drop=True),
        _trajectories(tmp_path / "two").reset_index(drop=True),
    )
    assert not list((tmp_path / "two" / CLAIMS_DIR).iterdir())
