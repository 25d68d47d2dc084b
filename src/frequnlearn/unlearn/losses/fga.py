"""FGA: frequency-aware gradient ascent, this project's method.

Frequent knowledge resists unlearning (the study's Finding 1), and one global step budget spends
the same push on every item: rare items are erased early and then keep being pushed (collateral
damage on retained knowledge), while frequent ones are still known when the budget ends. FGA moves
the budget: each item's push grows with the log of its recorded frequency, and an item leaves the
loss as soon as the model no longer produces its answer.
"""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require


def still_known(inp: LossInputs) -> torch.Tensor:
    """[B] 1.0 where greedy decoding would still produce the whole answer: every answer token is
    the argmax of its position's logits (teacher-forced, so it is read off the training pass)."""
    require(inp, "fga", "logits", "targets")
    top = inp.logits.detach().argmax(-1)
    wrong = ((top != inp.targets) & (inp.mask > 0)).any(-1)
    return (~wrong).to(inp.token_logp.dtype)


@register("fga", "forget", needs=("frequency",))
def fga(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = sum_i s_i w_i log pi(y_i|x_i) / sum_i s_i |y_i|, with

    w_i = 1 + freq_scale * ln(max(f_i, 1))  (f_i the item's recorded frequency: 1 -> 1, 10 -> 3.3)
    s_i = 1 while item i is still known (`still_known`), else 0 (always 1 when freq_stop is false).

    Real corpus counts span orders of magnitude; the log keeps a count of thousands within a factor
    of ten of a count of one. The stop makes the average run over the items
    that resist, so they get the push the forgotten ones no longer need; an item that comes back
    rejoins. With freq_scale = 0 and freq_stop false it is GA.
    """
    require(inp, "fga", "frequency")
    weight = 1.0 + p.freq_scale * inp.frequency.to(inp.token_logp.dtype).clamp(min=1.0).log()
    keep = still_known(inp) if p.freq_stop else torch.ones_like(weight)
    per_item = (inp.token_logp * inp.mask).sum(-1)
    tokens = (keep * inp.mask.sum(-1)).sum().clamp(min=1.0)
    return (keep * weight * per_item).sum() / tokens
