"""WGA: gradient ascent with each token weighted by its own (detached) probability."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, token_mean


@register("wga", "forget")
def wga(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of w_t log pi(y_t|x, y_<t), w_t = sg[pi(y_t|x, y_<t)]^wga_beta.

    Weighted gradient ascent of Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient
    Perspective and Go Beyond" (ICLR 2025, arXiv 2502.19301); sg = stop-gradient. A token that is
    already unlikely gets little weight, so GA's unbounded push on forgotten tokens fades.
    """
    weight = inp.token_logp.detach().exp() ** p.wga_beta
    return token_mean(weight * inp.token_logp, inp.mask)
