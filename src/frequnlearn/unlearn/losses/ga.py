"""Gradient ascent (GA): the simplest forget term, the baseline every unlearning paper reports."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, token_mean


@register("ga", "forget")
def ga(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = -CE(y|x) = mean over the batch's answer tokens of log pi(y_t | x, y_<t).

    Minimising it pushes the forget answers' log-probability down without bound (Jang et al. 2023,
    "Knowledge Unlearning for Mitigating Privacy Risks in Language Models", arXiv 2210.01504).
    """
    return token_mean(inp.token_logp, inp.mask)
