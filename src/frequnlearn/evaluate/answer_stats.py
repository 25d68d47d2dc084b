"""Per-token statistics of an answer under a model beyond its log-probability: what membership
inference (Min-K%++) and probabilistic extraction read.

For each (prompt, answer) pair one right-padded forward pass gives, at each answer position t,

  logp_t = log pi(y_t | x, y_<t)
  mu_t   = E_{v ~ pi_t}[log pi_t(v)]     (minus the entropy of the next-token distribution)
  var_t  = Var_{v ~ pi_t}[log pi_t(v)]

and, at the position right after the answer, log of the probability that the next token is one of
a given set (the tokens that end an answer). Pairs are batched by length as the prob family's are;
each row's numbers depend on that row alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from frequnlearn.evaluate.batching import plan_batches, tail_log_probs


@dataclass
class AnswerStats:
    logp: np.ndarray  # [n] log-prob of each answer token
    mu: np.ndarray  # [n] expected log-prob under the model's own next-token distribution
    var: np.ndarray  # [n] its variance
    end_logp: float  # log P(next token ends the answer | x, y); NaN when no end set was given
    finite: bool  # False when a log-prob the row reads is NaN (an update that overflowed)


@torch.inference_mode()
def answer_stats(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
    end: torch.Tensor | None = None,
) -> list[AnswerStats]:
    """`AnswerStats` of each (prompt ids, answer ids) pair; `end` is a [vocab] bool mask of the tokens
    that end an answer (needed only for `end_logp`)."""
    seqs = [list(p) + list(a) for p, a in pairs]
    out: list[AnswerStats | None] = [None] * len(pairs)
    for batch in plan_batches([len(s) for s in seqs], batch_size, budget, desc="scoring"):
        starts = [len(pairs[i][0]) for i in batch]
        logp, offset = tail_log_probs(model, [seqs[i] for i in batch], min(starts) - 1, pad_id)
        for k, i in enumerate(batch):
            answer = torch.as_tensor(list(pairs[i][1]), device=logp.device)
            first = starts[k] - 1 - offset
            # Positions predicting each answer token, then the one predicting what follows the answer.
            rows = logp[k, first : first + len(answer) + 1].double()
            out[i] = _stats(rows, answer, end)
    return [s for s in out if s is not None]


def _stats(rows: torch.Tensor, answer: torch.Tensor, end: torch.Tensor | None) -> AnswerStats:
    n = len(answer)
    lp = rows[:n]
    token = lp.gather(-1, answer[:, None]).squeeze(-1)
    prob = lp.exp()
    # A token of probability 0 (log-prob -inf) adds nothing to either moment.
    safe = torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp))
    mu = (prob * safe).sum(-1)
    var = ((prob * safe**2).sum(-1) - mu**2).clamp(min=0.0)
    end_logp = float("nan")
    if end is not None:
        end_logp = float(torch.logsumexp(rows[n][end.to(rows.device)], dim=0))
    finite = not bool(torch.isnan(rows).any()) and bool(torch.isfinite(token).all())
    return AnswerStats(token.cpu().numpy(), mu.cpu().numpy(), var.cpu().numpy(), end_logp, finite)
