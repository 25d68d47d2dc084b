"""CE-U: cross-entropy toward the model's own next-token distribution with the answer token removed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("ceu", "forget")
def ceu(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of CE(q_t, pi_t) = -sum_v q_t(v) log pi_t(v), where
    q_t = softmax(sg[z_t] with z_t[y_t] set to -inf).

    Yang et al. 2025, "CE-U: Cross Entropy Unlearning" (arXiv 2503.01224): z_t are the model's own
    logits at answer position t, sg a stop-gradient. The target is what the model predicts now with the
    true token taken out, so the gradient on the logits is pi_t - q_t: the answer token is pushed
    toward probability 0 and every other token toward its renormalised share. Unlike GA the loss is
    bounded below (by the entropy of q_t) and its push fades as pi_t(y_t) -> 0. Every answer token
    counts (open-unlearning skips the first one; docs/methods.md says why not here).
    """
    require(inp, "ceu", "logits", "targets")
    logits = inp.logits.float()
    removed = logits.detach().scatter(-1, inp.targets.unsqueeze(-1), float("-inf"))
    target = F.softmax(removed, dim=-1)
    ce = -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    return token_mean(ce, inp.mask)
