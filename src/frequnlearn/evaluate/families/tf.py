"""tf: does the model affirm the true answer in a few-shot True/False query?"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from frequnlearn.evaluate.families.base import Context, Family, Probe, check_lengths, register_family


@register_family(
    "tf",
    needs=("verdict_tokens",),
    probes=("question", "paraphrase"),
    columns={"p_true": float, "p_false": float, "tf_correct": float},
    help="few-shot True/False: p(True), p(False), affirmed",
)
class TrueFalse(Family):
    def prepare(self, probes: Sequence[Probe], ctx: Context) -> list[tuple[list[int], list[int]]]:
        from frequnlearn.evaluate.truefalse import encode_split, shot_sets, tf_texts

        sets = shot_sets(ctx.items, ctx.cfg.tf_shots, ctx.cfg.seed)
        pairs = [
            encode_split(ctx.enc.prompt, *tf_texts(p.item, p.text, sets, ctx.fmt, ctx.tokenizer))
            for p in probes
        ]
        lengths = {p.item.item_id: len(a) + len(b) for p, (a, b) in zip(probes, pairs)}
        check_lengths(ctx, lengths, "True/False probe", "lower tf_shots")
        return pairs

    def score(
        self, probes: Sequence[Probe], state: list[tuple[list[int], list[int]]], ctx: Context
    ) -> list[dict[str, Any]]:
        from frequnlearn.evaluate.truefalse import next_token_probs, verdict_token_ids

        verdicts = verdict_token_ids(ctx.tokenizer)
        tf = next_token_probs(ctx.model, state, verdicts, ctx.pad_id, ctx.cfg.batch_size, ctx.budget)
        out: list[dict[str, Any]] = []
        for j in range(len(probes)):
            p_true, p_false = float(tf[j, 0]), float(tf[j, 1])
            if not (math.isfinite(p_true) and math.isfinite(p_false)):
                out.append({"finite": False})
                continue
            out.append({"p_true": p_true, "p_false": p_false, "tf_correct": float(p_true > p_false)})
        return out
