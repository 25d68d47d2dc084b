"""extract: probabilistic extraction, the chance that sampling from the model gives the answer back.

Greedy decoding asks one question of a model; a user can sample it many times. Hayes et al. 2024,
"Measuring memorization in language models via probabilistic extraction" (arXiv 2410.19482): with p
the probability that one sample at temperature 1 yields the target, n samples contain it with
probability 1 - (1 - p)^n. Here p is exact, from the answer's token log-probs:

  extract_p        pi(y | x): a sample's first |y| tokens are the answer's (Hayes et al.'s p for a
                   target of the answer's length; the sample then contains the answer)
  extract_pn       1 - (1 - extract_p)^n
  extract_exact_p  pi(y | x) * P(end | x, y): the sample is the answer and stops there (end of text,
                   or a newline with nothing before it), i.e. the whole generated answer is y
  extract_exact_pn 1 - (1 - extract_exact_p)^n

with n = `evaluate.extraction_samples`. Both are lower bounds on "a sample says the answer": other
token sequences spelling the same text, and answers inside longer text, are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from frequnlearn.evaluate.families.base import Context, Family, Probe, check_lengths, register_family


@register_family(
    "extract",
    probes=("question", "paraphrase"),
    columns={"extract_p": float, "extract_pn": float, "extract_exact_p": float, "extract_exact_pn": float},
    help="probabilistic extraction: P(n samples at temperature 1 give the answer), n = extraction_samples",
)
class Extraction(Family):
    def prepare(self, probes: Sequence[Probe], ctx: Context) -> None:
        # The answer and one more token (the one that would end it).
        lengths = {p.item.item_id: len(p.prompt_ids) + len(p.answer_ids) + 1 for p in probes}
        check_lengths(ctx, lengths, "scoring", "shorten the question or answer")

    def score(self, probes: Sequence[Probe], state: None, ctx: Context) -> list[dict[str, Any]]:
        from frequnlearn.evaluate.answer_stats import answer_stats

        model, tok = ctx.model, ctx.tokenizer
        get_out = getattr(model, "get_output_embeddings", None)
        vocab = get_out().weight.shape[0] if callable(get_out) and get_out() is not None else len(tok)
        pairs = [(p.prompt_ids, p.answer_ids) for p in probes]
        stats = answer_stats(
            model, pairs, ctx.pad_id, ctx.cfg.batch_size, ctx.budget, end=answer_end_mask(tok, vocab)
        )
        out: list[dict[str, Any]] = []
        for s in stats:
            if not s.finite:
                out.append({"finite": False})
                continue
            out.append(extraction_probs(float(s.logp.sum()), s.end_logp, ctx.cfg.extraction_samples))
        return out


def extraction_probs(answer_logp: float, end_logp: float, n: int) -> dict[str, float]:
    """Per-sample and n-sample probabilities from log pi(y|x) and log P(end | x, y)."""
    p = math.exp(answer_logp)
    exact = math.exp(answer_logp + end_logp)
    return {
        "extract_p": p,
        "extract_pn": at_least_once(p, n),
        "extract_exact_p": exact,
        "extract_exact_pn": at_least_once(exact, n),
    }


def at_least_once(p: float, n: int) -> float:
    """1 - (1 - p)^n, without the cancellation of the direct form when p is tiny."""
    return 1.0 if p >= 1.0 else -math.expm1(n * math.log1p(-p))


def answer_end_mask(tokenizer: Any, vocab_size: int) -> Any:
    """[vocab] True for the tokens after which the generated answer is exactly what came before: end
    of text (or padding), and newline tokens with only whitespace before the newline (greedy decoding
    stops at any newline token, but "x\\n" would add "x" to the answer)."""
    from frequnlearn.evaluate.generation import stop_token_mask

    mask = stop_token_mask(tokenizer, vocab_size).clone()
    keep = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for tid in mask.nonzero().flatten().tolist():
        if tid not in keep and tokenizer.decode([tid]).split("\n", 1)[0].strip():
            mask[tid] = False
    return mask
