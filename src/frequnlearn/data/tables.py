"""QA tables from files or `datasets`, with row filters, as `QAItem` lists.

A table is named by one string, so a command line can say which rows it means:

    SOURCE[?COLUMN=VALUE[,VALUE...][&COLUMN=VALUE...]]

SOURCE is a JSONL/JSON/CSV/TSV/Parquet file, a generated data directory (its qa.jsonl), a directory
written by `datasets.save_to_disk`, or anything `datasets.load_dataset` takes (a hub name or a folder
of data files) with an optional split (`NAME:SPLIT`, default `train`; a dataset config goes in the
query as `config=NAME`). Filters keep the
rows whose column equals one of the listed values, e.g. `qa.jsonl?group=forget_high&attribute=employer`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError
from frequnlearn.progress import quiet_third_party
from frequnlearn.records import QAItem, read_jsonl

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".pq")
# QAItem fields copied from same-named columns when a table has them.
_EXTRA_FIELDS = tuple(f.name for f in fields(QAItem) if f.name not in ("item_id", "question", "answer"))


def parse_spec(spec: str) -> tuple[str, dict[str, list[str]]]:
    """`qa.jsonl?group=forget_high&attribute=employer,major` -> (source, {column: allowed values})."""
    source, _, query = spec.partition("?")
    if not source:
        raise DataError(f"{spec!r}: the table source (file or dataset name) is missing before '?'")
    filters: dict[str, list[str]] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise DataError(f"{spec!r}: filter {part!r} is not COLUMN=VALUE (e.g. group=forget_high)")
        filters.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return source, filters


def _clean(value: Any) -> Any:
    """Table cells as plain Python: NaN and empty text -> None, arrays -> lists, numpy scalars -> numbers."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _frame_rows(frame: Any) -> tuple[list[dict[str, Any]], list[str]]:
    columns = [str(c) for c in frame.columns]
    rows = [{str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]
    return rows, columns


def _read_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = read_jsonl(path)
        elif suffix == ".json":
            text = path.read_text()
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                rows = read_jsonl(path)
            else:
                if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                    raise DataError(f"{path}: expected a JSON list of objects (one per row) or JSON lines")
                rows = data
        elif suffix in (".csv", ".tsv"):
            return _frame_rows(
                pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
            )
        else:
            return _frame_rows(pd.read_parquet(path))
    except (ValueError, OSError) as err:
        raise DataError(
            f"{path}: cannot read the table ({str(err).splitlines()[0] if str(err) else err})"
        ) from None
    columns: list[str] = []
    for row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}: every line must be a JSON object")
        columns.extend(k for k in row if k not in columns)
    return rows, columns


def _read_dataset(source: str, config: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    import datasets

    name, _, split = source.partition(":")
    try:
        with quiet_third_party():  # datasets' preparation bars, off now that datasets is imported
            ds = datasets.load_dataset(name, config, split=split or "train")
    except Exception as err:  # datasets raises many types for a wrong name, split or config
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{source}: not a local file and cannot be loaded as a datasets dataset ({first})"
        ) from None
    return [{k: _clean(v) for k, v in row.items()} for row in ds], list(ds.column_names)


def read_rows(source: str, config: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and column names of a table source (before any filtering)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "qa.jsonl").is_file():
            from frequnlearn.data.generate import check_data_files

            check_data_files(path, ("qa.jsonl",))  # a generated directory's manifest names its hash
            return _read_file(path / "qa.jsonl")
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            import datasets

            with quiet_third_party():
                ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                raise DataError(
                    f"{source}: holds several splits ({', '.join(ds)}); name one, e.g. {source}/{next(iter(ds))}"
                )
            return [{k: _clean(v) for k, v in row.items()} for row in ds], list(ds.column_names)
        # A folder of data files: `datasets` infers the format and the splits from the file names.
        return _read_dataset(source, config)
    if path.is_file():
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise DataError(f"{source}: unknown table type {path.suffix!r}; use {', '.join(FILE_SUFFIXES)}")
        return _read_file(path)
    head, colon, _ = source.partition(":")
    if colon and Path(head).expanduser().is_dir():
        return _read_dataset(source, config)
    if path.suffix.lower() in FILE_SUFFIXES or source.startswith((".", "/", "~")):
        raise DataError(f"{source}: file not found")
    return _read_dataset(source, config)


