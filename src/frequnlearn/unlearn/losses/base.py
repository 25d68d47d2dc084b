"""The loss contract: what a loss sees (`LossInputs`), its settings (`LossParams`) and the registry.

A loss is a pure function of tensors the loop prepares. It declares what it needs beyond the
policy's own token log-probabilities, so the loop prepares only that:

  ref_logp    log ref(y|x) of each forget row, precomputed once before training (NPO, DPO)
  ref_logits  the frozen model's logits on the loss's own rows (KL, UNDIAL)
  hidden      activations of block `rmu_layer` on the loss's rows, through a forward hook (RMU)
  ref_hidden  the frozen model's activations of that block (activation-matching retain term)
  refusal     the forget rows again, answered with the refusal text (IDK, DPO)
  frequency   each forget item's recorded frequency (the frequency-aware method)

Conventions (x = prompt, y = answer, |y| = its masked length, B = examples in the batch):
log pi(y|x) is the sum of the masked token log-probs of one example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from frequnlearn import names
from frequnlearn.errors import ConfigError

Need = Literal["ref_logp", "ref_logits", "hidden", "ref_hidden", "refusal", "frequency"]
Kind = Literal["forget", "retain"]


@dataclass
class LossInputs:
    token_logp: torch.Tensor  # [B, L] log-prob of each target token
    mask: torch.Tensor  # [B, L] 1.0 where the loss counts
    targets: torch.Tensor | None = None  # [B, L] target token ids, aligned with token_logp
    logits: torch.Tensor | None = None  # [B, L, V] model logits aligned with token_logp
    ref_logp: torch.Tensor | None = None  # [B] reference log pi(y|x) over the same mask
    ref_logits: torch.Tensor | None = None  # [B, L, V] reference logits, same alignment
    hidden: torch.Tensor | None = None  # [B, L, H] activations at the target tokens' positions
    ref_hidden: torch.Tensor | None = None  # [B, L, H] the frozen model's, same positions
    steer: torch.Tensor | None = None  # [H] RMU's scaled random direction
    frequency: torch.Tensor | None = None  # [B] recorded frequency of each item
    refusal: LossInputs | None = None  # the same items answered with the refusal


@dataclass(frozen=True)
class LossParams:
    """Every method's settings (the fields of `UnlearnConfig` with the same names)."""

    beta: float = 0.1
    gamma: float = 0.0
    wga_beta: float = 1.0
    satimp_beta1: float = 5.0
    satimp_beta2: float = 1.0
    undial_strength: float = 10.0
    freq_scale: float = 1.0
    freq_stop: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> LossParams:
        import dataclasses

        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


LossFn = Callable[[LossInputs, LossParams], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    name: str
    kind: Kind
    fn: LossFn
    needs: frozenset[str]


FORGET_LOSSES: dict[str, Loss] = names.table(names.FORGET_LOSS)
RETAIN_LOSSES: dict[str, Loss] = names.table(names.RETAIN_LOSS)


def register(name: str, kind: Kind, needs: tuple[Need, ...] = ()) -> Callable[[LossFn], LossFn]:
    def deco(fn: LossFn) -> LossFn:
        table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
        table[name] = Loss(name, kind, fn, frozenset(needs))
        return fn

    return deco


def loss_names(kind: Kind) -> list[str]:
    """The registered names: the only list of methods (config validation and CLI choices use it)."""
    return sorted(FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES)


def get_loss(name: str, kind: Kind) -> Loss:
    table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
    if name not in table:
        key = "method" if kind == "forget" else "retain_loss"
        raise ConfigError(f"{key}: unknown loss {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def sequence_logp(inp: LossInputs) -> torch.Tensor:
    """log pi(y|x) per example: the sum over masked tokens."""
    return (inp.token_logp * inp.mask).sum(-1)


def token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over every masked token of the batch (a causal LM's loss averages this way)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def require(inp: LossInputs, name: str, *fields: str) -> None:
    missing = [f for f in fields if getattr(inp, f) is None]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)}")
