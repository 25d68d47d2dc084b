"""IDK: teach a refusal in place of the answer."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("idk", "forget", needs=("refusal",))
def idk(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = CE(refusal | x): mean over the refusal's tokens of -log pi(r_t | x, r_<t).

    The "IDK" fine-tuning baseline of Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for
    LLMs", arXiv 2401.06121. The true answer is never pushed down directly.
    """
    require(inp, "idk", "refusal")
    return -token_mean(inp.refusal.token_logp, inp.refusal.mask)
