"""Tables of real facts for the real-model setting: the shipped country-capital table, the paper's
hub datasets, or any user table, all as `QAItem` lists with wrong candidates for ranking.

One string names a table (what `study.items` holds):

    builtin:country_capital[?COLUMN=VALUE...]   the table shipped in frequnlearn/data/real/
    paper:country_capital | paper:book_author | paper:zsre
                                                the paper's hub datasets (McGill-NLP/*_qa), one
                                                config per count bucket, joined with their
                                                paraphrased configs
    anything else                               a file or `datasets` name, read by
                                                `frequnlearn.data.tables.load_table`
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from frequnlearn.data.tables import load_table
from frequnlearn.errors import DataError
from frequnlearn.records import QAItem

REAL_DIR = Path(__file__).with_name("real")
BUILTIN_TABLES = {"country_capital": REAL_DIR / "country_capital.jsonl"}

# The paper's datasets (Krishnan, Reddy, Mosbach 2025): one config per count bucket, each with a
# `train` split of `question`/`answer` rows, and a `<config>_paraphrased` twin in the same row order.
PAPER_DATASETS = {
    "country_capital": "McGill-NLP/country_capital_qa",
    "book_author": "McGill-NLP/book_author_qa",
    "zsre": "McGill-NLP/zsre_qa",
}
PAPER_BUCKETS = {"low": "forget_low_count", "medium": "forget_medium_count", "high": "forget_high_count"}
N_CANDIDATES = 9


def builtin_path(name: str) -> Path:
    if name not in BUILTIN_TABLES:
        raise DataError(f"items: no built-in table {name!r}; built-in tables are {', '.join(BUILTIN_TABLES)}")
    return BUILTIN_TABLES[name]


def load_paper_dataset(
    name: str,
    buckets: Sequence[str] = ("low", "medium", "high"),
    paraphrased: bool = True,
) -> list[QAItem]:
    """The paper's hub dataset `name` (a key of PAPER_DATASETS or its hub id), bucket by bucket.

    Items get ids `<relation>-<bucket>-<row>` (the hub rows carry none), `bucket` from the config they
    came from, `object` = answer, and the paraphrased question of the same row. Needs hub access.
    """
    relation = next((k for k, v in PAPER_DATASETS.items() if name in (k, v)), None)
    if relation is None:
        raise DataError(f"items: unknown paper dataset {name!r}; choose from {', '.join(PAPER_DATASETS)}")
    repo = PAPER_DATASETS[relation]
    items: list[QAItem] = []
    for bucket in buckets:
        if bucket not in PAPER_BUCKETS:
            raise DataError(
                f"items: unknown bucket {bucket!r}; the paper's buckets are {', '.join(PAPER_BUCKETS)}"
            )
        config = PAPER_BUCKETS[bucket]
        rows = load_table(f"{repo}?config={config}", name="items")
        phrased: list[QAItem] = []
        if paraphrased:
            phrased = load_table(f"{repo}?config={config}_paraphrased", name="items")
            if len(phrased) != len(rows):
                raise DataError(
                    f"items: {repo} {config} has {len(rows)} rows but {config}_paraphrased has {len(phrased)}; "
                    "they must match row for row"
                )
            for i, (a, b) in enumerate(zip(rows, phrased)):
                if a.answer.strip() != b.answer.strip():
                    raise DataError(
                        f"items: {repo} {config} row {i + 1}: answer {a.answer!r} differs from the paraphrased "
                        f"config's {b.answer!r}; the two are not in the same order"
                    )
        for i, row in enumerate(rows):
            items.append(
                replace(
                    row,
                    item_id=f"{relation}-{bucket}-{i:04d}",
                    paraphrase=phrased[i].question if phrased else row.paraphrase,
                    bucket=bucket,
                    attribute=row.attribute or relation,
                    object=row.object or row.answer,
                )
            )
    return items


def _key(answer: str) -> str:
    """An answer as the 'known' verdict compares it: a rival of the same key would be the answer."""
    from frequnlearn.evaluate.known import normalize_value

    return normalize_value(answer)


def fill_candidates(items: Sequence[QAItem], k: int = N_CANDIDATES, seed: int = 0) -> list[QAItem]:
    """Give items without wrong candidates `k` answers of other items with the same attribute.

    Ranking the true answer needs rivals of the same kind (capitals against capitals); a user's or a
    hub table rarely ships them. Draws are fixed per item id and seed, so reloading gives the same.
    """
    answers: dict[str | None, dict[str, str]] = {}
    for it in items:
        # One spelling per answer: "Paris" and "paris" are the same rival.
        answers.setdefault(it.attribute, {}).setdefault(_key(it.answer), it.answer)
    out = []
    for it in items:
        if it.candidates:
            out.append(it)
            continue
        rivals = sorted(a for k, a in answers[it.attribute].items() if k != _key(it.answer))
        if not rivals:
            raise DataError(
                f"items: {it.item_id} has no candidates and no other answer of attribute {it.attribute!r} to draw "
                "them from; add a 'candidates' column"
            )
        rng = random.Random(f"{seed}-{it.item_id}")
        out.append(replace(it, candidates=rng.sample(rivals, min(k, len(rivals)))))
    return out


def load_items(spec: str, *, fill: bool = True, seed: int = 0) -> list[QAItem]:
    """Items of the table `spec` (see the module doc), with candidates filled where missing."""
    if spec.startswith("builtin:"):
        name, sep, query = spec[len("builtin:") :].partition("?")
        items = load_table(f"{builtin_path(name)}{sep}{query}", name="items")
    elif spec.startswith("paper:"):
        items = load_paper_dataset(spec[len("paper:") :])
    elif spec in PAPER_DATASETS.values():
        items = load_paper_dataset(spec)
    else:
        items = load_table(spec, name="items")
    ids = [it.item_id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"items {spec}: item_id {dup!r} occurs more than once; ids must be unique")
    return fill_candidates(items, seed=seed) if fill else items


def country_capitals() -> list[QAItem]:
    """The shipped country-capital table (181 states; see frequnlearn/data/real/README.md)."""
    return load_items("builtin:country_capital")
