"""`evaluate_items`: every metric family on every item, as one long table of per-item rows.

Work is pooled across items before it touches the model: all (prompt, answer) pairs of all items go
through one length-sorted batched scorer, all prompts to complete through one batched decoder, all
True/False queries through one more. Rows are then assembled per (item, probe, family).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.errors import DataError
from frequnlearn.evaluate.batching import token_budget
from frequnlearn.evaluate.columns import COLUMNS, NUMERIC_METRICS
from frequnlearn.evaluate.generation import (
    continuation_text,
    generation_scores,
    greedy_decode,
    stop_token_mask,
)
from frequnlearn.evaluate.known import is_known
from frequnlearn.evaluate.probability import completion_log_probs, likelihood_metrics
from frequnlearn.evaluate.truefalse import (
    encode_split,
    next_token_probs,
    shot_sets,
    tf_texts,
    verdict_token_ids,
)
from frequnlearn.models.loading import max_positions, pad_id_of
from frequnlearn.models.prompts import PromptFormat, encode_completion, encode_prompt
from frequnlearn.records import BioPrompt, QAItem


@dataclass
class _Probe:
    """One way of asking for one item's answer: a prompt, the true completion and wrong ones."""

    item: QAItem
    probe: str
    text: str
    answer: str
    prompt_ids: list[int]
    answer_ids: list[int]
    candidate_ids: list[list[int]] = field(default_factory=list)
    person_id: Any = None
    group: str | None = None
    attribute: str | None = None
    frequency: float | None = None


