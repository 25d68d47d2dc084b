"""The knowledge check: what the model being pretrained answers, per group, exposure and attribute.

It is `evaluate`'s generation family on the question probe (the same greedy decoding, prompt encoding
and "known" verdict as every other evaluation), summarised as accuracies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import DataError
from frequnlearn.records import QAItem, from_record, read_jsonl


def load_eval_items(data_dir: str | Path, cfg: PretrainConfig) -> list[QAItem]:
    """The knowledge check's items: every group's QA (held out, or in the corpus for retain people),
    restricted to `eval_attributes` and sampled to `eval_per_group` per group from the seed."""
    import numpy as np

    path = Path(data_dir) / "qa.jsonl"
    items = [from_record(QAItem, row) for row in read_jsonl(path)]
    if cfg.eval_attributes:
        items = [it for it in items if it.attribute in cfg.eval_attributes]
    if not items:
        raise DataError(f"{path}: no QA items for eval_attributes {cfg.eval_attributes}")
    if cfg.eval_per_group:
        by_group: dict[str, list[QAItem]] = defaultdict(list)
        for it in items:
            by_group[str(it.group)].append(it)
        rng = np.random.default_rng([cfg.seed, 7])
        items = []
        for group in sorted(by_group):
            pool = by_group[group]
            keep = sorted(rng.permutation(len(pool))[: cfg.eval_per_group].tolist())
            items.extend(pool[i] for i in keep)
    return items


def knowledge_check(
    model: Any, tokenizer: Any, items: Sequence[QAItem], *, fmt: Any = None, batch_size: int = 128
) -> dict[str, Any]:
    """Accuracy of greedy answers to `items` (evaluate's "known" verdict, its default rule), overall
    and per group, exposure and attribute.

    Decoding may run one token past the longest answer: enough to see whether a generated word goes on
    beyond the answer ("Acmeville" for "Acme"), which the verdict must refuse.
    """
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.evaluate import evaluate_items
    from frequnlearn.models.prompts import encode_completion, get_prompt_format

    fmt = fmt or get_prompt_format("plain")
    longest = max(len(encode_completion(tokenizer, fmt.completion(it.answer))) for it in items)
    cfg = EvalConfig(metrics=["gen"], probes=["question"], batch_size=batch_size, max_new_tokens=longest + 1)
    frame = evaluate_items(model, tokenizer, list(items), cfg, fmt=fmt)
    # One gen row per item, in item order; a row with non-finite logits has no verdict: not known.
    correct = [verdict == 1.0 for verdict in frame["known"].tolist()]
    return summarise(items, correct)


def summarise(items: Sequence[QAItem], correct: Sequence[bool]) -> dict[str, Any]:
    """Accuracy overall and by group, exposure and attribute (the shape of run.json's `knowledge`)."""
    tables: dict[str, dict[str, list[bool]]] = {"group": {}, "exposure": {}, "attribute": {}}
    for item, ok in zip(items, correct):
        exposure = item.frequency
        names = {
            "group": str(item.group),
            "exposure": str(int(exposure))
            if exposure is not None and float(exposure).is_integer()
            else str(exposure),
            "attribute": str(item.attribute),
        }
        for key, name in names.items():
            tables[key].setdefault(name, []).append(ok)
    result: dict[str, Any] = _accuracy(list(correct))
    for key, table in tables.items():
        result[f"by_{key}"] = {name: _accuracy(rows) for name, rows in sorted(table.items(), key=_sort_key)}
    return result


def _accuracy(rows: list[bool]) -> dict[str, Any]:
    return {"accuracy": sum(rows) / len(rows) if rows else float("nan"), "n": len(rows)}


def _sort_key(entry: tuple[str, Any]) -> tuple[int, float | str]:
    try:
        return (0, float(entry[0]))
    except ValueError:
        return (1, entry[0])
