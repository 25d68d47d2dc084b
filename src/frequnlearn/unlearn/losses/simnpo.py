"""SimNPO: NPO without a reference model, length-normalised."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, sequence_logp


@register("simnpo", "forget")
def simnpo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = -(2/beta) log sigmoid(-(beta/|y|) log pi(y|x) - gamma), averaged over examples.

    Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
    Unlearning", arXiv 2410.07163.
    """
    length = inp.mask.sum(-1).clamp(min=1.0)
    return -(2.0 / p.beta) * F.logsigmoid(-(p.beta / length) * sequence_logp(inp) - p.gamma).mean()
