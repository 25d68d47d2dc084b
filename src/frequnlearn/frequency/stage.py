"""The `count` stage: count every QA item with the configured backend, then bucket the counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frequnlearn.config.base import to_dict
from frequnlearn.config.count import CountConfig
from frequnlearn.errors import DataError
from frequnlearn.frequency.base import TextCounter
from frequnlearn.frequency.bucketing import Buckets, assign_buckets
from frequnlearn.frequency.registry import make_counter
from frequnlearn.records import QAItem, from_record, read_jsonl, run_info, write_json, write_jsonl


def count_values(items: Sequence[QAItem], cfg: CountConfig) -> tuple[list[int], dict[str, Any]]:
    """Counts in item order, and what the backend reports about itself (index, cache, requests)."""
    with make_counter(cfg) as counter:
        values = counter.count(items)
        info = counter.info()
        if isinstance(counter, TextCounter) and cfg.measure == "window":
            info.update(counter.window_info())
        return values, info


def bucket(values: Sequence[float], cfg: CountConfig) -> Buckets:
    return assign_buckets(values, cfg.buckets, cfg.bucket_method, cfg.thresholds)


def count_items(items: Sequence[QAItem], cfg: CountConfig) -> list[QAItem]:
    """Copies of `items` with `frequency` (the count) and `bucket` filled in."""
    values, _ = count_values(items, cfg)
    labels = bucket(values, cfg).labels if items else []
    return [dataclasses.replace(it, frequency=v, bucket=b) for it, v, b in zip(items, values, labels)]


def read_counted_table(path: str | Path) -> tuple[list[dict[str, Any]], list[QAItem]]:
    """Rows of a JSONL QA table (extra columns kept, since counting writes them back) and the QA items
    they hold. Other stages read QA tables with `data.real.load_items`, which keeps only the items."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise DataError(f"--items {path}: expected a JSONL QA table (one item per line, .jsonl)")
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"--items {path}: the table is empty")
    items = []
    for lineno, row in enumerate(rows, 1):
        missing = [k for k in ("item_id", "question", "answer") if k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing {', '.join(missing)} (every QA item needs them)")
        items.append(from_record(QAItem, row))
    ids = [it.item_id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"--items {path}: item_id {dup!r} occurs more than once")
    return rows, items


def run_count(items_path: str | Path, out: str | Path, cfg: CountConfig) -> dict[str, Any]:
    """Count a QA table and write it to `out` with `frequency` and `bucket`, plus `<out stem>.run.json`."""
    out = Path(out)
    rows, items = read_counted_table(items_path)
    values, info = count_values(items, cfg)
    buckets = bucket(values, cfg)
    counted = [{**row, "frequency": v, "bucket": b} for row, v, b in zip(rows, values, buckets.labels)]
    record = {
        **run_info(to_dict(cfg)),
        "items": str(items_path),
        "n_items": len(items),
        "backend": cfg.backend,
        "measure": cfg.measure if cfg.backend != "ground-truth" else "exposure",
        "backend_info": info,
        "buckets": {
            "method": cfg.bucket_method,
            "names": cfg.buckets,
            "edges": buckets.edges,
            "sizes": buckets.sizes,
        },
    }
    write_jsonl(out, counted)
    write_json(out.with_name(out.stem + ".run.json"), record)
    return record