class _Encoder:
    """Token ids of prompts and completions, each distinct text encoded once per call (candidates
    repeat across items and probes; the True/False prefix across all queries)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._prompts: dict[str, list[int]] = {}
        self._completions: dict[str, list[int]] = {}

    def prompt(self, text: str) -> list[int]:
        if text not in self._prompts:
            self._prompts[text] = encode_prompt(self.tokenizer, text)
        return self._prompts[text]

    def completion(self, text: str, item_id: str, what: str) -> list[int]:
        if text not in self._completions:
            self._completions[text] = encode_completion(self.tokenizer, text)
        ids = self._completions[text]
        if not ids:
            raise DataError(f"item {item_id}: {what} {text!r} encodes to no tokens; fix or drop the item")
        return ids


def _qa_probes(
    items: Sequence[QAItem], probes: Sequence[str], enc: _Encoder, fmt: PromptFormat
) -> list[_Probe]:
    out = []
    for item in items:
        cands = [enc.completion(fmt.completion(c), item.item_id, "candidate") for c in item.candidates]
        answer_ids = enc.completion(fmt.completion(item.answer), item.item_id, "answer")
        for probe in probes:
            text = item.question if probe == "question" else item.paraphrase
            if not text:
                continue
            out.append(
                _Probe(
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


def _bio_probes(bio_prompts: Sequence[BioPrompt], by_id: dict[str, QAItem], enc: _Encoder) -> list[_Probe]:
    """Biography prompts of the evaluated items; the answer continues the sentence after one space."""
    out = []
    for bp in bio_prompts:
        item = by_id.get(bp.item_id)
        if item is None:
            continue
        cands = [enc.completion(" " + c, bp.item_id, "candidate") for c in item.candidates]
        frequency = bp.frequency if bp.frequency is not None else item.frequency
        out.append(
            _Probe(
                item=item,
                probe="bio",
                text=bp.prompt,
                answer=bp.target,
                prompt_ids=enc.prompt(bp.prompt.rstrip(" ")),
                answer_ids=enc.completion(" " + bp.target, bp.item_id, "bio target"),
                candidate_ids=cands,
                person_id=bp.person_id,
                group=bp.group,
                attribute=bp.attribute,
                frequency=frequency,
            )
        )
    return out


def _check_lengths(limit: int | None, seqs: dict[str, int], what: str) -> None:
    """Stop before the model sees a sequence longer than its position table (an index error deep in torch)."""
    if limit is None or not seqs:
        return
    item_id, length = max(seqs.items(), key=lambda kv: kv[1])
    if length > limit:
        raise DataError(
            f"item {item_id}: {what} needs {length} positions but the model has {limit}; {_FIXES[what]}"
        )


_FIXES = {
    "scoring": "shorten the question or answer",
    "generation": "lower max_new_tokens",
    "True/False probe": "lower tf_shots",
}


def _row(p: _Probe, family: str, ident: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS, math.nan)
    row["generation"] = None
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


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in NUMERIC_METRICS + ["frequency"]:
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

    Bio prompts whose `item_id` is among `items` are scored as probe "bio" (prob and gen families;
    candidates are the QA item's). The model is put in eval mode and given back in the mode it had.
    """
    pad_id = pad_id_of(tokenizer)
    budget = token_budget(model)
    bs = cfg.batch_size
    ident = {"model": model_name, "run_id": run_id, "step": int(step)}
    metrics = set(cfg.metrics)
    enc = _Encoder(tokenizer)
    qa = _qa_probes(items, cfg.probes, enc, fmt) if metrics & {"prob", "gen", "tf"} else []
    bio: list[_Probe] = []
    if "bio" in metrics and bio_prompts:
        bio = _bio_probes(bio_prompts, {it.item_id: it for it in items}, enc)
    prob_probes = (qa if "prob" in metrics else []) + bio
    gen_probes = (qa if "gen" in metrics else []) + bio
    tf_probes = qa if "tf" in metrics else []

    limit = max_positions(model)
    _check_lengths(
        limit,
        {
            p.item.item_id: len(p.prompt_ids) + max(map(len, [p.answer_ids, *p.candidate_ids]))
            for p in prob_probes
        },
        "scoring",
    )
    _check_lengths(
        limit, {p.item.item_id: len(p.prompt_ids) + cfg.max_new_tokens for p in gen_probes}, "generation"
    )
    tf_pairs: list[tuple[list[int], list[int]]] = []
    if tf_probes:
        sets = shot_sets(items, cfg.tf_shots, cfg.seed)
        tf_pairs = [
            encode_split(enc.prompt, *tf_texts(p.item, p.text, sets, fmt, tokenizer)) for p in tf_probes
        ]
        _check_lengths(
            limit,
            {p.item.item_id: len(a) + len(b) for p, (a, b) in zip(tf_probes, tf_pairs)},
            "True/False probe",
        )

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        pairs = []
        for p in prob_probes:
            pairs.append((p.prompt_ids, p.answer_ids))
            pairs.extend((p.prompt_ids, c) for c in p.candidate_ids)
        scores = completion_log_probs(model, pairs, pad_id, bs, budget)
        generations: list[list[int]] = []
        gen_finite: list[bool] = []
        if gen_probes:
            vocab = (
                model.get_output_embeddings().weight.shape[0]
                if hasattr(model, "get_output_embeddings")
                else None
            )
            stop = stop_token_mask(tokenizer, vocab or len(tokenizer))
            generations = greedy_decode(
                model,
                [p.prompt_ids for p in gen_probes],
                stop,
                pad_id,
                cfg.max_new_tokens,
                bs,
                budget,
                finite=gen_finite,
            )
        tf = None
        if tf_probes:
            tf = next_token_probs(model, tf_pairs, verdict_token_ids(tokenizer), pad_id, bs, budget)
    finally:
        model.train(was_training)

    rows = []
    k = 0
    for p in prob_probes:
        n = 1 + len(p.candidate_ids)
        rows.append(_row(p, "prob", ident, likelihood_metrics(scores[k], scores[k + 1 : k + n])))
        k += n
    for p, ids, finite in zip(gen_probes, generations, gen_finite):
        text = continuation_text(tokenizer, ids)
        if not finite:
            # Tokens picked from NaN logits are no answer: the text is kept, no score is given.
            rows.append(_row(p, "gen", ident, {"generation": text, "finite": False}))
            continue
        gen = generation_scores(text, p.answer, prefix=p.probe == "bio")
        known = float(is_known(text, p.answer, cfg.known, cfg.gen_threshold))
        rows.append(_row(p, "gen", ident, {"generation": text, "known": known, **gen}))
    for j, p in enumerate(tf_probes):
        p_true, p_false = float(tf[j, 0]), float(tf[j, 1])
        if not (math.isfinite(p_true) and math.isfinite(p_false)):
            rows.append(_row(p, "tf", ident, {"finite": False}))
            continue
        rows.append(
            _row(
                p, "tf", ident, {"p_true": p_true, "p_false": p_false, "tf_correct": float(p_true > p_false)}
            )
        )
    return _frame(rows)
