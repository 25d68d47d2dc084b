"""UNDIAL: self-distillation toward the frozen model's logits with the answer token's logit lowered."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("undial", "forget", needs=("ref_logits",))
def undial(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of CE(q_t, pi_t), q_t = softmax(z_ref,t - undial_strength * e_{y_t}).

    Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
    Language Models" (NAACL 2025, arXiv 2402.10052): z_ref,t are the frozen model's logits at
    position t and e_{y_t} the one-hot of the token to forget; the target keeps every other token's
    relative odds, so the loss is bounded (it is 0 gradient once pi matches q), unlike GA. Averaged
    over answer tokens only, as every forget term here is (open-unlearning averages every position).
    """
    require(inp, "undial", "logits", "ref_logits", "targets")
    onehot = F.one_hot(inp.targets, inp.ref_logits.shape[-1]).to(torch.float32)
    target = F.softmax(inp.ref_logits.float() - p.undial_strength * onehot, dim=-1)
    ce = -(target * F.log_softmax(inp.logits.float(), dim=-1)).sum(-1)
    return token_mean(ce, inp.mask)
