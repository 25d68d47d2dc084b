"""Reading a counting corpus: JSONL, one document per line, its text in `text`, optionally a `kind`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from frequnlearn.errors import DataError


def corpus_path(corpus: str | Path | None) -> Path:
    if corpus is None:
        raise DataError("count.corpus: this backend counts in a corpus; pass --corpus corpus.jsonl")
    path = Path(corpus).expanduser()
    if not path.is_file():
        raise DataError(f"--corpus {corpus}: file not found")
    return path


def iter_texts(path: Path, kinds: Sequence[str] = ()) -> Iterator[str]:
    """Texts of the documents to count, in file order; `kinds` keeps only documents of those kinds."""
    wanted = set(kinds)
    kept = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            text = doc.get("text") if isinstance(doc, dict) else None
            if not isinstance(text, str):
                raise DataError(
                    f"{path}:{lineno}: no 'text' string; a corpus holds one JSON object per line with its text in 'text'"
                )
            if wanted:
                kind = doc.get("kind")
                if kind is None:
                    raise DataError(
                        f"{path}:{lineno}: no 'kind' field, but count.kinds={sorted(wanted)} filters on it; "
                        "remove kinds or add a kind to every document"
                    )
                if kind not in wanted:
                    continue
            kept += 1
            yield text
    if kept == 0:
        which = f" of kinds {sorted(wanted)}" if wanted else ""
        raise DataError(f"{path}: no documents{which} to count")
