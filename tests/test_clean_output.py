"""What the commands print: their own lines only. No bars or notes of other libraries (transformers'
weight loading and saving, lm-eval's bars, warnings and `git describe`), also where stderr is a log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The tool's own stderr lines that a tiny run may print: the True/False probe's note on multi-token
# verdicts, and heartbeats of a stage that took longer than 30 s on a loaded machine.
OURS = re.compile(
    r"^(True/False probe: .*|\w[\w +-]* \d+(/\d+)? \w+ .*\| (elapsed|done after|stopped after) .*)$"
)


def cli(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "frequnlearn.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_tiny_pipeline_prints_only_its_own_lines(tmp_path):
    """In a directory outside any git checkout (where `git describe` would complain)."""
    work = tmp_path / "work"
    work.mkdir()
    assert subprocess.run(["git", "rev-parse"], cwd=work, capture_output=True).returncode != 0
    tiny = [
        "n_layer=1",
        "n_embd=32",
        "n_head=2",
        "seq_len=64",
        "max_steps=4",
        "num_threads=1",
    ]
    steps = {
        "generate": ["generate", "--out", "data", "n_people=60"],
        "pretrain": ["pretrain", "--data", "data", "--out", "model", *tiny],
        "unlearn": [
            "unlearn", "--model", "model", "--method", "ga+gd", "--out", "u",
            "--forget", "data/qa.jsonl?group=forget_high&attribute=employer",
            "--retain", "data/qa.jsonl?group=retain&attribute=employer",
            "--bio-prompts", "data/bio_prompts.jsonl", "lr=0.001", "max_steps=2", "batch_size=2",
            "evaluate.metrics=[prob,gen,tf,bio,utility]", "evaluate.utility_limit=4", "evaluate.max_new_tokens=4", "evaluate.tf_shots=1",
        ],
        "evaluate": [
            "evaluate", "--model", "u/model", "--items", "data/qa.jsonl?attribute=employer", "--metrics", "prob,gen,utility",
            "--out", "scores.parquet", "utility_limit=4", "max_new_tokens=4",
        ],
    }  # fmt: skip
    for name, argv in steps.items():
        done = cli(work, *argv)
        assert done.returncode == 0, (name, done.stderr)
        foreign = [line for line in done.stderr.splitlines() if line.strip() and not OURS.match(line)]
        assert foreign == [], (name, done.stderr)
        assert "\r" not in done.stderr, name  # no bar, not even a cleared one
    assert (work / "u" / "utility.json").is_file() and (work / "scores.run.json").is_file()
