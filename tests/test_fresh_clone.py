"""The README's first command, exactly as written, in a fresh clone of the repository.

CI runs `make test` only; this test is what makes CI also run `make study` where nothing but the
committed files exist (no runs/, no results of an earlier run). The installed environment is reused
(`make VENV=... -o .../.stamp-install`, as a developer's checkout would have it), with the clone's own
sources first on the path. The study runs until its first stage has finished and the second has shown
a heartbeat in the log, then it is stopped (a killed study resumes; nothing is lost).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 900


def readme_first_command() -> str:
    """The first line of the README's first shell block, without its comment."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert block, "README.md has no ```bash block"
    return block.group(1).splitlines()[0].split("#")[0].strip()


@pytest.mark.slow
def test_the_readmes_first_command_runs_in_a_fresh_clone(tmp_path):
    git, make = shutil.which("git"), shutil.which("make")
    venv = Path(sys.prefix)
    if not (ROOT / ".git").exists() or git is None or make is None:
        pytest.skip("needs a git checkout, git and make")
    if not (venv / "bin" / "frequnlearn").is_file():
        pytest.skip(f"the tests do not run from the project's environment ({venv} has no bin/frequnlearn)")
    command = readme_first_command()
    assert command == "make study"
    clone = tmp_path / "clone"
    subprocess.run([git, "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone / "runs").exists()

    env = {**os.environ, "PYTHONPATH": str(clone / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [make, f"VENV={venv}", "-o", str(venv / ".stamp-install"), *command.split()[1:]]
    proc = subprocess.Popen(
        argv,
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started, lines, queue = time.monotonic(), [], Queue()
    reader = threading.Thread(target=lambda: [queue.put(line) for line in proc.stdout] + [queue.put(None)])
    reader.start()
    try:
        while time.monotonic() - started < LIMIT_S:
            try:
                line = queue.get(timeout=LIMIT_S - (time.monotonic() - started))
            except Empty:
                break
            if line is None:  # the study ended (it should not, this early)
                break
            lines.append(f"[{time.monotonic() - started:6.1f}s] {line.rstrip()}")
            if line.startswith("pretrain ") and " | elapsed " in line:  # the second stage's heartbeat
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=60)
    transcript = "\n".join(lines)
    assert not [line for line in lines if re.search(r"error|Traceback", line, re.I)], transcript
    assert any("] generate: data (running)" in line for line in lines), transcript
    assert any("] pretrain: " in line and "(running)" in line for line in lines), transcript
    assert any(line.split("] ", 1)[1].startswith("pretrain ") for line in lines), transcript
    # The first stage finished: its data directory and done marker are there.
    data = clone / "runs" / "tiny" / "data"
    assert (data / "manifest.json").is_file() and (data / ".stage.json").is_file(), transcript
