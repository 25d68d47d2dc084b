"""IdkDPO: prefer a refusal over the true answer, against the frozen model as reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, sequence_logp


@register("dpo", "forget", needs=("refusal", "ref_logp"))
def dpo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = -(2/beta) log sigmoid(beta [(log pi(r|x) - log ref(r|x)) - (log pi(y|x) - log ref(y|x))]).

    DPO (Rafailov et al. 2023, arXiv 2305.18290) with the refusal r as the preferred and the true
    answer y as the rejected response, the "IdkDPO" baseline of Zhang et al. 2024 (NPO, arXiv
    2404.05868) and of open-unlearning. The 2/beta scale follows open-unlearning's DPO: as beta -> 0
    the gradient becomes GA on y plus CE on r, summed over tokens. Both reference log-probabilities
    are computed once before training.
    """
    require(inp, "dpo", "refusal", "ref_logp")
    require(inp.refusal, "dpo", "ref_logp")
    win = sequence_logp(inp.refusal) - inp.refusal.ref_logp
    lose = sequence_logp(inp) - inp.ref_logp
    return -(2.0 / p.beta) * F.logsigmoid(p.beta * (win - lose)).mean()
