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
import math
import os
import platform
import re
import shutil
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
    with Path(path).open("a") as fh:
        fh.write(dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


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
    """Yield a temp directory that becomes `path` only if the block finishes (`path` must not exist,
    unless `overwrite`: then the old directory is replaced whole; only for directories the caller owns).

    Missing parent directories are created (the output rule protects existing files, not absent paths).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_dir(path.parent, path.name)
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).unlink(missing_ok=True)
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
    path = Path(path)
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
        if path.is_dir():
            raise DataError(f"{flag} {first}: {path} is a directory; name a file")
    _probe_writable(_existing_ancestor(first, flag), flag, first)
    existing = [p for p in map(Path, paths) if p.exists()]
    if existing and not owned and not overwrite:
        raise DataError(
            f"{flag} {first}: {existing[0]} exists and was not written by this tool; choose another "
            "name, or add --overwrite to replace it"
        )
    if is_main_process():
        for path in paths:
            remove_stale_temps(Path(path))


def claim_output_dir(path: str | Path, kind: str) -> Path:
    """Create `path` if needed and mark it as this kind's output, so a rerun knows it may write there.

    Another kind's directory (written into with --overwrite) keeps its own mark.
    """
    path = Path(path)
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


def _scratch_dir(parent: Path, name: str, kind: str = "scratch") -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make shared results unreadable to others
    write_json(tmp / OUTPUT_MARKER, {"kind": kind})  # lets a rerun know this leftover is its own
    return tmp


@contextlib.contextmanager
def output_set(
    dest: str | Path,
    names: Sequence[str],
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
    set). A new directory `dest` of `kind` is made by one rename. Other files in `dest` are kept.
    Without `commit` (a process other than the main one) the scratch directory is only removed.
    """
    dest = Path(dest)
    tmp = _scratch_dir(dest.parent if kind else dest, prefix or dest.name, kind or "scratch")
    try:
        yield tmp
        if not commit:
            return
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


def code_commit() -> str:
    """`git describe --always` of the checkout this package runs from, when a checkout tracks it (an
    installed copy may sit inside someone else's repository, which names nothing of ours), with
    `-dirty` when the package's code or the configs differ from that commit: other files (results
    being written, notes) do not make the numbers."""
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


def command_line() -> str:
    """The command this process runs, as a user would type it."""
    import sys

    return " ".join(["frequnlearn" if i == 0 else a for i, a in enumerate(sys.argv)])


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
# of its own config and its inputs' keys) when its marker names that key.
STAGE_FILE = ".stage.json"


def stage_key(*parts: Any) -> str:
    from frequnlearn.config.base import config_hash

    return config_hash(*parts)


def stage_done(path: Path, key: str) -> bool:
    """Whether `path` holds a stage's complete output for `key` (an in-progress record is not done)."""
    record = _stage_record(path)
    return record.get("key") == key and not record.get("in_progress")


def _stage_record(path: Path) -> dict[str, Any]:
    marker = path / STAGE_FILE
    if not marker.is_file():
        return {}
    try:
        record = read_json(marker)
    except (DataError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def mark_done(path: Path, key: str, info: dict[str, Any] | None = None) -> None:
    write_json(path / STAGE_FILE, {"key": key, **(info or {})})


def clear_if_stale(path: Path, key: str) -> None:
    """Before a resumable stage (pretraining) runs into `path`: a directory whose stage record names
    another key is removed, then the record says `key` is in progress, so a run cut short resumes
    only for the same key."""
    record = _stage_record(path)
    if path.exists() and record and record.get("key") != key:
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / STAGE_FILE, {"key": key, "in_progress": True})


# ---------------------------------------------------------------- claims: several workers, one run
CLAIMS_DIR = ".claims"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claim(run_dir: Path, name: str) -> Iterator[bool]:
    """Yield True when this process holds `name` in `run_dir` (created atomically, so of several
    processes of one study exactly one runs each stage), False when another live process holds it.
    A claim left by a process that died is taken over; the claim is released on exit."""
    claims = Path(run_dir) / CLAIMS_DIR
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".json")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                record = json.loads(path.read_text())
                holder, host = int(record.get("pid", 0)), record.get("host")
            except (OSError, ValueError, json.JSONDecodeError, AttributeError):
                holder, host = 0, None  # being written this instant, or torn: held unless it stays so
                if _age_seconds(path) < 60:
                    yield False
                    return
            # A process of another machine (a shared run directory) cannot be checked: it holds.
            if holder and (host != platform.node() or _alive(holder)):
                yield False
                return
            path.unlink(missing_ok=True)  # its process died: the stage is free again
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "host": platform.node()}))
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def _age_seconds(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return math.inf
