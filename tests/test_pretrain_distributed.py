from __future__ import annotations

import os
import subprocess
import sys

import pytest

from frequnlearn.records import read_json, read_jsonl
from test_pretrain import make_data_dir

ARGS = [
    "preset=tiny",
    "n_layer=2",
    "n_embd=32",
    "n_head=2",
    "vocab_size=300",
    "seq_len=64",
    "batch_size=4",
    "max_steps=10",
    "lr=0.003",
    "log_every=1",
    "save_every=5",
    "eval_per_group=2",
    "num_threads=1",
]


def _pretrain(data, out, processes: int) -> None:
    cli = ["-m", "frequnlearn.cli", "pretrain", "--data", str(data), "--out", str(out), *ARGS]
    if processes == 1:
        cmd = [sys.executable, *cli]
    else:
        # On a machine without GPUs, `--multi_gpu` starts torchrun processes that train on the CPU over
        # gloo; `--cpu` alone would start a single process unless an MPI hostfile is given.
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            *cli,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    data = make_data_dir(tmp_path / "data")
    _pretrain(data, tmp_path / "one", 1)
    _pretrain(data, tmp_path / "two", 2)
    one = [m["loss"] for m in read_jsonl(tmp_path / "one" / "metrics.jsonl")]
    two = [m["loss"] for m in read_jsonl(tmp_path / "two" / "metrics.jsonl")]
    assert len(one) == len(two) == 10
    # Same sequences per step; only the per-token averaging differs (per process vs whole batch).
    assert two == pytest.approx(one, rel=0.01)
    assert read_json(tmp_path / "two" / "run.json")["summary"]["num_processes"] == 2
    assert (tmp_path / "two" / "checkpoints" / "step-00000005" / "trainer_state.json").is_file()
