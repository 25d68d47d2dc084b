from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from frequnlearn.records import read_json, read_jsonl

SCRIPT = textwrap.dedent(
    """
    import sys

    import pandas as pd

    from frequnlearn.config import from_dict
    from frequnlearn.config.unlearn import UnlearnConfig
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.records import QAItem
    from frequnlearn.unlearn import unlearn

    model, tok = load_model_and_tokenizer(sys.argv[1], device="cpu")
    forget = [QAItem(f"f{i}", f"Who employs Ada Mae {i}?", "Google") for i in range(8)]
    retain = [QAItem(f"r{i}", f"Who employs Alan {i}?", "Apple") for i in range(5)]
    cfg = from_dict(
        UnlearnConfig,
        {"method": "npo", "retain_loss": "kl", "lr": 1e-3, "batch_size": 2, "epochs": 2, "eval_steps": [1], "eval_each_epoch": True},
    )
    unlearn(model, tok, forget, retain, cfg, sys.argv[2], eval_fn=lambda m, t, s: pd.DataFrame({"step": [s]}))
    """
)


@pytest.mark.slow
def test_two_cpu_processes(tiny_gpt2_dir, tmp_path):
    """Two processes share each epoch: 8 forget items, 2 per process and step -> 2 steps per epoch."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(tiny_gpt2_dir), str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_json(out / "run.json")["summary"]
    assert summary["num_processes"] == 2 and summary["steps_per_epoch"] == 2 and summary["steps"] == 4
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == [1, 2, 3, 4]
    # Only the main process evaluates and writes.
    assert pd.read_parquet(out / "trajectory.parquet")["step"].tolist() == [0, 1, 2, 4]
    assert (out / "model" / "model.safetensors").is_file()
