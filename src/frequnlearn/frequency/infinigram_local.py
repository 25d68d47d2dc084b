"""Counting through a local infini-gram index built from any JSONL corpus, cached on disk and reused.

The index is infini-gram's v4 layout (`tokenized.0`, `offset.0`, `table.0`): a byte-level (`u8`)
index when no tokenizer is named, else one over a tokenizer's ids (`u16`, or `u32` for vocabularies
of 65,535 and more). We write the token and offset files ourselves (the package's own tokenizing
step only knows a few hub tokenizers) and call the package's suffix-array builder on them, so one
code path serves both. Matches are found by the engine's suffix-array search (`find`); the match
offsets are then read from the suffix array on disk, which gives exact window and document counts.

What infini-gram 2.6.0 does on a small CPU machine, handled here rather than left to the user:
- it needs numpy and transformers even for a byte-level index: checked up front, with an install hint;
- its indexer raises the open-file limit to `--ulimit` (default 1,048,576), which an unprivileged
  process may not do: we pass the hard limit the process already has;
- with more than one CPU, a corpus under ~100 KB per CPU silently yields a corrupt suffix array (zero
  counts, or a segfault on the first query): every part must hold at least `MIN_PART_BYTES`, so a
  small corpus is indexed with one CPU, and every new index is checked in a child process before it
  is published;
- a `u8` engine must be opened with `vocab_size=255` (and an end-of-text id below it);
- `count_cnf` (the engine's `A AND B`) drops a match when the nearest occurrences of the other term
  on both sides fall in the window and one of them lies in another document, so on short documents
  it undercounts more as the window grows: we compute the window count from the match offsets instead;
- both the indexer and the engine find their files by substring of the full path (the indexer names
  the suffix array by replacing "tokenized" anywhere in the path, the engine sorts files by whether
  the path contains "tokenized", "table", "offset", ...), and the indexer passes paths to a shell
  unquoted: a cache under e.g. `~/timetables/` or a path with a space breaks them, so both only ever
  see the index through a symlink in a fresh temporary directory whose path is checked;
- its builder allocates a table over the whole id range of a `u32` index (32 GiB), so a tokenizer
  of 65,535 ids or more is refused up front on a machine with less memory;
- with a byte-level BPE, a name at the start of a document and the same name after a space are
  different token sequences: a string is looked up in both forms.
A byte-level index matches substrings exactly ("Ann" inside "Annabelle"); a tokenized one matches
token sequences, so it respects the tokenizer's word boundaries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frequnlearn.errors import DataError
from frequnlearn.frequency.base import PositionCounter, register_backend
from frequnlearn.frequency.corpus import corpus_path, iter_texts
from frequnlearn.records import atomic_dir, sha256_file, write_json

if TYPE_CHECKING:
    from frequnlearn.config.count import CountConfig

INDEX_FORMAT = 1
# infini-gram's indexer lets each suffix-array part overlap the next by this many bytes; parts not
# clearly longer than that come out corrupt.
HACK_BYTES = 100_000
MIN_PART_BYTES = 2 * HACK_BYTES
U8_EOS = 254  # any id below the u8 engine's vocab_size of 255; never a byte of UTF-8
DTYPES = {"u8": (1, np.uint8), "u16": (2, np.uint16), "u32": (4, np.uint32)}
# Substrings by which infini-gram tells its files apart anywhere in a path.
_FILE_WORDS = ("tokenized", "table", "offset", "metadata", "metaoff", "unigram")


@contextlib.contextmanager
def _alias(path: Path) -> Iterator[Path]:
    """A symlink to `path` whose own path infini-gram cannot misread (see the module docstring)."""
    for _ in range(10):
        root = Path(tempfile.mkdtemp(prefix="fq-ig-"))
        link = root / "ix"
        text = str(link)
        if not any(w in text for w in _FILE_WORDS) and not any(c.isspace() for c in text):
            break
        shutil.rmtree(root)
    else:
        raise DataError(
            f"temporary directory {tempfile.gettempdir()!r} holds a space or one of {', '.join(_FILE_WORDS)}, "
            "which infini-gram misreads in paths; set TMPDIR to a plain path such as /tmp"
        )
    try:
        link.symlink_to(path.resolve(), target_is_directory=True)
        yield link
    finally:
        shutil.rmtree(root, ignore_errors=True)


def require_packages() -> None:
    import importlib.util

    missing = [p for p in ("infini_gram", "numpy", "transformers") if importlib.util.find_spec(p) is None]
    if missing:
        raise DataError(
            f"count.backend=infinigram-local needs {', '.join(missing)}; "
            "install them with: pip install 'frequnlearn[count]'"
        )


def _infini_gram_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("infini-gram")
    except metadata.PackageNotFoundError:  # pragma: no cover - require_packages ran first
        return "unknown"


class Tokens:
    """How texts become token ids for an index: raw UTF-8 bytes, or a tokenizer's ids."""

    def __init__(self, tokenizer: str | None = None) -> None:
        self.name = tokenizer
        if tokenizer is None:
            self.tok = None
            self.dtype, self.eos, self.vocab_size = "u8", U8_EOS, 255
            self.fingerprint = "bytes"
            return
        from frequnlearn.models.loading import load_tokenizer

        self.tok = load_tokenizer(tokenizer)
        vocab = len(self.tok)
        self.dtype = "u16" if vocab < 2**16 - 1 else "u32"
        self.eos = self.tok.eos_token_id if self.tok.eos_token_id is not None else 0
        self.vocab_size = vocab
        backend = getattr(self.tok, "backend_tokenizer", None)
        spec = backend.to_str() if backend is not None else json.dumps(sorted(self.tok.get_vocab().items()))
        self.fingerprint = hashlib.sha256(spec.encode()).hexdigest()

    @property
    def width(self) -> int:
        return DTYPES[self.dtype][0]

    def encode_batch(self, texts: list[str]) -> list[bytes]:
        if self.tok is None:
            return [t.encode("utf-8") for t in texts]
        np_dtype = DTYPES[self.dtype][1]
        ids = self.tok(texts, add_special_tokens=False)["input_ids"]
        return [np.asarray(x, dtype=np_dtype).tobytes() for x in ids]

    def forms(self, text: str) -> list[list[int]]:
        """Token sequences `text` can take in running text; the shortest cover every match."""
        if self.tok is None:
            return [list(text.encode("utf-8"))]
        cands: list[list[int]] = []
        for variant in (text, " " + text):
            ids = self.tok.encode(variant, add_special_tokens=False)
            if ids and ids not in cands:
                cands.append(ids)
        if not cands:
            raise DataError(f"{text!r}: the tokenizer turns it into no tokens; it cannot be counted")

        def contains(big: list[int], small: list[int]) -> bool:
            n = len(small)
            return big != small and any(big[i : i + n] == small for i in range(len(big) - n + 1))

        # A form that contains another would count the same match twice.
        return [c for c in cands if not any(contains(c, o) for o in cands)]


