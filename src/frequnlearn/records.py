"""The record types every stage reads and writes, and the few I/O habits they share.

A fact can be followed from generation to the report by its `item_id`: people and QA items come out
of `generate` (or a user's QA table), per-item scores come out of `evaluate`, and every summary is
computed from those scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError

ATTRIBUTES: tuple[str, ...] = (
    "birth_date",
    "birth_city",
    "university",
    "major",
    "employer",
    "employer_city",
)
GROUPS: tuple[str, ...] = ("retain", "forget_high", "forget_low", "utility")
FORGET_GROUPS: tuple[str, ...] = ("forget_high", "forget_low")
PRONOUNS: tuple[str, ...] = ("he", "she", "they")
# Probe types: the trained question, its paraphrase, and biography completion.
PROBES: tuple[str, ...] = ("question", "paraphrase", "bio")


@dataclass
class Person:
    person_id: int
    name: str
    first_name: str
    middle_name: str
    last_name: str
    group: str
    exposure: int
    pronoun: str
    birth_date: str
    birth_city: str
    university: str
    major: str
    employer: str
    employer_city: str


@dataclass
class QAItem:
    """One question about one person or fact, with the frequency of that knowledge.

    Only `item_id`, `question` and `answer` are required; user tables fill what they have.
    `subject` and `object` are the strings a frequency counter looks for (name and answer).
    """

    item_id: str
    question: str
    answer: str
    paraphrase: str | None = None
    person_id: int | str | None = None
    group: str | None = None
    attribute: str | None = None
    frequency: float | None = None
    bucket: str | None = None
    in_corpus: bool = False
    candidates: list[str] = field(default_factory=list)
    subject: str | None = None
    object: str | None = None
    # Corpus occurrences of the answer and of each candidate (generated data; see `value_counts`).
    answer_count: int | None = None
    candidate_counts: list[int] = field(default_factory=list)


@dataclass
class BioPrompt:
    """A freshly verbalised biography cut right before an attribute's value."""

    item_id: str
    person_id: int
    group: str
    attribute: str
    prompt: str
    target: str
    frequency: float | None = None


def from_record(cls: type, row: dict[str, Any]) -> Any:
    """Build a record from a dict, ignoring extra keys (tables may carry more columns)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


def as_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


# ---------------------------------------------------------------- I/O


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with Path(path).open() as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def dumps(obj: Any) -> str:
    """Canonical JSON for one record: stable key order so same input gives same bytes."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Atomic JSONL write; dataclass rows are converted."""

    def lines() -> Iterator[str]:
        for row in rows:
            yield dumps(as_dict(row) if dataclasses.is_dataclass(row) else row) + "\n"

    with atomic_open(path) as fh:
        fh.writelines(lines())


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, sort_keys=True, indent=2, default=str)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return json.loads(path.read_text())


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temp file beside `path`, then rename: a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp directory that becomes `path` only if the block finishes.

    The parent must exist (a missing parent is almost always a typo, so it is an error, not a mkdir).
    """
    path = Path(path)
    if not path.parent.exists():
        raise DataError(f"--out {path}: parent directory {path.parent} does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make shared results unreadable to others
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise DataError(f"--out {path}: already exists; remove it or choose another directory")
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_info(config: Any = None, seed: int | None = None) -> dict[str, Any]:
    """What every result file records: config, seed, library versions and hardware.

    Holds no timestamp, so the same run on the same machine gives the same bytes.
    """
    from importlib import metadata

    versions = {}
    for pkg in ("frequnlearn", "torch", "transformers", "tokenizers", "accelerate", "datasets", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hardware: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "system": platform.system(),
        "python": platform.python_version(),
    }
    try:
        import torch

        hardware["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    cfg = config
    if dataclasses.is_dataclass(config):
        cfg = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {"config": cfg, "seed": seed, "versions": versions, "hardware": hardware}
