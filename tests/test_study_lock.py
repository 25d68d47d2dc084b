"""One study per run directory: a second one is refused in one line naming the holder, a second config
is refused as such, a lock left by a dead process (or by this pid before a restart) is taken over, of
many processes racing for a freed lock exactly one wins, and a lock of another host is reported."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from frequnlearn.cli import main
from frequnlearn.study.lock import StudyLocked, study_lock

CONFIG = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 2}
study: {model_sizes: [tiny], methods: [ga+gd], selections: [all], eval_retain_size: 4, eval_utility_size: 4}
"""
HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from frequnlearn.study.lock import study_lock
    with study_lock(Path(sys.argv[1]), sys.argv[2]):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def study_dir(tmp_path) -> tuple[Path, Path]:
    """A config and a study run directory (marked as one, as `study` leaves it)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".frequnlearn-output.json").write_text(json.dumps({"kind": "study"}))
    return cfg, out


def _config_key(cfg: Path, *overrides: str) -> str:
    from frequnlearn.config.study import load_study_config
    from frequnlearn.study.keys import config_key

    return config_key(load_study_config(cfg, list(overrides)))


def _holder(lock: Path, key: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), key], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_study_on_the_same_directory_stops_naming_the_holder(study_dir, capsys):
    cfg, out = study_dir
    holder = _holder(out / ".study.lock", _config_key(cfg))
    try:
        t0 = time.monotonic()
        assert main(["study", str(cfg), "--out", str(out)]) == 2
        assert time.monotonic() - t0 < 30  # refused at once, not after waiting
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(out.resolve() / ".study.lock") in err
        assert f"pid {holder.pid} on host {platform.node()} since " in err and "is running this study" in err
        assert not (out / "data").exists()  # nothing was touched
        # Another config on the same directory is refused as such.
        assert main(["study", str(cfg), "generate.seed=4", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "runs another config in this directory" in err
        assert f"config key {_config_key(cfg)}, yours {_config_key(cfg, 'generate.seed=4')}" in err
    finally:
        holder.kill()
        holder.wait()


def test_how_a_study_runs_is_not_another_config(study_dir):
    cfg, _ = study_dir
    assert _config_key(cfg, "study.executor=ray", "study.max_retries=5") == _config_key(cfg)
    assert _config_key(cfg, "study.num_threads=1") != _config_key(cfg)


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


@pytest.mark.parametrize("pid", ["dead", "mine"])
def test_a_lock_no_process_holds_is_taken_over(tmp_path, capsys, pid):
    """Left by a killed study, or naming this very pid (a container restarted: same pid, new process)."""
    lock = tmp_path / ".study.lock"
    stale = {"pid": _dead_pid() if pid == "dead" else os.getpid(), "host": platform.node(), "since": "then"}
    lock.write_text(json.dumps({**stale, "config_key": "old"}))
    with study_lock(lock, "new"):
        record = json.loads(lock.read_text())
        assert (record["pid"], record["config_key"]) == (os.getpid(), "new")
        assert f"taking over the lock of pid {stale['pid']} (since then)" in capsys.readouterr().err
        with study_lock(lock, "new"):  # the study inside the command that took it: re-entrant
            pass
        assert lock.is_file()
    assert not lock.exists()  # released


RACE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from frequnlearn.study.lock import StudyLocked, study_lock
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        pass
    try:
        with study_lock(Path(sys.argv[1]), "k"):
            print("won", flush=True)
            time.sleep(2)
    except StudyLocked:
        print("refused", flush=True)
    """
)


def test_of_many_processes_racing_for_a_freed_lock_exactly_one_wins(tmp_path):
    lock = tmp_path / ".study.lock"
    for trial in range(3):
        lock.write_text(json.dumps({"pid": _dead_pid(), "host": platform.node(), "since": "then"}))
        go = tmp_path / f"go{trial}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACE, str(lock), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(6)
        ]
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 6
        go.touch()  # all at once
        results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
        assert results == ["refused"] * 5 + ["won"], (trial, results)


def test_a_lock_of_another_host_is_reported_not_taken(tmp_path):
    lock = tmp_path / ".study.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "since": "2025-01-01T00:00:00"}))
    with pytest.raises(
        StudyLocked, match=r"pid \d+ on host elsewhere since 2025-01-01T00:00:00; .*remove the lock"
    ):
        with study_lock(lock, "k"):
            pass
    assert json.loads(lock.read_text())["host"] == "elsewhere"  # left as it was
