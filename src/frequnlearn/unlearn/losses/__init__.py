"""Unlearning losses, one file per method, registered by name (the registry is the only list).

Forget terms: ga, npo, simnpo, idk, dpo (IdkDPO), rmu, undial, wga, satimp and fga (this project's
frequency-aware GA). Retain terms: none, gd, kl, act (RMU's activation matching). Adding a method is
one file with one `@register` function, imported here; `needs` tells the loop what to prepare.
"""

from frequnlearn.unlearn.losses import (  # noqa: F401  (each module registers its losses)
    dpo,
    fga,
    ga,
    idk,
    npo,
    retain,
    rmu,
    satimp,
    simnpo,
    undial,
    wga,
)
from frequnlearn.unlearn.losses.base import (
    FORGET_LOSSES,
    RETAIN_LOSSES,
    Loss,
    LossFn,
    LossInputs,
    LossParams,
    get_loss,
    loss_names,
    register,
    sequence_logp,
    token_mean,
)

__all__ = [
    "FORGET_LOSSES",
    "RETAIN_LOSSES",
    "Loss",
    "LossFn",
    "LossInputs",
    "LossParams",
    "get_loss",
    "loss_names",
    "register",
    "sequence_logp",
    "token_mean",
]
