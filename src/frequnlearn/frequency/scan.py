"""A plain scan of the corpus in memory: no index, exact substring matches on UTF-8 bytes.

It is the reference the infini-gram backend is checked against and the baseline its benchmark
compares with; on small corpora it is also a backend in its own right (`backend: scan`). It lays the
documents out exactly as a byte-level index does, so both report the same offsets for the same match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from frequnlearn.frequency.base import PositionCounter, register_backend
from frequnlearn.frequency.corpus import corpus_path, iter_texts

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from frequnlearn.config.count import CountConfig

SEP = b"\xff"  # never occurs in UTF-8


class ScanCounter(PositionCounter):
    width = 1

    def __init__(
        self,
        texts: Iterable[str],
        measure: str = "window",
        variants: Sequence[str] = ("original",),
        max_diff_tokens: int | None = None,
    ) -> None:
        super().__init__(measure, variants, max_diff_tokens)
        starts: list[int] = []
        chunks: list[bytes] = []
        offset = 0
        for text in texts:
            data = SEP + text.encode("utf-8")
            starts.append(offset)
            chunks.append(data)
            offset += len(data)
        self.data = b"".join(chunks)
        self.doc_starts = np.asarray(starts, dtype=np.int64)
        self.data_size = len(self.data)

    def forms(self, text: str) -> list[bytes]:
        return [text.encode("utf-8")]

    def form_positions(self, form: bytes) -> np.ndarray:
        found: list[int] = []
        find = self.data.find
        i = find(form)
        while i != -1:
            found.append(i)
            i = find(form, i + 1)
        return np.asarray(found, dtype=np.int64)

    def info(self) -> dict:
        return {"documents": len(self.doc_starts), "bytes": self.data_size}


@register_backend("scan")
def _make(cfg: CountConfig) -> ScanCounter:
    path = corpus_path(cfg.corpus)
    return ScanCounter(iter_texts(path, cfg.kinds), cfg.measure, cfg.case_variants, cfg.max_diff_tokens)
