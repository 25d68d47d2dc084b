"""gen: the greedy continuation, scored against the answer and judged by the one "known" rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frequnlearn.evaluate.families.base import Context, Family, Probe, check_lengths, register_family


@register_family(
    "gen",
    probes=("question", "paraphrase", "bio"),
    # `known`: the one verdict of `evaluate.known` (1.0/0.0); rougeL_recall, exact, contains are metrics.
    columns={"generation": str, "known": float, "rougeL_recall": float, "exact": float, "contains": float},
    help="greedy answer: the `known` verdict, ROUGE-L recall, exact and contains",
)
class Gen(Family):
    def prepare(self, probes: Sequence[Probe], ctx: Context) -> None:
        lengths = {p.item.item_id: len(p.prompt_ids) + ctx.cfg.max_new_tokens for p in probes}
        check_lengths(ctx, lengths, "generation", "lower max_new_tokens")

    def score(self, probes: Sequence[Probe], state: None, ctx: Context) -> list[dict[str, Any]]:
        from frequnlearn.evaluate.generation import (
            continuation_text,
            generation_scores,
            greedy_decode,
            stop_token_mask,
        )
        from frequnlearn.evaluate.known import is_known

        model, tok, cfg = ctx.model, ctx.tokenizer, ctx.cfg
        vocab = (
            model.get_output_embeddings().weight.shape[0] if hasattr(model, "get_output_embeddings") else None
        )
        stop = stop_token_mask(tok, vocab or len(tok))
        finite: list[bool] = []
        prompts = [p.prompt_ids for p in probes]
        generations = greedy_decode(
            model, prompts, stop, ctx.pad_id, cfg.max_new_tokens, cfg.batch_size, ctx.budget, finite=finite
        )
        out: list[dict[str, Any]] = []
        for p, ids, ok in zip(probes, generations, finite):
            text = continuation_text(tok, ids)
            if not ok:
                # Tokens picked from NaN logits are no answer: the text is kept, no score is given.
                out.append({"generation": text, "finite": False})
                continue
            scores = generation_scores(text, p.answer, prefix=p.probe == "bio")
            known = float(is_known(text, p.answer, cfg.known, cfg.gen_threshold))
            out.append({"generation": text, "known": known, **scores})
        return out
