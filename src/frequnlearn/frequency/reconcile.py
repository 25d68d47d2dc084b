"""Check a counting setup on generated data, where the true exposure of every fact is known.

A biography states every attribute of its person, and each copy names the person, so the number of
biographies in which a person's name and an attribute value occur together is that person's
exposure. Counting documents of kind `bio` through an index must give exactly that number; any
difference points at the counter (or at names that are substrings of other names).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from frequnlearn.config.count import CountConfig
from frequnlearn.frequency.stage import count_values, read_counted_table


def reconcile_exposure(data_dir: str | Path, cfg: CountConfig) -> list[str]:
    """One line per QA item whose counted co-occurrence differs from its person's exposure.

    `cfg` picks the backend (and its options); corpus, measure and kinds are set here: documents of
    kind `bio` in the data directory's corpus.jsonl, counted by document.
    """
    data_dir = Path(data_dir)
    _, items = read_counted_table(data_dir / "qa.jsonl")
    counted_cfg = dataclasses.replace(
        cfg, corpus=str(data_dir / "corpus.jsonl"), measure="document", kinds=["bio"]
    )
    truth_cfg = dataclasses.replace(cfg, backend="ground-truth", people=str(data_dir / "people.jsonl"))
    counted, _ = count_values(items, counted_cfg)
    exposure, _ = count_values(items, truth_cfg)
    return [
        f"item {it.item_id}: {it.subject!r} with {it.object or it.answer!r} in {c} biographies, exposure {e}"
        for it, c, e in zip(items, counted, exposure)
        if c != e
    ]
