"""Probability-based metrics: answer log-likelihood, ranking among candidates, truth ratio.

All (prompt, completion) pairs of a call, true answers and wrong candidates alike, are scored together
in length-sorted, right-padded batches; the metrics are then pure functions of per-token log-probs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from frequnlearn.evaluate.batching import plan_batches, tail_log_probs


@torch.inference_mode()
def completion_log_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> list[np.ndarray]:
    """Per-token log p(completion token | prompt, earlier completion tokens) for each pair."""
    seqs = [list(p) + list(c) for p, c in pairs]
    out: list[np.ndarray] = [np.zeros(0)] * len(pairs)
    for batch in plan_batches([len(s) for s in seqs], batch_size, budget):
        starts = [len(pairs[i][0]) for i in batch]
        lens = [len(pairs[i][1]) for i in batch]
        logp, offset = tail_log_probs(model, [seqs[i] for i in batch], min(starts) - 1, pad_id)
        width = max(lens)
        steps = torch.arange(width)
        # Position start-1+j predicts completion token j; padded slots point at valid cells and are dropped.
        pos = (
            torch.tensor(starts)[:, None] - 1 + torch.minimum(steps[None, :], torch.tensor(lens)[:, None] - 1)
        )
        targets = torch.tensor([list(pairs[i][1]) + [0] * (width - len(pairs[i][1])) for i in batch])
        pos = (pos - offset).to(logp.device)
        rows = torch.arange(len(batch), device=logp.device)[:, None]
        picked = logp[rows, pos, targets.to(logp.device)].double().cpu().numpy()
        for k, i in enumerate(batch):
            out[i] = picked[k, : lens[k]]
    return out


def likelihood_metrics(true_lp: np.ndarray, wrong_lps: Sequence[np.ndarray]) -> dict[str, float]:
    """Scores of the true answer, and of its standing among wrong candidates when there are any.

    The ranking compares length-normalised log-probabilities; a tie counts against the true answer,
    so a model that no longer tells answers apart (e.g. a flat distribution) does not rank it first.
    """
    n = len(true_lp)
    logprob = float(np.sum(true_lp))
    per_token = logprob / n
    row = {
        "logprob": logprob,
        "logprob_per_token": per_token,
        "p_norm": math.exp(per_token),
        "n_answer_tokens": float(n),
        "rank": math.nan,
        "rank_correct": math.nan,
        "truth_ratio": math.nan,
    }
    if len(wrong_lps):
        wrong = np.array([float(np.mean(w)) for w in wrong_lps])
        rank = 1 + int(np.sum(wrong >= per_token))
        row["rank"] = float(rank)
        row["rank_correct"] = float(rank == 1)
        row["truth_ratio"] = float(np.mean(np.exp(wrong - per_token)))
    return row
