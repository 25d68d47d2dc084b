"""Unlearning losses, one file per method, registered by name (the registry is the only list).

Forget terms: ga, npo, simnpo, idk, dpo (IdkDPO), altpo, ceu, pdu, rmu, undial, wga, satimp, and
this project's frequency-aware fga and mpu. Retain terms: none, gd, kl, act (RMU's activation
matching), dual (PDU's primal-dual constraint). Adding a method is one file in this folder with one
`@register` function (every module here is imported, so it registers itself); `needs` tells the loop
what to prepare. A method kept outside the package is a plugin: `load_plugins` imports the file or
module a user names, and its `@register` puts it beside these.
"""

import importlib
import pkgutil

from frequnlearn.unlearn.losses.base import (
    FORGET_LOSSES,
    RETAIN_LOSSES,
    Loss,
    LossFn,
    LossInputs,
    LossParams,
    get_loss,
    load_plugins,
    loss_names,
    plugin_records,
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
    "load_plugins",
    "loss_names",
    "plugin_records",
    "register",
    "sequence_logp",
    "token_mean",
]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")
