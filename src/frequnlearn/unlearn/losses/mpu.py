"""MPU: margin-paced unlearning, this project's second frequency-aware method.

Frequency reaches a model as margin: the answer token of a fact seen often beats its best rival by
more logits than that of a fact seen once (baseline margin follows from frequency, and the study
reports how much of the frequency effect runs through it). A push of one size for every item (GA, and FGA within a level) forgets weak items first
and keeps pushing them while strong ones are still known; the retain damage of those wasted steps is
what every method pays before the frequent items go. MPU gives each answer token a push sized by how
far its baseline margin is from a target below zero, so that (to first order) every token reaches the
target at the same step, whatever its frequency; the push stops at the target, so no update is spent
on a token already forgotten, and it lifts the one rival that must overtake the answer rather than
the whole vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


def logit_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, L] z_t[y_t] - max_{v != y_t} z_t[v]: > 0 where the answer token is the greedy choice."""
    logits = logits.float()
    own = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    rival = logits.scatter(-1, targets.unsqueeze(-1), float("-inf")).max(-1).values
    return own - rival


@register("mpu", "forget", needs=("ref_logits",))
def mpu(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of sg[max(m0_t + delta, 0)] * max(m_t + delta, 0), where

    m_t = z_t[y_t] - max_{v != y_t} z_t[v] is the answer token's logit margin under the model,
    m0_t the same margin under the frozen model before unlearning (its baseline), delta = mpu_delta.

    While m_t > -delta the gradient is w_t (grad z_t[rival] - grad z_t[y_t]) with w_t = m0_t + delta:
    a push proportional to the token's baseline distance from the target -delta, so a strong (frequent)
    and a weak (rare) token close their distances at the same rate and arrive together. At m_t <= -delta
    the token leaves the loss (zero gradient) until it comes back. A token already below the target at
    baseline is never pushed. delta > 0 leaves each forgotten token a margin of safety: greedy decoding
    fails with a gap of delta logits, not at the edge where a few relearning steps would restore it.
    """
    require(inp, "mpu", "logits", "ref_logits", "targets")
    margin = logit_margin(inp.logits, inp.targets)
    with torch.no_grad():
        weight = (logit_margin(inp.ref_logits, inp.targets) + p.mpu_delta).clamp(min=0.0)
    return token_mean(weight * F.relu(margin + p.mpu_delta), inp.mask)
