"""Unlearning losses as pure functions of log-probabilities and masks, registered by name.

Every loss sees a `LossInputs`: the log-probability of each target token, a mask of the tokens it
counts (answer tokens for forget terms), and, for the losses that declare they need them, the
reference model's summed log-probabilities (NPO) or both models' logits (KL). Adding a method is one
function and one `@register` line; `needs` tells the loop what to prepare before training.

Conventions (x = prompt, y = answer, N = masked tokens in the batch, B = examples):
  log pi(y|x) is the sum of the masked token log-probs of one example; |y| is its masked length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from frequnlearn.errors import ConfigError

Need = Literal["ref_logp", "ref_model"]


@dataclass
class LossInputs:
    token_logp: torch.Tensor  # [B, L] log-prob of each target token
    mask: torch.Tensor  # [B, L] 1.0 where the loss counts
    ref_logp: torch.Tensor | None = None  # [B] reference log pi(y|x) over the same mask
    logits: torch.Tensor | None = None  # [B, L, V] model logits aligned with token_logp
    ref_logits: torch.Tensor | None = None  # [B, L, V] reference logits, same alignment


@dataclass(frozen=True)
class LossParams:
    beta: float = 0.1
    gamma: float = 0.0


LossFn = Callable[[LossInputs, LossParams], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    name: str
    kind: Literal["forget", "retain"]
    fn: LossFn
    needs: frozenset[str]


FORGET_LOSSES: dict[str, Loss] = {}
RETAIN_LOSSES: dict[str, Loss] = {}


def register(
    name: str, kind: Literal["forget", "retain"], needs: tuple[Need, ...] = ()
) -> Callable[[LossFn], LossFn]:
    def deco(fn: LossFn) -> LossFn:
        table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
        table[name] = Loss(name, kind, fn, frozenset(needs))
        return fn

    return deco


def get_loss(name: str, kind: Literal["forget", "retain"]) -> Loss:
    table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
    if name not in table:
        key = "method" if kind == "forget" else "retain_loss"
        raise ConfigError(f"{key}: unknown loss {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def sequence_logp(inp: LossInputs) -> torch.Tensor:
    """log pi(y|x) per example: the sum over masked tokens."""
    return (inp.token_logp * inp.mask).sum(-1)


def _mean_token_logp(inp: LossInputs) -> torch.Tensor:
    """Mean log-prob over every masked token of the batch (= -CE, as a causal LM's loss averages)."""
    return (inp.token_logp * inp.mask).sum() / inp.mask.sum().clamp(min=1.0)


@register("ga", "forget")
def ga(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """-CE(y|x): minimising it pushes the forget answers' log-probability down without bound."""
    return _mean_token_logp(inp)


@register("npo", "forget", needs=("ref_logp",))
def npo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """-(2/beta) log sigmoid(-beta (log pi(y|x) - log ref(y|x))), averaged over examples.

    Its gradient weights each example by 2 sigmoid(beta * ratio), so it slows down once an answer
    is already less likely than under the reference, unlike GA.
    """
    if inp.ref_logp is None:
        raise ValueError("npo needs the reference log-probabilities (ref_logp)")
    ratio = sequence_logp(inp) - inp.ref_logp
    return -(2.0 / p.beta) * F.logsigmoid(-p.beta * ratio).mean()


@register("simnpo", "forget")
def simnpo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """-(2/beta) log sigmoid(-(beta/|y|) log pi(y|x) - gamma): NPO without a reference model,
    length-normalised."""
    length = inp.mask.sum(-1).clamp(min=1.0)
    return -(2.0 / p.beta) * F.logsigmoid(-(p.beta / length) * sequence_logp(inp) - p.gamma).mean()


@register("idk", "forget")
def idk(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """CE of the refusal answer (the batch carries the refusal in place of the true answer)."""
    return -_mean_token_logp(inp)


@register("none", "retain")
def no_retain(inp: LossInputs, p: LossParams) -> torch.Tensor:
    return inp.token_logp.new_zeros(())


@register("gd", "retain")
def gd(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """CE on retain pairs (GradDiff): keeps what should stay known likely."""
    return -_mean_token_logp(inp)


@register("kl", "retain", needs=("ref_model",))
def kl(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """KL(ref || pi) of next-token distributions, averaged over masked retain positions."""
    if inp.logits is None or inp.ref_logits is None:
        raise ValueError("kl needs the model's and the reference model's logits")
    logq = F.log_softmax(inp.logits.float(), dim=-1)
    logp_ref = F.log_softmax(inp.ref_logits.float(), dim=-1)
    per_pos = (logp_ref.exp() * (logp_ref - logq)).sum(-1)
    return (per_pos * inp.mask).sum() / inp.mask.sum().clamp(min=1.0)
