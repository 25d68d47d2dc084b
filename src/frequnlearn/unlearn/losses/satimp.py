"""SatImp: token-weighted gradient ascent by saturation and importance."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, token_mean


@register("satimp", "forget")
def satimp(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of w_t log pi_t, w_t = sg[pi_t^satimp_beta1 (1 - pi_t)^satimp_beta2].

    pi_t = pi(y_t|x, y_<t), sg = stop-gradient. Yang et al. 2025, "Exploring Criteria of Loss
    Reweighting to Enhance LLM Unlearning" (ICML 2025, arXiv 2505.11953): pi^beta1 is the saturation
    weight (tokens not yet unlearned), (1 - pi)^beta2 the importance weight; defaults beta1 = 5,
    beta2 = 1 as in the paper and open-unlearning.
    """
    prob = inp.token_logp.detach().exp()
    weight = prob**p.satimp_beta1 * (1.0 - prob) ** p.satimp_beta2
    return token_mean(weight * inp.token_logp, inp.mask)
