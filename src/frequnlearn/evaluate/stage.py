"""Evaluation as the study and `frequnlearn unlearn` wire it: items in a prompt format with their
biography prompts, optionally each with the role it carries in a run, and the baseline stage.

The baseline (MODEL_DIR/baseline/) scores every studied item once before unlearning: scores.parquet
(its run record in the Parquet metadata), utility.json when the evaluation asks for utility, and the
done marker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import BioPrompt, QAItem, mark_done, write_parquet

EvalFn = Callable[[Any, Any, int], pd.DataFrame]


def score(
    model: Any,
    tokenizer: Any,
    items: Sequence[QAItem],
    ecfg: EvalConfig,
    prompt_format: str,
    bios: Mapping[str, BioPrompt],
    *,
    step: int,
    model_name: str,
    run_id: str,
) -> pd.DataFrame:
    """Per-item scores of `items`, with the biography prompts of those items (in item order)."""
    from frequnlearn.evaluate import evaluate_items

    return evaluate_items(
        model,
        tokenizer,
        list(items),
        ecfg,
        fmt=get_prompt_format(prompt_format),
        bio_prompts=[bios[it.item_id] for it in items if it.item_id in bios] or None,
        step=step,
        model_name=model_name,
        run_id=run_id,
    )


def role_evaluator(
    evaluated: Sequence[tuple[str, Sequence[QAItem]]],
    ecfg: EvalConfig,
    prompt_format: str,
    bios: Mapping[str, BioPrompt],
    model_name: str,
    run_id: str,
) -> EvalFn:
    """`eval_fn(model, tokenizer, step)`: one evaluation call over every role's items (batched
    together), each row with its item's `role`; an item listed under two roles keeps the first."""
    roles: dict[str, str] = {}
    items: list[QAItem] = []
    for role, part in evaluated:
        for it in part:
            if it.item_id not in roles:
                roles[it.item_id] = role
                items.append(it)

    def eval_fn(model: Any, tokenizer: Any, step: int) -> pd.DataFrame:
        df = score(
            model,
            tokenizer,
            items,
            ecfg,
            prompt_format,
            bios,
            step=step,
            model_name=model_name,
            run_id=run_id,
        )
        df["role"] = df["item_id"].map(roles)
        return df

    return eval_fn


def run_baseline(
    ecfg: EvalConfig,
    prompt_format: str,
    model: Any,
    tokenizer: Any,
    items: Sequence[QAItem],
    bios: Mapping[str, BioPrompt],
    out_dir: Path,
    *,
    record: dict[str, Any],
    key: str,
) -> pd.DataFrame:
    """Score every item once (step 0) into out_dir/scores.parquet with `record` (the run record: config,
    seed, versions, and under `run` the model's identity), then utility, then the done marker."""
    from frequnlearn.evaluate.utility import write_utility

    ident = record.get("run", {})
    name = str(ident.get("model", ""))
    scores = score(
        model, tokenizer, items, ecfg, prompt_format, bios, step=0, model_name=name, run_id=f"{name}/baseline"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(scores, out_dir / "scores.parquet", record)
    write_utility(model, tokenizer, ecfg, out_dir)
    mark_done(out_dir, key, ident)
    return scores
