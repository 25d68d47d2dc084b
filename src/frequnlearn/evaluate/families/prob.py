"""prob: how likely the model finds the true answer, and how it ranks it among wrong candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from frequnlearn.evaluate.families.base import Context, Family, Probe, check_lengths, register_family


@register_family(
    "prob",
    needs=("candidates",),
    probes=("question", "paraphrase", "bio"),
    columns={
        "logprob": float,
        "logprob_per_token": float,
        "p_norm": float,
        "n_answer_tokens": float,
        "rank": float,
        "rank_correct": float,
        "truth_ratio": float,
        # Per-token log-prob of the true answer minus the best wrong candidate's (> 0: truth preferred).
        "margin": float,
    },
    help="answer likelihood, rank among the candidates, truth ratio",
)
class Prob(Family):
    def prepare(self, probes: Sequence[Probe], ctx: Context) -> None:
        lengths = {
            p.item.item_id: len(p.prompt_ids) + max(map(len, [p.answer_ids, *p.candidate_ids]))
            for p in probes
        }
        check_lengths(ctx, lengths, "scoring", "shorten the question or answer")

    def score(self, probes: Sequence[Probe], state: None, ctx: Context) -> list[dict[str, Any]]:
        from frequnlearn.evaluate.probability import completion_log_probs, likelihood_metrics

        # Every (prompt, answer) pair of every probe goes through one length-sorted batched scorer.
        pairs = []
        for p in probes:
            pairs.append((p.prompt_ids, p.answer_ids))
            pairs.extend((p.prompt_ids, c) for c in p.candidate_ids)
        scores = completion_log_probs(ctx.model, pairs, ctx.pad_id, ctx.cfg.batch_size, ctx.budget)
        out, k = [], 0
        for p in probes:
            n = 1 + len(p.candidate_ids)
            out.append(likelihood_metrics(scores[k], scores[k + 1 : k + n]))
            k += n
        return out