def _matches(value: Any, allowed: Sequence[str]) -> bool:
    for want in allowed:
        if value is None:
            if want.lower() in ("", "none", "null"):
                return True
        elif isinstance(value, bool):
            if want.lower() == str(value).lower():
                return True
        elif isinstance(value, (int, float)):
            try:
                if float(want) == float(value):
                    return True
            except ValueError:
                pass
        elif str(value) == want:
            return True
    return False


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _to_item(row: dict[str, Any], index: int, source: str, q_col: str, a_col: str, id_col: str) -> QAItem:
    question, answer = _text(row.get(q_col)), _text(row.get(a_col))
    row_id = _text(row.get(id_col))
    where = f"{source}: row {index + 1}" + (f" ({row_id})" if row_id else "")
    if question is None:
        raise DataError(f"{where}: empty {q_col!r}; every row needs a question")
    if answer is None:
        raise DataError(f"{where}: empty {a_col!r}; every row needs an answer")
    extra: dict[str, Any] = {}
    for name in _EXTRA_FIELDS:
        value = row.get(name)
        if value is None or name in (q_col, a_col):
            continue
        if name == "candidates":
            if isinstance(value, str):
                try:
                    value = json.loads(value) if value.strip() else []
                except json.JSONDecodeError:
                    raise DataError(
                        f"{where}: 'candidates' must be a list (or a JSON list in a text cell)"
                    ) from None
            if not isinstance(value, list):
                raise DataError(f"{where}: 'candidates' must be a list of wrong answers")
            value = [str(v) for v in value]
        elif name == "frequency":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise DataError(f"{where}: 'frequency' must be a number, got {value!r}") from None
        elif name == "in_corpus":
            value = value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
        elif name in ("paraphrase", "group", "attribute", "bucket", "subject", "object"):
            value = _text(value)
        extra[name] = value
    return QAItem(item_id=row_id or f"{source}#{index}", question=question, answer=answer, **extra)


def load_table(
    spec: str,
    *,
    question_column: str = "question",
    answer_column: str = "answer",
    id_column: str = "item_id",
    name: str = "table",
) -> list[QAItem]:
    """The rows of `spec` (see the module doc) that pass its filters, as QA items.

    `name` says which input this is (e.g. `--forget`) in error messages. Rows without an id column
    get `SOURCE#ROW`, so the same row read twice has the same id.
    """
    source, filters = parse_spec(spec)
    config = filters.pop("config", [None])[0]
    rows, columns = read_rows(source, config)
    if not rows:
        raise DataError(f"{name} {spec}: the table has no rows")
    for col, key in ((question_column, "question_column"), (answer_column, "answer_column")):
        if col not in columns:
            raise DataError(
                f"{name} {spec}: no column {col!r} (columns: {', '.join(columns)}); set {key}=<column> to use another"
            )
    for col in filters:
        if col not in columns:
            raise DataError(
                f"{name} {spec}: cannot filter on {col!r}, no such column (columns: {', '.join(columns)})"
            )
    kept = [
        (i, row)
        for i, row in enumerate(rows)
        if all(_matches(row.get(col), vals) for col, vals in filters.items())
    ]
    if not kept:
        hints = []
        for col in filters:
            seen = sorted({str(r.get(col)) for r in rows})
            hints.append(f"{col} has {', '.join(seen[:8])}" + (", ..." if len(seen) > 8 else ""))
        raise DataError(f"{name} {spec}: no rows match the filters ({'; '.join(hints)})")
    items = [_to_item(row, i, source, question_column, answer_column, id_column) for i, row in kept]
    check_items(items, f"{name} {spec}")
    return items


def check_items(items: Sequence[QAItem], where: str) -> None:
    """Refuse items that would give wrong numbers, naming the first: an id twice (counted twice, or
    summarised as one), an answer that normalises to nothing (generation can never match it), a
    candidate that is the answer once normalised (the answer ranked against itself). Two answers that
    normalise alike ("C#", "C++") are flagged on stderr: a generation of one counts as knowing both.
    Normalisation is the 'known' verdict's own (`evaluate.known.normalize_value`)."""
    from frequnlearn.evaluate.known import normalize_value
    from frequnlearn.records import say_once

    ids: set[str] = set()
    spellings: dict[str, dict[str, str]] = {}
    for it in items:
        if it.item_id in ids:
            raise DataError(f"{where}: item_id {it.item_id!r} occurs more than once; ids must be unique")
        ids.add(it.item_id)
        key = normalize_value(it.answer)
        if not key:
            raise DataError(
                f"{where}: item {it.item_id}: answer {it.answer!r} has no letters or digits, so no generation "
                "can ever match it; spell it out (e.g. 'C sharp') or drop the item"
            )
        for candidate in it.candidates:
            if normalize_value(candidate) == key:
                raise DataError(
                    f"{where}: item {it.item_id}: candidate {candidate!r} is the answer {it.answer!r} once case "
                    "and punctuation are ignored; remove it from the candidates"
                )
        spellings.setdefault(key, {}).setdefault(it.answer, it.item_id)
    clashes = [(key, seen) for key, seen in spellings.items() if len(seen) > 1]
    if clashes:
        key, seen = clashes[0]
        named = " and ".join(f"{a!r} ({i})" for a, i in list(seen.items())[:2])
        more = f"; {len(clashes) - 1} more such answer(s)" if len(clashes) > 1 else ""
        say_once(
            f"warning: {where}: answers {named} are the same once case and punctuation are ignored "
            f"({key!r}), so generating one counts as knowing the other{more}"
        )


def check_overlap(forget: Iterable[QAItem], retain: Iterable[QAItem]) -> None:
    """Stop if an item is in both sets (same id, or same question and answer): it would be pushed
    down and up at once."""
    forget = list(forget)
    ids = {it.item_id for it in forget}
    pairs = {(it.question.strip(), it.answer.strip()) for it in forget}
    both = [
        it.item_id for it in retain if it.item_id in ids or (it.question.strip(), it.answer.strip()) in pairs
    ]
    if both:
        example = ", ".join(both[:3]) + (", ..." if len(both) > 3 else "")
        raise DataError(
            f"retain: {len(both)} item(s) are also in the forget set ({example}); remove them from one of the two"
        )
