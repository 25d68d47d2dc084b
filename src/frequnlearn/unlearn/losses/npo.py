"""Negative preference optimisation (NPO): GA with a reference that slows it down once forgotten."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, sequence_logp


@register("npo", "forget", needs=("ref_logp",))
def npo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = -(2/beta) log sigmoid(-beta (log pi(y|x) - log ref(y|x))), averaged over examples.

    Zhang et al. 2024, "Negative Preference Optimization", arXiv 2404.05868. Its gradient
    weights each example by 2 sigmoid(beta * ratio), so it slows down once an answer is already less
    likely than under the reference, unlike GA; beta -> 0 gives GA's direction.
    """
    require(inp, "npo", "ref_logp")
    ratio = sequence_logp(inp) - inp.ref_logp
    return -(2.0 / p.beta) * F.logsigmoid(-p.beta * ratio).mean()
