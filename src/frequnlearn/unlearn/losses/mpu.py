"""MPU: margin-paced unlearning, this project's second frequency-aware method.

Frequency reaches a model as margin: the answer of a fact seen often beats its best rival by more
logits than that of a fact seen once (baseline margin follows from frequency, and the study reports
how much of the frequency effect runs through it). A push of one size for every item (GA, and FGA
within a level, where every item has the same count) forgets weak items first and keeps pushing them
while strong ones are still known; the retain damage of those wasted steps is what every method pays
before the frequent items go. MPU paces each item by its own baseline margin, so that (to first
order) every item reaches the target at the same step whatever its frequency, and spends nothing
past it. It moves one token per item, the answer's weakest link, and lifts only the rival that must
overtake it: the confident tokens an answer shares with many others (", CA" after a city) are left
alone, and with them the retain items that end the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require


def logit_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, L] z_t[y_t] - max_{v != y_t} z_t[v]: > 0 where the answer token is the greedy choice."""
    logits = logits.float()
    own = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    rival = logits.scatter(-1, targets.unsqueeze(-1), float("-inf")).max(-1).values
    return own - rival


def item_margin(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] the smallest logit margin over each row's answer tokens: > 0 iff greedy decoding (teacher
    forced) produces the whole answer; its gradient reaches that one token only."""
    margin = logit_margin(logits, targets)
    return margin.masked_fill(mask <= 0, float("inf")).min(-1).values


@register("mpu", "forget", needs=("ref_logits",))
def mpu(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over items i of sg[max(M0_i + delta, 0)] * max(M_i + delta, 0), where

    M_i = min over the answer tokens t of m_t, m_t = z_t[y_t] - max_{v != y_t} z_t[v] (the item's
    weakest-link logit margin, > 0 iff greedy decoding gives the whole answer), M0_i the same under
    the frozen model before unlearning (the item's baseline), delta = mpu_delta.

    While M_i > -delta the gradient is w_i (grad z[rival] - grad z[y]) at the weakest token, with
    w_i = M0_i + delta: a push proportional to the item's baseline distance from the target -delta,
    so a strong (frequent) and a weak (rare) item close their distances at the same rate and cross
    together. At M_i <= -delta the item leaves the loss (zero gradient) until it comes back; an item
    already below the target at baseline is never pushed. delta > 0 leaves a margin of safety: the
    answer's weakest token ends delta logits behind its rival, not at the edge where a few relearning
    steps would restore it.
    """
    require(inp, "mpu", "logits", "ref_logits", "targets")
    margin = item_margin(inp.logits, inp.targets, inp.mask)
    with torch.no_grad():
        weight = (item_margin(inp.ref_logits, inp.targets, inp.mask) + p.mpu_delta).clamp(min=0.0)
    return (weight * F.relu(margin + p.mpu_delta)).mean()
