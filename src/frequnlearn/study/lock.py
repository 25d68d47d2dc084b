"""One `frequnlearn study` process per run directory: the study lock (`RUN_DIR/.study.lock`).

The lock is the kernel's (`flock` on the lock file, held for the life of the study), and the file
records who holds it: pid, host, since when, and the key of the config it runs. A second study on the
same directory is refused at once with one line naming the lock file and its holder, and, when its
config differs, saying so. Because the kernel drops the lock of a process that dies, a lock left by a
killed study, or by this very pid before a container restart, is free: the next study takes it (one
line says whose it was). Taking it is atomic (`flock` succeeds for one process only), so of several
studies started at once on a freed lock exactly one runs. A record naming another host while the lock
is free here is reported, never taken: the filesystem may not carry locks between machines, and that
study may be running.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from frequnlearn.errors import FrequnlearnError

# Lock files this process holds (path -> open descriptor): the study's command takes the lock before
# it cleans the directory, and the study it then runs finds it held already.
_HELD: dict[Path, int] = {}


class StudyLocked(FrequnlearnError):
    """Another study holds the run directory."""


@contextlib.contextmanager
def study_lock(path: Path, config_key: str) -> Iterator[None]:
    """Hold the study lock `path` for the block (re-entrant within one process)."""
    path = Path(path).resolve()
    if path in _HELD:
        yield
        return
    fd = _acquire(path, config_key)
    _HELD[path] = fd
    try:
        yield
    finally:
        del _HELD[path]
        with contextlib.suppress(OSError):
            path.unlink()  # while still held, so a process waiting on the old file sees it is gone
        os.close(fd)


def _acquire(path: Path, config_key: str) -> int:
    for _ in range(10):  # the file is removed by a holder that finishes: open the new one
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _record(fd)
            os.close(fd)
            raise StudyLocked(_held_message(path, holder, config_key)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _record(fd)
        if previous.get("host") not in (None, platform.node()):
            os.close(fd)
            raise StudyLocked(
                f"{path}: records a study of pid {previous.get('pid')} on host {previous.get('host')} "
                f"since {previous.get('since')}; this filesystem may not share locks between machines, "
                "so it may still run there: if it does not, remove the lock file and rerun"
            )
        if previous.get("pid"):
            print(
                f"{path}: taking over the lock of pid {previous['pid']} (since {previous.get('since')}), "
                "which no longer holds it",
                file=sys.stderr,
            )
        _write(fd, config_key)
        return fd
    raise StudyLocked(f"{path}: the lock file keeps being replaced; is another study starting here?")


def _record(fd: int) -> dict[str, Any]:
    """The holder's record in the lock file ({} if empty, or being written this instant)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, config_key: str) -> None:
    record = {
        "pid": os.getpid(),
        "host": platform.node(),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config_key": config_key,
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)


def _held_message(path: Path, holder: dict[str, Any], config_key: str) -> str:
    who = (
        f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
        if holder.get("pid")
        else "a study that is just starting"
    )
    if holder.get("config_key") not in (None, config_key):
        return (
            f"{path}: {who} runs another config in this directory (config key {holder['config_key']}, "
            f"yours {config_key}); use another --out, or wait for it to finish"
        )
    return f"{path}: {who} is running this study already; wait for it to finish, or stop it first"
