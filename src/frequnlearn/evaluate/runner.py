"""`evaluate_items`: every selected metric family on every item, as one long table of per-item rows.

Work is pooled across items before it touches the model: each family gets all probes it scores at
once (all (prompt, answer) pairs through one length-sorted batched scorer, all prompts to complete
through one batched decoder, ...). Rows are then assembled per (item, probe, family), families in
registration order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.evaluate.batching import token_budget
from frequnlearn.evaluate.columns import numeric_metrics, row_columns
from frequnlearn.evaluate.families import FAMILIES, Context, Encoder, Probe, check_metrics, metric_columns
from frequnlearn.evaluate.known import check_rule
from frequnlearn.models.loading import max_positions, pad_id_of
from frequnlearn.models.prompts import PromptFormat
from frequnlearn.records import BioPrompt, QAItem


def _qa_probes(
    items: Sequence[QAItem], probes: Sequence[str], enc: Encoder, fmt: PromptFormat
) -> list[Probe]:
    out = []
    for item in items:
        cands = [enc.completion(fmt.completion(c), item.item_id, "candidate") for c in item.candidates]
        answer_ids = enc.completion(fmt.completion(item.answer), item.item_id, "answer")
        for probe in probes:
            text = item.question if probe == "question" else item.paraphrase
            if not text:
                continue
            out.append(
                Probe(
                    item=item,
                    probe=probe,
                    text=text,
                    answer=item.answer,
                    prompt_ids=enc.prompt(fmt.prompt(text, enc.tokenizer)),
                    answer_ids=answer_ids,
                    candidate_ids=cands,
                    person_id=item.person_id,
                    group=item.group,
                    attribute=item.attribute,
                    frequency=item.frequency,
                )
            )
    return out


def _row(
    p: Probe, family: str, ident: dict[str, Any], metrics: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    row = dict(defaults)
    row["finite"] = True
    row.update(ident)
    row.update(
        item_id=p.item.item_id,
        person_id=p.person_id,
        group=p.group,
        attribute=p.attribute,
        frequency=math.nan if p.frequency is None else float(p.frequency),
        bucket=p.item.bucket,
        probe=p.probe,
        family=family,
    )
    row.update(metrics)
    return row


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for col in numeric_metrics() + ["frequency"]:
        df[col] = df[col].astype("float64")
    df["step"] = df["step"].astype("int64")
    df["finite"] = df["finite"].astype("bool")
    ids = df["person_id"].dropna()
    if len({type(v) for v in ids}) > 1:
        # Parquet needs one type per column; user tables may mix numeric and text ids.
        df["person_id"] = df["person_id"].map(lambda v: None if v is None else str(v))
    return df


def evaluate_items(
    model: Any,
    tokenizer: Any,
    items: list[QAItem],
    cfg: EvalConfig,
    *,
    fmt: PromptFormat,
    bio_prompts: list[BioPrompt] | None = None,
    step: int = 0,
    model_name: str = "",
    run_id: str = "",
) -> pd.DataFrame:
    """Score every item with the families in `cfg.metrics`: one row per (item, probe, family).

    A selected family scores the QA probes (`cfg.probes`) it takes, plus the probes selected families
    add that it takes: bio prompts whose `item_id` is among `items` become probe "bio", scored by
    prob and gen (candidates are the QA item's). The model is put in eval mode and given back in the
    mode it had.
    """
    check_metrics(cfg.metrics)  # a config read before the registries were imported was not checked
    check_rule(cfg.known)
    selected = set(cfg.metrics)
    ctx = Context(
        model=model,
        tokenizer=tokenizer,
        cfg=cfg,
        fmt=fmt,
        items=items,
        bio_prompts=list(bio_prompts or []),
        enc=Encoder(tokenizer),
        pad_id=pad_id_of(tokenizer),
        budget=token_budget(model),
        max_positions=max_positions(model),
    )
    families = {name: cls() for name, cls in FAMILIES.items()}
    scores_qa = any(set(cfg.probes) & set(families[name].probes) for name in selected)
    qa = _qa_probes(items, cfg.probes, ctx.enc, fmt) if scores_qa else []
    added = [p for name, family in families.items() if name in selected for p in family.add_probes(ctx)]
    plan = []
    for name, family in families.items():
        if not family.columns:
            continue
        probes = [p for p in qa if name in selected and p.probe in family.probes]
        probes += [p for p in added if p.probe in family.probes]
        if probes:
            # Every family's lengths are checked before the model runs at all.
            plan.append((name, probes, family.prepare(probes, ctx)))

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        scored = [families[name].score(probes, state, ctx) for name, probes, state in plan]
    finally:
        model.train(was_training)

    columns = row_columns()
    defaults: dict[str, Any] = dict.fromkeys(columns, math.nan)
    defaults.update({col: None for col, kind in metric_columns().items() if kind is str})
    ident = {"model": model_name, "run_id": run_id, "step": int(step)}
    rows = [
        _row(p, name, ident, metrics, defaults)
        for (name, probes, _), results in zip(plan, scored)
        for p, metrics in zip(probes, results, strict=True)
    ]
    return _frame(rows, columns)
