"""PDU: logit-margin flattening on the forget answers, retain loss held under a bound by a dual variable."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("pdu", "forget")
def pdu(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L_f = mean over answer positions of (max_v z_t[v] - (1/V) sum_v z_t[v])^2.

    The logit-margin flattening loss of Entesari et al. 2025, "Constrained Entropic Unlearning: A
    Primal-Dual Framework for Large Language Models" (arXiv 2506.05314): z_t are the logits at the
    position that predicts answer token t. It is zero exactly when every logit is equal (a uniform
    next-token distribution), needs no softmax, and its gradient does not vanish near uniformity as an
    entropy's does. The paper pairs it with the retain constraint `dual` (method `pdu+dual`).
    """
    require(inp, "pdu", "logits")
    logits = inp.logits.float()
    margin = logits.max(-1).values - logits.mean(-1)
    return token_mean(margin**2, inp.mask)


@register("dual", "retain")
def dual(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L_r = lambda_k (CE_retain - eps), with the dual variable updated after each call k:
    lambda_{k+1} = max(0, lambda_k + dual_lr * (sg[CE_retain] - eps)), lambda_0 = 1.

    PDU's constraint CE_retain <= eps solved by primal-dual descent-ascent (Entesari et al. 2025,
    arXiv 2506.05314). CE_retain is GD's token-mean CE on the retain rows; eps = (1 + dual_tol) times
    the CE of the first call (the model before any update), the paper's eps = (1 + alpha) L_rtn(ref);
    for the first `dual_warmup` calls lambda stays at 1 (the paper's warm start). The retain term's
    total weight is retain_weight * lambda_k: it grows while the constraint is broken and shrinks
    toward 0 while it holds. lambda, eps and the call count live in the run's `state` and are logged.
    """
    require(inp, "dual", "state")
    state = inp.state
    ce = -token_mean(inp.token_logp, inp.mask)
    value = float(ce.detach())
    if "dual_eps" not in state:
        state.update(dual_eps=(1.0 + p.dual_tol) * value, dual_lambda=1.0, dual_calls=0)
    lam, eps = state["dual_lambda"], state["dual_eps"]
    state["dual_calls"] += 1
    if state["dual_calls"] > p.dual_warmup:
        state["dual_lambda"] = max(0.0, lam + p.dual_lr * (value - eps))
    return lam * (ce - eps)
