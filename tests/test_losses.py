from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from frequnlearn.config.unlearn import method_names
from frequnlearn.errors import ConfigError
from frequnlearn.unlearn.losses import (
    FORGET_LOSSES,
    LossInputs,
    LossParams,
    get_loss,
    sequence_logp,
)
from frequnlearn.unlearn.losses import (
    RETAIN_LOSSES as RETAIN_REGISTRY,
)

# Three examples with 2, 3 and 1 counted tokens (the mask hides prompt and padding positions).
TOKEN_LOGP = torch.tensor(
    [
        [-9.0, -1.0, -2.0, -7.0],
        [-0.5, -1.5, -3.0, -4.0],
        [-8.0, -8.0, -8.0, -0.25],
    ]
)
MASK = torch.tensor(
    [
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SEQ = [-3.0, -8.5, -0.25]  # log pi(y|x) by hand
LENS = [2, 3, 1]
REF = torch.tensor([-2.0, -10.0, -0.25])


def _inputs(**kw) -> LossInputs:
    return LossInputs(TOKEN_LOGP.clone(), MASK.clone(), **kw)


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_sequence_logp_sums_masked_tokens():
    assert sequence_logp(_inputs()).tolist() == SEQ


def test_ga_is_minus_cross_entropy_over_all_answer_tokens():
    value = FORGET_LOSSES["ga"].fn(_inputs(), LossParams())
    assert value.item() == pytest.approx(sum(SEQ) / sum(LENS))


def test_idk_and_gd_are_cross_entropy():
    # IDK scores the refusal rows; GD the retain rows themselves.
    assert FORGET_LOSSES["idk"].fn(
        LossInputs(TOKEN_LOGP * 0, MASK, refusal=_inputs()), LossParams()
    ).item() == pytest.approx(-sum(SEQ) / sum(LENS))
    assert RETAIN_REGISTRY["gd"].fn(_inputs(), LossParams()).item() == pytest.approx(-sum(SEQ) / sum(LENS))


@pytest.mark.parametrize("beta", [0.1, 1.0, 2.5])
def test_npo_formula(beta):
    expected = sum(-(2 / beta) * _logsigmoid(-beta * (s - r)) for s, r in zip(SEQ, REF.tolist())) / 3
    value = FORGET_LOSSES["npo"].fn(_inputs(ref_logp=REF), LossParams(beta=beta))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_npo_at_the_reference_is_2_log2_over_beta():
    value = FORGET_LOSSES["npo"].fn(_inputs(ref_logp=torch.tensor(SEQ)), LossParams(beta=0.1))
    assert value.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)


def test_npo_without_reference_is_an_error():
    with pytest.raises(ValueError, match="ref_logp"):
        FORGET_LOSSES["npo"].fn(_inputs(), LossParams())


@pytest.mark.parametrize("beta, gamma", [(0.1, 0.0), (2.5, 0.0), (1.0, 0.5)])
def test_simnpo_formula(beta, gamma):
    expected = sum(-(2 / beta) * _logsigmoid(-(beta / n) * s - gamma) for s, n in zip(SEQ, LENS)) / 3
    value = FORGET_LOSSES["simnpo"].fn(_inputs(), LossParams(beta=beta, gamma=gamma))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_kl_formula_and_zero_at_reference():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5)
    ref_logits = torch.randn(3, 4, 5)
    value = RETAIN_REGISTRY["kl"].fn(_inputs(logits=logits, ref_logits=ref_logits), LossParams()).item()
    p = F.softmax(ref_logits, -1)
    per_pos = (p * (p.log() - F.log_softmax(logits, -1))).sum(-1)
    expected = sum(per_pos[b, t].item() for b in range(3) for t in range(4) if MASK[b, t]) / sum(LENS)
    assert value == pytest.approx(expected, rel=1e-5)
    assert value > 0
    same = RETAIN_REGISTRY["kl"].fn(_inputs(logits=logits, ref_logits=logits.clone()), LossParams()).item()
    assert same == pytest.approx(0.0, abs=1e-6)


def test_no_retain_term_is_zero():
    assert RETAIN_REGISTRY["none"].fn(_inputs(), LossParams()).item() == 0.0


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def _grad(name: str, beta: float) -> torch.Tensor:
    token_logp = TOKEN_LOGP.clone().requires_grad_(True)
    FORGET_LOSSES[name].fn(LossInputs(token_logp, MASK, ref_logp=REF), LossParams(beta=beta)).backward()
    return token_logp.grad


def test_npo_gradient_tends_to_ga_direction_as_beta_shrinks():
    ga = _grad("ga", 0.1)
    cos = {beta: _cosine(_grad("npo", beta), ga) for beta in (5.0, 1.0, 0.1, 1e-3)}
    assert cos[1e-3] > 0.99999
    # Far from the reference NPO re-weights examples (sigmoid(beta * ratio)), so the directions part.
    assert cos[5.0] < 0.9
    assert cos[5.0] < cos[1.0] < cos[0.1] < cos[1e-3]


def test_npo_gradient_tends_to_ga_on_model_parameters(tiny_gpt2_dir):
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.models.prompts import get_prompt_format
    from frequnlearn.records import QAItem
    from frequnlearn.unlearn.data import collate, encode_items
    from frequnlearn.unlearn.loop import token_logprobs

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    model.eval()
    items = [
        QAItem(f"i{k}", f"Who employs Alan {k}?", a) for k, a in enumerate(["Google", "Apple", "London, UK"])
    ]
    batch = collate(
        [(ex, "answer") for ex in encode_items(tok, get_prompt_format("plain"), items)], tok.pad_token_id
    )
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(name: str, beta: float) -> torch.Tensor:
        model.zero_grad()
        _, token_logp = token_logprobs(model, batch)
        ref = sequence_logp(LossInputs(token_logp, batch["loss_mask"])).detach() + torch.tensor(
            [3.0, -4.0, 0.5]
        )
        FORGET_LOSSES[name].fn(
            LossInputs(token_logp, batch["loss_mask"], ref_logp=ref), LossParams(beta=beta)
        ).backward()
        return torch.cat([p.grad.flatten() for p in params])

    ga = grad("ga", 0.1)
    assert _cosine(grad("npo", 1e-3), ga) > 0.9999
    assert _cosine(grad("npo", 5.0), ga) < _cosine(grad("npo", 0.5), ga) < _cosine(grad("npo", 1e-3), ga)


def test_registry_matches_config_choices():
    forget_methods, retain_losses = method_names()
    assert forget_methods == sorted(FORGET_LOSSES) and retain_losses == sorted(RETAIN_REGISTRY)
    assert FORGET_LOSSES["npo"].needs == {"ref_logp"}
    assert RETAIN_REGISTRY["kl"].needs == {"ref_logits"}
    assert not FORGET_LOSSES["simnpo"].needs  # SimNPO needs no reference model


def test_unknown_loss_name():
    with pytest.raises(ConfigError, match="method: unknown loss 'gradascent'"):
        get_loss("gradascent", "forget")


def test_every_loss_file_registers_itself():
    # A new method is one file in unlearn/losses/: the package imports every module in it.
    import pkgutil

    import frequnlearn.unlearn.losses as losses

    modules = {m.name for m in pkgutil.iter_modules(losses.__path__)} - {"base"}
    registered = {
        loss.fn.__module__.rsplit(".", 1)[1]
        for loss in [*losses.FORGET_LOSSES.values(), *losses.RETAIN_LOSSES.values()]
    }
    assert modules == registered
