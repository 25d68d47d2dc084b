"""The record types every stage reads and writes, and the few I/O habits they share.

A fact can be followed from generation to the report by its `item_id`: people and QA items come out
of `generate` (or a user's QA table), per-item scores come out of `evaluate`, and every summary is
computed from those scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
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
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(path, lineno, raw)
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def _decode(path: Path, lineno: int | None, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"{path}:{lineno}" if lineno else str(path)
        raise DataError(
            f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
            "save the file as UTF-8"
        ) from None


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


def read_bio_prompts(path: str | Path, flag: str = "bio_prompts") -> list[BioPrompt]:
    """A bio_prompts.jsonl table; a table of other rows is refused naming `flag` (the option it came from)."""
    try:
        return [from_record(BioPrompt, row) for row in read_jsonl(path)]
    except TypeError:
        raise DataError(
            f"{flag} {path}: rows are not biography prompts (need item_id, prompt, target, ...)"
        ) from None


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row and fsync it: O(1) per row, and a killed run keeps every row written before."""
    path = guard(path)
    line = dumps(row) + "\n"
    try:
        with path.open("a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(path, len(line.encode())) from None
        raise


def write_parquet(df: Any, path: str | Path, info: dict[str, Any]) -> None:
    """Parquet with the run's record (config, seed, versions, hardware) in its metadata under key
    `frequnlearn`, written atomically, so a table carries its provenance wherever it is copied."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"frequnlearn"] = json.dumps(info, default=str, sort_keys=True).encode()
    with atomic_open(path, "wb") as fh:
        pq.write_table(table.replace_schema_metadata(meta), fh)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, sort_keys=True, indent=2, default=str)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return json.loads(_decode(path, None, path.read_bytes()))


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temp file beside `path`, then rename: a killed run never leaves half a file."""
    path = guard(Path(path), follow=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = _size_of(Path(tmp))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(err):
            raise DiskFull(path, written + getattr(err, "needed", 0)) from None
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp directory that becomes `path` only if the block finishes (`path` must not exist,
    unless `overwrite`: then the old directory is replaced whole; only for directories the caller owns).

    Missing parent directories are created (the output rule protects existing files, not absent paths).
    """
    path = guard(Path(path))
    tmp = _scratch_dir(path.parent, path.name, target=path)
    try:
        try:
            yield tmp
        except BaseException as err:
            if is_disk_full(err):
                raise DiskFull(path, _size_of(tmp) + getattr(err, "needed", 0)) from None
            raise
        (tmp / OUTPUT_MARKER).unlink(missing_ok=True)
        share(tmp)
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


# ---------------------------------------------------------------- output paths
#
# The one rule for every command's output: write only into a path this tool created, or one that
# carries its own marker for the same kind of output; anything else needs an explicit --overwrite, and
# even then only files of the output's own names are replaced. Multi-file outputs are written as a
# set: built in a scratch directory beside the target, then moved in with the file readers check
# (manifest, run record) removed first and put back last.

OUTPUT_MARKER = ".frequnlearn-output.json"
# What each kind of output is called in messages, and the files that mark a directory written before
# the marker existed (a study run, a data directory, a pretraining run).
OUTPUT_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("a data directory (`generate`)", ("manifest.json",)),
    "model": ("a pretraining run (`pretrain`)", ("knowledge.jsonl", "pretrain_config.json")),
    "unlearn": ("an unlearning run (`unlearn`)", ("log.jsonl",)),
    "study": ("a study run directory (`study`)", ("study.json", ".stage.json")),
    "report": ("a report (`report`)", ("report.html", "findings.json")),
    "bench": ("a benchmark (`bench`)", ("leaderboard.csv", "tuning.json")),
}
_TEMP_SUFFIX = re.compile(r"\.[a-z0-9_]{8}\.tmp$")  # tempfile's names: prefix + 8 characters + suffix


def output_kind(path: str | Path) -> str | None:
    """Which kind of this tool's output the directory `path` holds, or None."""
    path = Path(path)
    marker = path / OUTPUT_MARKER
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            return str(json.loads(marker.read_text(encoding="utf-8")).get("kind"))
    for kind, (_, files) in OUTPUT_KINDS.items():
        if any((path / name).is_file() for name in files):
            return kind
    return None


def _probe_writable(directory: Path, flag: str, target: Path) -> None:
    """Create and remove a file in `directory`: the only test of writability that root cannot pass by rank."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".frequnlearn-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DataError(
            f"{flag} {target}: cannot write in {directory} ({err.strerror or err}); "
            "choose a writable location or fix its permissions"
        ) from None


def _existing_ancestor(path: Path, flag: str) -> Path:
    """The nearest directory above `path` that exists: missing parents are the tool's to create (when
    it writes), but a file standing where a parent directory would go is refused."""
    for parent in path.parents:
        if parent.is_dir():
            return parent
        if parent.exists():
            raise DataError(f"{flag} {path}: {parent} is a file, not a directory; choose another path")
    return Path.cwd()


def check_output_dir(
    path: str | Path, kind: str, *, overwrite: bool = False, flag: str = "--out", deep: bool = False
) -> Path:
    """Validate an output directory before any work starts (see the rule above); remove our stale temps
    (with `deep`, also in its subdirectories: a study's stages write there).

    Allowed: a new path (missing parents are created when the output is written), an empty directory, or a directory holding this
    kind's own output; with `overwrite`, any directory (its other files are kept).
    """
    path = guard(path)  # before even a probe file: a root it lies in must hold it
    if path.exists() and not path.is_dir():
        raise DataError(f"{flag} {path}: is a file, not a directory; choose a directory path")
    if not path.exists():
        _probe_writable(_existing_ancestor(path, flag), flag, path)
    else:
        _probe_writable(path, flag, path)
        owner = output_kind(path)
        foreign = [p for p in path.iterdir() if not _TEMP_SUFFIX.search(p.name)]
        if owner != kind and foreign and not overwrite:
            what = (
                f"holds {OUTPUT_KINDS[owner][0]}"
                if owner in OUTPUT_KINDS
                else "holds files this tool did not write"
            )
            raise DataError(
                f"{flag} {path}: {what}; choose a new directory, or add --overwrite to write "
                f"{OUTPUT_KINDS[kind][0].split(' (')[0]} into it (other files are kept)"
            )
    add_root(path)
    if is_main_process():
        remove_stale_temps(path, deep=deep)
    return path


def is_main_process() -> bool:
    """Rank 0 of a `torchrun`/`accelerate launch` group (or a lone process): the one that cleans and
    commits outputs, so that no process removes another's scratch files. Read from the launcher's
    environment because the check runs before any accelerator exists."""
    return os.environ.get("RANK", "0") == "0"


def check_output_files(
    paths: Sequence[Path], owned: bool, *, overwrite: bool = False, flag: str = "--out"
) -> None:
    """Validate a set of output files before any work starts: none may be a directory, their folder
    must be writable, and existing ones are replaced only if they are this tool's (`owned`) or with
    `overwrite`."""
    first = Path(paths[0])
    for path in map(Path, paths):
        guard(path, follow=False)
        if path.is_dir():
            raise DataError(f"{flag} {first}: {path} is a directory; name a file")
    _probe_writable(_existing_ancestor(first, flag), flag, first)
    existing = [p for p in map(Path, paths) if p.exists()]
    if existing and not owned and not overwrite:
        raise DataError(
            f"{flag} {first}: {existing[0]} exists and was not written by this tool; choose another "
            "name, or add --overwrite to replace it"
        )
    for path in paths:
        add_root(path, follow=False)
    if is_main_process():
        for path in paths:
            remove_stale_temps(Path(path))


def claim_output_dir(path: str | Path, kind: str) -> Path:
    """Create `path` if needed and mark it as this kind's output, so a rerun knows it may write there.

    Another kind's directory (written into with --overwrite) keeps its own mark.
    """
    path = guard(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / OUTPUT_MARKER).is_file() and output_kind(path) in (None, kind):
        write_json(path / OUTPUT_MARKER, {"kind": kind})
    return path


def remove_stale_temps(path: str | Path, deep: bool = False) -> None:
    """Remove what a killed write of `path` left: our scratch directories and temp files beside it
    (named `.NAME.XXXXXXXX.tmp`) and, inside a directory of ours, temp files of its own files (with
    `deep`, in every subdirectory too)."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            if not pattern.match(entry.name):
                continue
            if entry.is_dir() and (entry / OUTPUT_MARKER).is_file():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_file():
                entry.unlink(missing_ok=True)
    if path.is_dir() and output_kind(path):
        inner = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
        for entry in list(path.rglob("*") if deep else path.iterdir()):
            if not inner.match(entry.name):
                continue
            if entry.is_file():
                entry.unlink(missing_ok=True)
            elif entry.is_dir() and (entry / OUTPUT_MARKER).is_file():
                shutil.rmtree(entry, ignore_errors=True)


def _scratch_dir(parent: Path, name: str, kind: str = "scratch", target: Path | None = None) -> Path:
    """A new hidden directory beside the output (its missing parents made); a full disk while making it
    names `target`."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make shared results unreadable to others
        write_json(tmp / OUTPUT_MARKER, {"kind": kind})  # lets a rerun know this leftover is its own
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if target is not None and is_disk_full(err):
            raise DiskFull(target, getattr(err, "needed", 0)) from None
        raise
    return tmp


@contextlib.contextmanager
def output_set(
    dest: str | Path,
    names: Sequence[str] | None,
    last: str,
    *,
    kind: str | None = None,
    prefix: str | None = None,
    commit: bool = True,
) -> Iterator[Path]:
    """Yield a scratch directory; when the block finishes, its entries replace `names` in `dest`.

    `last` (the file readers check: a manifest or run record) is removed from `dest` first and put
    back last, so a kill in between leaves a set that says it is incomplete, never a mixed one that
    says it is whole. A name in `names` that the new set lacks is removed (it belonged to the old
    set); `names=None` means whatever the new set holds. A new directory `dest` of `kind` is made by
    one rename. Other files in `dest` are kept. Without `commit` (a process other than the main one)
    the scratch directory is only removed. A full disk while the set is built leaves `dest` as it
    was and says how much the set had taken when the space ran out.
    """
    dest = guard(Path(dest))
    tmp = _scratch_dir(dest.parent if kind else dest, prefix or dest.name, kind or "scratch", target=dest)
    try:
        try:
            yield tmp
        except BaseException as err:
            if is_disk_full(err):
                raise DiskFull(dest, _size_of(tmp) + getattr(err, "needed", 0)) from None
            raise
        if not commit:
            return
        if names is None:
            names = sorted(p.name for p in tmp.iterdir() if p.name != OUTPUT_MARKER)
        for name in names:
            guard(dest / name, follow=False)
        share(tmp)
        if kind and not dest.exists():
            write_json(tmp / OUTPUT_MARKER, {"kind": kind})
            os.replace(tmp, dest)
            return
        if kind:
            claim_output_dir(dest, kind)
        (dest / last).unlink(missing_ok=True)
        trash = tmp / ".replaced"
        trash.mkdir()
        for name in [n for n in names if n != last] + [last]:
            new, old = tmp / name, dest / name
            if old.is_dir() and not old.is_symlink():
                os.replace(old, trash / name)
            if new.exists():
                os.replace(new, old)
            elif old.exists() or old.is_symlink():
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- staying inside --out
#
# Every output root a command checked (`check_output_dir`, `check_output_files`) is remembered as the
# path it was named by and the place it resolves to. A path the tool builds under a root (a run
# directory from a config's level, tag or method name) must resolve under that root too, so neither a
# `..` in a name nor a symlink planted inside the run can lead a write or a removal elsewhere. Paths
# that no root names (the system's temporary directory, a configured cache) are not --out's.

_ROOTS: list[tuple[Path, Path]] = []
# One directory name of a run path: a letter, digit or underscore first (never '.', so neither '..'
# nor a name that looks like the tool's hidden scratch files), then those or . + - = @ , (no '/').
_PLAIN_NAME = re.compile(r"\w[\w.+=@,-]{0,99}")


def is_plain_name(value: Any) -> bool:
    """Whether `value` can be one directory name of a run path (see `_PLAIN_NAME`)."""
    return isinstance(value, str) and _PLAIN_NAME.fullmatch(value) is not None


def _lexical(path: Path) -> Path:
    """`path` made absolute as named ('..' and symlinks kept): what it says, not where it leads."""
    return path if path.is_absolute() else Path.cwd() / path


def _lands(path: Path, follow: bool) -> Path:
    """Where a write to `path` lands: the path resolved (appending to a file, a directory), or, for a
    file replaced by a rename (`follow=False`), its resolved folder plus its own name."""
    if follow or path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def add_root(path: str | Path, follow: bool = True) -> None:
    """Remember `path` as an output root of this process (a root inside another must stay inside it)."""
    lexical = _lexical(Path(path))
    guard(lexical, follow=follow)
    entry = (lexical, _lands(lexical, follow))
    if entry not in _ROOTS:
        _ROOTS.append(entry)


def guard(path: str | Path, *, follow: bool = True, action: str = "write") -> Path:
    """Return `path`, or refuse it when a root names it but it resolves outside that root."""
    path = Path(path)
    lexical, lands = _lexical(path), None
    for root, real in _ROOTS:
        if lexical.parts[: len(root.parts)] != root.parts:
            continue
        lands = lands or _lands(lexical, follow)
        if lands != real and real not in lands.parents:
            raise DataError(
                f"{path}: leads to {lands}, outside the output {root} (a symlink or '..' on the way); "
                f"refusing to {action} it"
            )
    return path


def remove_own(path: str | Path, root: str | Path) -> None:
    """Remove the directory `path` if it exists, only if it lies inside `root` (resolved, symlinks
    included) and carries this tool's own marker (a done marker or an output marker): the tool removes
    only what it wrote itself."""
    path, root = Path(path), Path(root)
    if not path.exists() and not path.is_symlink():
        return
    lexical, top = _lexical(path), _lexical(root)
    inside = lexical.parts[: len(top.parts)] == top.parts and lexical != top
    if not inside or path.is_symlink() or not path.is_dir() or top.resolve() not in path.resolve().parents:
        raise DataError(
            f"{path}: not a directory inside {root} (a symlink or '..' leads out of it); refusing to remove it"
        )
    if not ((path / STAGE_FILE).is_file() or (path / OUTPUT_MARKER).is_file()):
        raise DataError(
            f"{path}: carries no marker of this tool, so it holds someone else's files; refusing to "
            "remove it (move it away, then rerun)"
        )
    guard(path, action="remove")
    shutil.rmtree(path)


def share(path: str | Path) -> None:
    """Give every file and folder under `path` the modes of every other output (0644 and 0755 under the
    usual umask): safetensors writes weights 0600, which would hide them from the rest of a team."""
    path = Path(path)
    mask = _umask()
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if entry.is_symlink():
            continue
        with contextlib.suppress(OSError):
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


# ---------------------------------------------------------------- a full disk


class DiskFull(DataError):
    """The device ran out of space while `path` was written: one line with what it took and what is free."""

    def __init__(self, path: Path, needed: int) -> None:
        self.path, self.needed = Path(path), int(needed)
        super().__init__(
            f"{path}: no space left on the device (the write needed more than {human_bytes(needed)}; "
            f"{human_bytes(free_bytes(path))} free there); free some space or choose another location, "
            "then rerun (earlier outputs are kept)"
        )


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` says the device is full (an OSError, or a library's error that wraps one)."""
    if isinstance(err, DiskFull):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "StorageFull" in text or "os error 28" in text


def free_bytes(path: str | Path) -> int:
    """Free bytes on the device that holds `path` (or its nearest existing folder)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(path: str | Path, needed: int, what: str, flag: str = "--out") -> None:
    """Refuse, before any work, an output whose estimated size exceeds the free space where it goes."""
    free = free_bytes(path)
    if needed > free:
        raise DataError(
            f"{flag} {path}: {what} needs about {human_bytes(needed)} of disk, only {human_bytes(free)} "
            "free there; free some space or choose another location"
        )


def _size_of(path: Path) -> int:
    """Bytes a file, or every file under a folder, holds (0 for what is gone)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return 0


def write_bytes(path: str | Path, data: bytes) -> None:
    """`data` into a new file at `path`, fsync'd (a checkpoint's part); a full disk is a `DiskFull`."""
    path = guard(path, follow=False)
    try:
        with Path(path).open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        if is_disk_full(err):
            raise DiskFull(path, len(data)) from None
        raise


def read_parquet(path: str | Path) -> Any:
    """A Parquet table as a DataFrame; a missing, cut or corrupt file is one line naming it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a readable Parquet table ({first}); cut short or damaged") from None


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


def check_recorded(directory: Path, record: str, names: Sequence[str], fix: str) -> None:
    """Refuse a file of `directory` whose sha256 differs from the one its record file (a data
    directory's manifest.json) lists under `files`; a directory without that record (a table a user
    wrote) has nothing to check. Hashes are taken once per process (`file_digest`)."""
    if not (directory / record).is_file():
        return
    try:
        recorded = read_json(directory / record).get("files", {})
    except (DataError, ValueError, AttributeError):
        raise DataError(f"{directory / record}: not readable; {fix}") from None
    for name in names:
        want = recorded.get(name) if isinstance(recorded, dict) else None
        if want is not None and (directory / name).is_file() and file_digest(directory / name) != want:
            raise DataError(
                f"{directory / name}: differs from the sha256 its {record} recorded (edited after it was "
                f"written?); {fix}, or restore the file"
            )


def input_hashes(**specs: str | None) -> dict[str, str]:
    """sha256 of each input that is a local file (a table spec's `?filters` dropped; a data directory
    stands for its qa.jsonl), so a run record names the exact data it saw, not only its path."""
    found = {}
    for name, spec in specs.items():
        if not spec:
            continue
        path = Path(str(spec).split("?", 1)[0])
        if path.is_dir() and (path / "qa.jsonl").is_file():
            path = path / "qa.jsonl"
        if path.is_file():
            found[name] = sha256_file(path)
    return found


@functools.cache
def code_commit() -> str:
    """`git describe --always` of the checkout this package runs from, when a checkout tracks it (an
    installed copy may sit inside someone else's repository, which names nothing of ours), with
    `-dirty` when the package's code or the configs differ from that commit: other files (results
    being written, notes) do not make the numbers. Read once per process (`frequnlearn.cli.main`
    reads it first): the code a long run imported is the checkout's at its start, whatever is
    committed while it runs."""
    import subprocess

    here = Path(__file__).parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)

    try:
        tracked = git("ls-files", "--error-unmatch", Path(__file__).name).returncode == 0
        commit = git("describe", "--always").stdout.strip() if tracked else ""
        if commit:
            top = Path(git("rev-parse", "--show-toplevel").stdout.strip())
            changed = git("status", "--porcelain", "--", str(here), str(top / "configs")).stdout.strip()
            commit += "-dirty" if changed else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or "unknown (not a git checkout)"


# The arguments `frequnlearn.cli.main` was given, while it runs them: a command run from Python
# (`main([...])`, as tests and notebooks do) records its own arguments, not its host's `sys.argv`.
_COMMAND_ARGS: list[str] | None = None


@contextlib.contextmanager
def running_command(argv: list[str] | None) -> Iterator[None]:
    """Within this block `command_line()` spells `frequnlearn ARGV...` (`None`: the process's own)."""
    global _COMMAND_ARGS
    before, _COMMAND_ARGS = _COMMAND_ARGS, None if argv is None else list(argv)
    try:
        yield
    finally:
        _COMMAND_ARGS = before


def command_line() -> str:
    """The command this process runs, as a user would type it."""
    import shlex

    args = sys.argv[1:] if _COMMAND_ARGS is None else _COMMAND_ARGS
    return " ".join(["frequnlearn", *(shlex.quote(a) for a in args)])


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

        hardware["torch_threads"] = torch.get_num_threads()  # summation order, and near-tied ranks with it
        hardware["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    cfg = config
    if dataclasses.is_dataclass(config):
        cfg = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {"config": cfg, "seed": seed, "versions": versions, "hardware": hardware}


# ---------------------------------------------------------------- stage completion
# One kind of "done" marker for every stage: a stage's output directory is complete for a key (a hash
# of its own config and its inputs' keys) when its marker names that key and every output file it
# recorded (size and sha256, taken when the stage wrote them) is still there, whole and unchanged.
STAGE_FILE = ".stage.json"
OUTPUTS = "outputs"  # the marker's field: {file name: {"size": bytes, "sha256": hex}}

# sha256 of files this process hashed, by (path, device, inode, size, mtime, ctime): a file's ctime
# changes with every write and cannot be set back, so an entry stays true for the bytes it hashed.
_DIGESTS: dict[tuple[Any, ...], str] = {}
_SAID: set[str] = set()


def file_digest(path: str | Path) -> str:
    """sha256 of a file, hashed once per process for the same bytes (see `_DIGESTS`)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def stage_key(*parts: Any) -> str:
    """Stable short hash of configs (dataclasses) and other JSON-able inputs: a stage's key."""
    plain = [
        json.loads(json.dumps(dataclasses.asdict(p), default=str)) if dataclasses.is_dataclass(p) else p
        for p in parts
    ]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_done(path: Path, key: str) -> bool:
    """Whether `path` holds a stage's complete output for `key` (an in-progress record is not done, nor
    one whose recorded outputs are missing, cut or changed: that stage runs again, saying why)."""
    record = stage_record(path)
    if record.get("key") != key or record.get("in_progress"):
        return False
    why = outputs_changed(path, record)
    if why is not None:
        say_once(f"{path}: {why}; running its stage again")
        return False
    return True


def stage_record(path: Path) -> dict[str, Any]:
    """The done marker of `path` as a dict ({} when there is none or it cannot be read)."""
    marker = Path(path) / STAGE_FILE
    if not marker.is_file():
        return {}
    try:
        record = read_json(marker)
    except (DataError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def outputs_changed(path: Path, record: dict[str, Any]) -> str | None:
    """Why the outputs a done marker `record` names are not as the stage wrote them, or None.

    Only the files the marker names are hashed (a big model directory is read once per process)."""
    outputs = record.get(OUTPUTS)
    if not isinstance(outputs, dict):
        return "its done marker records no sizes or hashes of its outputs (an earlier version wrote it)"
    for name, want in sorted(outputs.items()):
        file = Path(path) / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not isinstance(want, dict):
            return f"its done marker names {name!r}, which is not one of its files"
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != want.get("size"):
            return f"{name} holds {size} bytes, {want.get('size')} when it was written (cut short or changed)"
        if file_digest(file) != want.get("sha256"):
            return f"{name} changed since it was written (its sha256 differs)"
    return None


def check_outputs(path: Path) -> str | None:
    """Why a directory's outputs are not what its done marker recorded (None: as written, or nothing
    recorded to check: no marker, or one of an earlier version). For readers; `stage_done` is stricter."""
    record = stage_record(path)
    return outputs_changed(path, record) if OUTPUTS in record else None


def say_once(line: str) -> None:
    """A notice on stderr, printed once per process however often the check that finds it runs."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr)


def _own_files(path: Path) -> list[str]:
    """The plain files directly in `path` that are outputs (hidden markers and temps are not)."""
    return sorted(p.name for p in path.iterdir() if p.is_file() and not p.is_symlink() and p.name[0] != ".")


def mark_done(
    path: Path, key: str, info: dict[str, Any] | None = None, files: Sequence[str] | None = None
) -> None:
    """Write the done marker: `key`, `info`, and the size and sha256 of `files` (default: every plain
    file directly in `path`), which `stage_done` checks before it trusts them."""
    path = Path(path)
    names = sorted(files) if files is not None else _own_files(path)
    outputs = {n: {"size": (path / n).stat().st_size, "sha256": file_digest(path / n)} for n in names}
    write_json(path / STAGE_FILE, {"key": key, **(info or {}), OUTPUTS: outputs})


def clear_if_stale(path: Path, key: str) -> None:
    """Before a resumable stage (pretraining) runs into `path`: a directory whose stage record names
    another key is removed (only if it is this tool's, inside its parent), then the record says `key`
    is in progress, so a run cut short resumes only for the same key. The outputs a record of the same
    key named stay named, so a finished run is still checked against them."""
    record = stage_record(path)
    if path.exists() and record and record.get("key") != key:
        remove_own(path, path.parent)
        record = {}
    path.mkdir(parents=True, exist_ok=True)
    kept = {OUTPUTS: record[OUTPUTS]} if OUTPUTS in record else {}
    write_json(path / STAGE_FILE, {"key": key, "in_progress": True, **kept})
