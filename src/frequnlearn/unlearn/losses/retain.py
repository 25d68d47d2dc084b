"""Retain terms: what keeps the knowledge that should stay while a forget term works."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("none", "retain")
def no_retain(inp: LossInputs, p: LossParams) -> torch.Tensor:
    return inp.token_logp.new_zeros(())


@register("gd", "retain")
def gd(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """CE on retain pairs (GradDiff, Liu et al. 2022): keeps what should stay known likely."""
    return -token_mean(inp.token_logp, inp.mask)


@register("kl", "retain", needs=("ref_logits",))
def kl(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """KL(ref || pi) of next-token distributions, averaged over masked retain positions."""
    require(inp, "kl", "logits", "ref_logits")
    logq = F.log_softmax(inp.logits.float(), dim=-1)
    logp_ref = F.log_softmax(inp.ref_logits.float(), dim=-1)
    per_pos = (logp_ref.exp() * (logp_ref - logq)).sum(-1)
    return token_mean(per_pos, inp.mask)


@register("act", "retain", needs=("hidden", "ref_hidden"))
def act(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """Mean over retain tokens of (1/H) ||h_l(x)_t - h_l^ref(x)_t||^2: RMU's retain term (WMDP,
    arXiv 2403.03218), block l = `rmu_layer` of the model and of its frozen copy."""
    require(inp, "act", "hidden", "ref_hidden")
    sq = (inp.hidden.float() - inp.ref_hidden.float()) ** 2
    return token_mean(sq.mean(-1), inp.mask)