def index_key(corpus: Path, kinds: Sequence[str], tokens: Tokens) -> str:
    blob = json.dumps(
        {
            "format": INDEX_FORMAT,
            "corpus": sha256_file(corpus),
            "kinds": sorted(kinds),
            "tokens": tokens.fingerprint,
            "dtype": tokens.dtype,
            "infini_gram": _infini_gram_version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def safe_cpus(n_bytes: int, width: int, requested: int | None, mem_gb: int) -> int:
    """CPUs for the suffix-array build such that no part is small enough to come out corrupt."""
    requested = requested or os.cpu_count() or 1
    # Mirrors indexing.py: the data is split into batches that fit in memory, each into `cpus` parts.
    batches = 1
    while batches * (mem_gb * 1024**3 // (12 if width == 1 else 8)) < n_bytes:
        batches *= 2
    return max(1, min(requested, n_bytes // (batches * MIN_PART_BYTES)))


def _write_tokens(corpus: Path, kinds: Sequence[str], tokens: Tokens, out: Path) -> tuple[int, int]:
    sep = b"\xff" * tokens.width
    n_docs = 0
    offset = 0
    batch: list[str] = []
    with (out / "tokenized.0").open("wb") as ds, (out / "offset.0").open("wb") as od:

        def flush() -> None:
            nonlocal n_docs, offset
            for data in tokens.encode_batch(batch):
                od.write(np.array([offset], dtype=np.uint64).tobytes())
                ds.write(sep)
                ds.write(data)
                offset += len(sep) + len(data)
                n_docs += 1
            batch.clear()

        for text in iter_texts(corpus, kinds):
            batch.append(text)
            if len(batch) >= 1024:
                flush()
        flush()
    return n_docs, offset


U32_BUILD_BYTES = 2**32 * 8


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _last_message(text: str) -> str:
    """The last line of a failed build worth showing (progress bars and a bare "Aborted" left out)."""
    lines = [
        ln.strip()
        for ln in text.replace("\r", "\n").splitlines()
        if ln.strip() and "%|" not in ln and not ln.strip().startswith("Aborted")
    ]
    return lines[-1] if lines else "no output"


def _open_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if hard == resource.RLIM_INFINITY else hard


def build_index(
    corpus: str | Path,
    cache_dir: str | Path,
    kinds: Sequence[str] = (),
    tokenizer: str | None = None,
    cpus: int | None = None,
    mem_gb: int = 4,
    tokens: Tokens | None = None,
) -> Path:
    """Index `corpus` under `cache_dir/infinigram/<key>` unless an index for the same input exists.

    The key hashes the corpus bytes, the kinds kept, the tokenizer and the package version. The index
    is built in a temporary directory, checked, and renamed into place, so a killed build leaves
    nothing that a later run would take for an index.
    """
    require_packages()
    corpus = corpus_path(corpus)
    tokens = tokens or Tokens(tokenizer)
    root = Path(cache_dir).expanduser() / "infinigram"
    final = root / index_key(corpus, kinds, tokens)
    if (final / "meta.json").is_file():
        return final
    if tokens.dtype == "u32" and _physical_memory() < U32_BUILD_BYTES:
        raise DataError(
            f"count.tokenizer: {tokens.name} has {tokens.vocab_size} ids, which needs a u32 index; "
            f"infini-gram's builder then allocates {U32_BUILD_BYTES / 2**30:.0f} GiB, more than this machine has; "
            "count in a byte-level index instead (tokenizer: null)"
        )
    root.mkdir(parents=True, exist_ok=True)
    if sys.stderr.isatty():
        size = corpus.stat().st_size / 1e6
        print(f"indexing {corpus} ({size:.0f} MB) with infini-gram into {final}", file=sys.stderr)
    start = time.perf_counter()
    with atomic_dir(final) as tmp:
        n_docs, n_bytes = _write_tokens(corpus, kinds, tokens, tmp)
        prepared = time.perf_counter()
        used = safe_cpus(n_bytes, tokens.width, cpus, mem_gb)
        with _alias(tmp) as alias:
            cmd = [
                sys.executable, "-m", "infini_gram.indexing",
                "--data_dir", str(alias), "--save_dir", str(alias),
                "--token_dtype", tokens.dtype, "--version", "4",
                "--cpus", str(used), "--mem", str(mem_gb), "--ulimit", str(_open_limit()),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / "table.0").is_file():
            why = _last_message(proc.stderr) if proc.stderr.strip() else _last_message(proc.stdout)
            raise DataError(f"infini-gram indexing of {corpus} failed (exit {proc.returncode}): {why}")
        meta = {
            "format": INDEX_FORMAT,
            "corpus": str(corpus),
            "kinds": sorted(kinds),
            "tokenizer": tokens.name,
            "token_dtype": tokens.dtype,
            "eos_token_id": tokens.eos,
            "vocab_size": tokens.vocab_size,
            "documents": n_docs,
            "bytes": n_bytes,
            "cpus": used,
            "prepare_seconds": round(prepared - start, 3),
            "suffix_array_seconds": round(time.perf_counter() - prepared, 3),
            "infini_gram": _infini_gram_version(),
        }
        write_json(tmp / "meta.json", meta)
        _check_in_child(tmp)
    return final


def _check_in_child(index_dir: Path) -> None:
    """Run `verify_index` in a child process: a corrupt index may crash the engine, not just miscount."""
    code = "import sys; from frequnlearn.frequency.infinigram_local import verify_index; verify_index(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(index_dir)], capture_output=True, text=True)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"the engine crashed (signal {-proc.returncode})"])[-1]
        raise DataError(f"infini-gram built a corrupt index for {index_dir.name}: {why}")


class _Index:
    """An opened index: the engine for searching and the suffix array for match offsets."""

    def __init__(self, path: Path) -> None:
        from infini_gram.engine import InfiniGramEngine

        self.path = path
        self.meta = json.loads((path / "meta.json").read_text())
        dtype = self.meta["token_dtype"]
        self.width = DTYPES[dtype][0]
        with _alias(path) as alias:  # the engine lists and maps its files here, then needs no path
            self.engine = InfiniGramEngine(
                index_dir=str(alias),
                eos_token_id=int(self.meta["eos_token_id"]),
                vocab_size=int(self.meta["vocab_size"]),
                token_dtype=dtype,
                version=4,
            )
        self.data = np.memmap(path / "tokenized.0", dtype=np.uint8, mode="r")
        self.table = np.memmap(path / "table.0", dtype=np.uint8, mode="r")
        self.data_size = int(self.data.shape[0])
        n_tokens = self.data_size // self.width
        self.ptr_size = int(self.table.shape[0]) // n_tokens
        if self.ptr_size * n_tokens != self.table.shape[0] or not 1 <= self.ptr_size <= 8:
            raise DataError(
                f"{path}: suffix array size does not match the data; delete the directory to rebuild"
            )
        self.doc_starts = np.fromfile(path / "offset.0", dtype=np.uint64).astype(np.int64)

    def segment(self, ids: list[int]) -> tuple[int, int]:
        found = self.engine.find(input_ids=ids)
        if "error" in found:
            raise DataError(f"infini-gram: {found['error']}")
        (lo, hi), *_ = found["segment_by_shard"]
        return int(lo), int(hi)

    def offsets(self, lo: int, hi: int) -> np.ndarray:
        """Data offsets of suffix-array ranks [lo, hi), sorted."""
        raw = np.asarray(self.table[lo * self.ptr_size : hi * self.ptr_size]).reshape(-1, self.ptr_size)
        wide = np.zeros((raw.shape[0], 8), dtype=np.uint8)
        wide[:, : self.ptr_size] = raw
        return np.sort(wide.view("<u8").ravel().astype(np.int64))


def verify_index(index_dir: str | Path, samples: int = 64) -> None:
    """Raise unless sampled n-grams of the data are found by the engine exactly where they are.

    Each sample is a short token sequence at a random data position; its suffix-array range must be
    non-empty, contain that position, and every offset in it must start with the same tokens.
    """
    index = _Index(Path(index_dir))
    w = index.width
    rng = np.random.default_rng(0)
    ends = np.append(index.doc_starts[1:], index.data_size)
    docs = rng.integers(0, len(index.doc_starts), size=samples)
    for d in docs:
        start, end = int(index.doc_starts[d]) + w, int(ends[d])
        if end <= start:
            continue
        pos = start + w * int(rng.integers(0, (end - start) // w))
        n = min(8 * w, end - pos)
        needle = bytes(index.data[pos : pos + n])
        ids = np.frombuffer(needle, dtype=DTYPES[index.meta["token_dtype"]][1]).tolist()
        lo, hi = index.segment(ids)
        offs = index.offsets(lo, min(hi, lo + 1000))
        if hi <= lo or (hi - lo <= 1000 and pos not in set(offs.tolist())):
            raise DataError(f"sampled n-gram at offset {pos} is missing from the suffix array")
        if any(bytes(index.data[o : o + n]) != needle for o in offs.tolist()):
            raise DataError(f"suffix array range of the n-gram at offset {pos} holds other n-grams")


class LocalIndexCounter(PositionCounter):
    def __init__(
        self,
        index_dir: Path,
        tokens: Tokens,
        measure: str,
        variants: Sequence[str],
        max_diff_tokens: int | None,
    ):
        super().__init__(measure, variants, max_diff_tokens)
        self.index = _Index(index_dir)
        self.tokens = tokens
        self.width = self.index.width
        self.doc_starts = self.index.doc_starts
        self.data_size = self.index.data_size

    def forms(self, text: str) -> list[list[int]]:
        return self.tokens.forms(text)

    def form_positions(self, form: list[int]) -> np.ndarray:
        lo, hi = self.index.segment(form)
        return self.index.offsets(lo, hi)

    def info(self) -> dict[str, Any]:
        return {"index": str(self.index.path), **self.index.meta}

    def close(self) -> None:
        super().close()
        del self.index


@register_backend("infinigram-local")
def _make(cfg: CountConfig) -> LocalIndexCounter:
    tokens = Tokens(cfg.tokenizer)
    path = build_index(cfg.corpus, cfg.cache_dir, cfg.kinds, cpus=cfg.cpus, mem_gb=cfg.mem_gb, tokens=tokens)
    return LocalIndexCounter(path, tokens, cfg.measure, cfg.case_variants, cfg.max_diff_tokens)
