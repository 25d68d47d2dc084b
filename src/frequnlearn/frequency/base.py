"""One counting interface for every backend, and the decorator with which a backend registers its name.

A backend answers one question per QA item: how often does this piece of knowledge occur?
`TextCounter` turns an item into string queries (subject, answer and their case variants) and leaves
three primitives to each backend; `PositionCounter` implements those primitives once, from the sorted
byte offsets of every match in a corpus laid out like an infini-gram index, so that the suffix-array
index and the plain scan share one definition of "window" and "document" and can only differ in
how they find matches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from frequnlearn import names, progress
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.records import QAItem

if TYPE_CHECKING:
    from frequnlearn.config.count import CountConfig

BackendFactory = Callable[["CountConfig"], "Counter"]
# Filled by `register_backend` as each backend module is imported; `frequency.registry` imports them
# all and is where names are looked up (this module imports no backend).
BACKENDS: dict[str, BackendFactory] = names.table(names.COUNT_BACKEND)


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register `factory(cfg) -> Counter` under `name` (the value of `count.backend`)."""

    def deco(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory

    return deco


class Counter(ABC):
    """Counts for QA items, in item order."""

    @abstractmethod
    def count(self, items: Sequence[QAItem]) -> list[int]: ...

    def info(self) -> dict[str, Any]:
        """What the run file records about this backend (index, cache, approximations)."""
        return {}

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release files and connections; counting after close is not supported."""

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def case_variants(text: str, names: Sequence[str]) -> list[str]:
    """Distinct spellings of `text`, in the order of `names` (duplicates such as lower == original drop)."""
    spell = {
        "original": text,
        "lower": text.lower(),
        "upper": text.upper(),
        "title": text.title(),
        "first_upper": text[:1].upper() + text[1:],
    }
    out: list[str] = []
    for name in names:
        if spell[name] not in out:
            out.append(spell[name])
    return out


def item_terms(item: QAItem) -> tuple[str, str]:
    """(subject, object) of an item; the object falls back to the answer, as the data contract says."""
    subject = (item.subject or "").strip()
    obj = (item.object or item.answer or "").strip()
    if not subject:
        raise DataError(
            f"item {item.item_id}: no subject to count; give the table a 'subject' column "
            "(the entity the question is about, e.g. the person's full name)"
        )
    if not obj:
        raise DataError(f"item {item.item_id}: empty answer; give it an 'object' or 'answer'")
    return subject, obj


# The window when `max_diff_tokens` is null, per unit. In bytes it must span a whole generated
# biography (the farthest value starts about 350 bytes after the name): at 100 bytes the employer of
# a six-sentence biography was counted for 1 person in 300.
DEFAULT_WINDOW = {"tokens": 100, "bytes": 1000}


class TextCounter(Counter):
    """Counts built from string queries; backends supply occurrences, windows and documents.

    Case variants are applied to subject and object alike. `subject`/`object` and `window` sum over
    the distinct variants (the paper summed its counts over capitalisations); `document` counts each
    document once however many variants it holds. `window_unit` names what `max_diff_tokens` counts:
    "tokens" of a token index, or "bytes" of a byte-level one.
    """

    window_unit = "tokens"

    def __init__(self, measure: str, variants: Sequence[str], max_diff_tokens: int | None) -> None:
        self.measure = measure
        self.variants = list(variants)
        self._max_diff = max_diff_tokens

    @property
    def max_diff_tokens(self) -> int:
        """The window in `window_unit`s (the unit's default when none was configured)."""
        return self._max_diff if self._max_diff is not None else DEFAULT_WINDOW[self.window_unit]

    def window_info(self) -> dict[str, Any]:
        return {"max_diff": self.max_diff_tokens, "window_unit": self.window_unit}

    @abstractmethod
    def occurrences(self, text: str) -> int:
        """Occurrences of `text` (overlapping ones included, as a suffix array counts them)."""

    @abstractmethod
    def window(self, a: str, b: str, max_diff_tokens: int) -> int:
        """Co-occurrences of `a` and `b` whose starts lie at most `max_diff_tokens` apart in one document."""

    def documents(self, a: Sequence[str], b: Sequence[str]) -> int:
        """Documents that contain some string of `a` and some string of `b`."""
        raise ConfigError(f"count.measure: {type(self).__name__} cannot count documents; use window")

    def count(self, items: Sequence[QAItem]) -> list[int]:
        return [
            self.count_item(item) for item in progress.track(items, f"count ({self.measure})", unit="item")
        ]

    def count_item(self, item: QAItem) -> int:
        subject, obj = item_terms(item)
        if self.measure == "subject":
            return sum(self.occurrences(v) for v in case_variants(subject, self.variants))
        if self.measure == "object":
            return sum(self.occurrences(v) for v in case_variants(obj, self.variants))
        if self.measure == "document":
            return self.documents(case_variants(subject, self.variants), case_variants(obj, self.variants))
        pairs: list[tuple[str, str]] = []
        for name in self.variants:
            pair = (case_variants(subject, [name])[0], case_variants(obj, [name])[0])
            if pair not in pairs:
                pairs.append(pair)
        return sum(self.window(a, b, self.max_diff_tokens) for a, b in pairs)


class PositionCounter(TextCounter):
    """Window and document counts from match positions in a corpus laid out as infini-gram lays it out.

    The layout is one byte string: for each document a separator token (all bits set, `width` bytes)
    followed by its tokens, `width` bytes each (1 for raw UTF-8 bytes). `doc_starts[i]` is the offset of
    document i's separator. Subclasses provide `forms` (the token sequences a string may take) and
    `form_positions` (sorted start offsets of one form).
    """

    doc_starts: np.ndarray
    data_size: int
    width: int

    @property
    def window_unit(self) -> str:  # type: ignore[override]
        return "bytes" if self.width == 1 else "tokens"

    def __init__(
        self, measure: str, variants: Sequence[str], max_diff_tokens: int | None, cache_size: int = 4096
    ):
        super().__init__(measure, variants, max_diff_tokens)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @abstractmethod
    def forms(self, text: str) -> list[Any]: ...

    @abstractmethod
    def form_positions(self, form: Any) -> np.ndarray: ...

    def positions(self, text: str) -> np.ndarray:
        """Sorted start offsets of every match of `text` in any of its forms (cached: values repeat)."""
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        if not text:
            raise DataError("an empty string cannot be counted; check the item's subject and answer")
        parts = [self.form_positions(f) for f in self.forms(text)]
        pos = np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]
        self._cache[text] = pos
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pos

    def close(self) -> None:
        self._cache.clear()

    def doc_of(self, pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.doc_starts, pos, side="right") - 1

    def occurrences(self, text: str) -> int:
        return int(len(self.positions(text)))

    def _docs(self, texts: Sequence[str]) -> np.ndarray:
        return np.unique(np.concatenate([self.doc_of(self.positions(t)) for t in texts]))

    def documents(self, a: Sequence[str], b: Sequence[str]) -> int:
        return int(len(np.intersect1d(self._docs(a), self._docs(b), assume_unique=True)))

    def window(self, a: str, b: str, max_diff_tokens: int) -> int:
        # Anchored on the rarer string (the first on a tie), as infini-gram's `count_cnf` is: each
        # anchor counts once if the other string starts within the window in the same document.
        pa, pb = self.positions(a), self.positions(b)
        anchor, other = (pa, pb) if len(pa) <= len(pb) else (pb, pa)
        if len(anchor) == 0 or len(other) == 0:
            return 0
        reach = max_diff_tokens * self.width
        docs = self.doc_of(anchor)
        ends = np.append(self.doc_starts[1:], self.data_size)
        lo = np.maximum(anchor - reach, self.doc_starts[docs])
        hi = np.minimum(anchor + reach, ends[docs] - 1)
        found = np.searchsorted(other, lo, side="left") < np.searchsorted(other, hi, side="right")
        return int(found.sum())
