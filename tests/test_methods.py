"""The methods beyond GA/NPO/SimNPO/IDK: each loss against its formula on hand-made tensors, one
step in the right direction on a model that knows its forget answers, every trainable parameter in
scope changed and the loss logged (TRL's check)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from frequnlearn.config import from_dict
from frequnlearn.config.study import StudyConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.evaluate.known import normalize_value
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import encode_completion, encode_pair, get_prompt_format
from frequnlearn.records import QAItem, read_jsonl
from frequnlearn.unlearn import unlearn
from frequnlearn.unlearn.data import collate, encode_items
from frequnlearn.unlearn.loop import token_logprobs
from frequnlearn.unlearn.losses import FORGET_LOSSES, RETAIN_LOSSES, LossInputs, LossParams
from frequnlearn.unlearn.losses.altpo import alternate_answers
from frequnlearn.unlearn.losses.fga import still_known
from frequnlearn.unlearn.losses.rmu import decoder_blocks, mlp_parameter_names, steering_vector

# Two examples with 2 and 1 counted tokens.
LOGP = torch.tensor([[-9.0, -0.2, -1.5], [-0.1, -3.0, -0.7]])
MASK = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
COUNTED = [(0, 1), (0, 2), (1, 2)]


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _fn(name: str, inp: LossInputs, **params) -> float:
    return FORGET_LOSSES[name].fn(inp, LossParams(**params)).item()


# ---------------------------------------------------------------- formulas on hand-made tensors


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_dpo_formula(beta):
    refusal = LossInputs(
        torch.tensor([[-2.0, -2.0, -2.0], [-1.0, -1.0, -1.0]]), MASK, ref_logp=torch.tensor([-5.0, -1.5])
    )
    inp = LossInputs(LOGP, MASK, ref_logp=torch.tensor([-1.0, -0.2]), refusal=refusal)
    win = [-4.0 - -5.0, -1.0 - -1.5]
    lose = [-1.7 - -1.0, -0.7 - -0.2]
    expected = sum(-(2 / beta) * _logsigmoid(beta * (w - lo)) for w, lo in zip(win, lose)) / 2
    assert _fn("dpo", inp, beta=beta) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="dpo needs refusal"):
        _fn("dpo", LossInputs(LOGP, MASK, ref_logp=torch.zeros(2)))


@pytest.mark.parametrize(
    "name, weight",
    [
        ("wga", lambda p: p**1.5),
        ("satimp", lambda p: p**5.0 * (1 - p) ** 1.0),
    ],
)
def test_token_weighted_ascent_formula_and_stop_gradient(name, weight):
    token_logp = LOGP.clone().requires_grad_(True)
    value = FORGET_LOSSES[name].fn(LossInputs(token_logp, MASK), LossParams(wga_beta=1.5))
    weights = {bt: weight(math.exp(LOGP[bt].item())) for bt in COUNTED}
    expected = sum(weights[bt] * LOGP[bt].item() for bt in COUNTED) / len(COUNTED)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    # The weights are constants: d L / d log pi_t is w_t / N, not the product rule's extra term.
    for bt in COUNTED:
        assert token_logp.grad[bt].item() == pytest.approx(weights[bt] / len(COUNTED), rel=1e-5)
    assert token_logp.grad[0, 0].item() == 0.0


def test_wga_with_beta_zero_is_ga():
    inp = LossInputs(LOGP, MASK)
    assert _fn("wga", inp, wga_beta=0.0) == pytest.approx(_fn("ga", inp))


def test_undial_formula():
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.5, 0.5, 3.0]]])
    ref = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 4.0]]])
    targets = torch.tensor([[0, 2]])
    mask = torch.tensor([[1.0, 1.0]])
    inp = LossInputs(torch.zeros(1, 2), mask, targets=targets, logits=logits, ref_logits=ref)
    expected = 0.0
    for t in range(2):
        z = ref[0, t].tolist()
        z[targets[0, t]] -= 4.0
        q = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
        logpi = F.log_softmax(logits[0, t], -1).tolist()
        expected += -sum(qi * li for qi, li in zip(q, logpi)) / 2
    assert _fn("undial", inp, undial_strength=4.0) == pytest.approx(expected, rel=1e-6)
    # Strength 0 distils toward the reference itself: the minimum is the reference's entropy.
    same = LossInputs(torch.zeros(1, 2), mask, targets=targets, logits=ref, ref_logits=ref)
    entropy = -(F.softmax(ref, -1) * F.log_softmax(ref, -1)).sum(-1).mean().item()
    assert _fn("undial", same, undial_strength=0.0) == pytest.approx(entropy, rel=1e-6)


def test_rmu_and_act_formulas():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]], [[5.0, 5.0], [1.0, 1.0], [2.0, 0.0]]])
    steer = torch.tensor([0.5, 1.5])
    inp = LossInputs(LOGP, MASK, hidden=hidden, steer=steer)
    expected = sum(((hidden[b, t] - steer) ** 2).mean().item() for b, t in COUNTED) / len(COUNTED)
    assert _fn("rmu", inp) == pytest.approx(expected, rel=1e-6)
    ref_hidden = hidden + torch.tensor([1.0, -2.0])
    act = RETAIN_LOSSES["act"].fn(LossInputs(LOGP, MASK, hidden=hidden, ref_hidden=ref_hidden), LossParams())
    assert act.item() == pytest.approx((1.0 + 4.0) / 2, rel=1e-6)


def test_steering_vector_is_seeded_with_the_given_norm():
    v = steering_vector(16, 6.5, seed=3)
    assert v.norm().item() == pytest.approx(6.5, rel=1e-6) and (v >= 0).all()
    assert torch.equal(v, steering_vector(16, 6.5, seed=3)) and not torch.equal(
        v, steering_vector(16, 6.5, seed=4)
    )


def test_fga_weights_by_log_frequency_and_drops_forgotten_items():
    # Item 0's answer tokens are both the argmax (still known); item 1's is not.
    logits = torch.zeros(2, 3, 4)
    targets = torch.tensor([[3, 1, 2], [0, 0, 1]])
    logits[0, 1, 1] = logits[0, 2, 2] = 5.0
    logits[1, 2, 3] = 5.0
    inp = LossInputs(LOGP, MASK, targets=targets, logits=logits, frequency=torch.tensor([10.0, 1.0]))
    assert still_known(inp).tolist() == [1.0, 0.0]
    w0 = 1 + 0.5 * math.log(10)
    assert _fn("fga", inp, freq_scale=0.5) == pytest.approx(w0 * (-1.7) / 2, rel=1e-6)
    # Without the stop, both items count: sum_i w_i log pi(y_i) / all answer tokens.
    assert _fn("fga", inp, freq_scale=0.5, freq_stop=False) == pytest.approx(
        (w0 * -1.7 + 1 * -0.7) / 3, rel=1e-6
    )
    # Frequency 1 everywhere and no stop: GA.
    flat = LossInputs(LOGP, MASK, targets=targets, logits=logits, frequency=torch.ones(2))
    assert _fn("fga", flat, freq_stop=False) == pytest.approx(_fn("ga", flat))
    # Nothing known any more: no forget push at all.
    gone = LossInputs(LOGP, MASK, targets=targets, logits=-logits, frequency=torch.ones(2))
    assert _fn("fga", gone) == 0.0


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_altpo_formula(beta):
    # The published loss with the alternate a as winner and the answer y as loser, computed by hand.
    alternate = LossInputs(
        torch.tensor([[-2.0, -3.0, -0.5], [-1.0, -1.0, -4.0]]), MASK, ref_logp=torch.tensor([-4.0, -6.0])
    )
    inp = LossInputs(LOGP, MASK, ref_logp=torch.tensor([-1.0, -0.2]), alternate=alternate)
    win = [(-3.0 - 0.5) - -4.0, -4.0 - -6.0]
    lose = [-1.7 - -1.0, -0.7 - -0.2]
    expected = sum(-(2 / beta) * _logsigmoid(beta * (w - lo)) for w, lo in zip(win, lose)) / 2
    assert _fn("altpo", inp, beta=beta) == pytest.approx(expected, rel=1e-6)
    # At the reference the margin is 0: (2/beta) log 2, as for NPO and DPO.
    at_ref = LossInputs(
        LOGP,
        MASK,
        ref_logp=torch.tensor([-1.7, -0.7]),
        alternate=LossInputs(LOGP, MASK, ref_logp=torch.tensor([-1.7, -0.7])),
    )
    assert _fn("altpo", at_ref, beta=beta) == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="altpo needs alternate"):
        _fn("altpo", LossInputs(LOGP, MASK, ref_logp=torch.zeros(2)))


def _softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def test_ceu_formula_and_gradient():
    logits = torch.tensor([[[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 3.0, 0.0]]], requires_grad=True)
    targets = torch.tensor([[0, 2]])
    mask = torch.tensor([[1.0, 1.0]])
    inp = LossInputs(torch.zeros(1, 2), mask, targets=targets, logits=logits)
    value = FORGET_LOSSES["ceu"].fn(inp, LossParams())
    expected, grads = 0.0, []
    for t in range(2):
        z = logits[0, t].tolist()
        y = int(targets[0, t])
        # q: the model's distribution with the true token removed (renormalised over the others).
        others = [v for v in range(4) if v != y]
        q_others = _softmax([z[v] for v in others])
        q = [0.0] * 4
        for v, qv in zip(others, q_others):
            q[v] = qv
        pi = _softmax(z)
        expected += -sum(qv * math.log(pv) for qv, pv in zip(q, pi)) / 2
        grads.append([(pv - qv) / 2 for pv, qv in zip(pi, q)])
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # The target carries no gradient: dL/dz_t = (pi_t - q_t) / N, which lowers z_t[y_t].
    value.backward()
    assert logits.grad[0].tolist() == [pytest.approx(g, rel=1e-5, abs=1e-7) for g in grads]
    assert logits.grad[0, 0, 0] > 0 and logits.grad[0, 1, 2] > 0


def test_pdu_formula_and_dual_ascent():
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.5, 0.5, 3.0], [9.0, 9.0, 9.0]]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    inp = LossInputs(torch.zeros(1, 3), mask, logits=logits)
    expected = ((2.0 - 1.0) ** 2 + (3.0 - 4.0 / 3) ** 2 + 0.0) / 3
    assert _fn("pdu", inp) == pytest.approx(expected, rel=1e-6)
    # Uniform logits are the minimum, whatever their level.
    assert _fn("pdu", LossInputs(torch.zeros(1, 3), mask, logits=torch.full((1, 3, 3), 7.0))) == 0.0

    dual = RETAIN_LOSSES["dual"].fn
    params = LossParams(dual_tol=0.5, dual_lr=2.0, dual_warmup=1)
    state: dict = {}

    def call(ce: float) -> float:
        token_logp = torch.full((1, 2), -ce)
        return dual(LossInputs(token_logp, torch.ones(1, 2), state=state), params).item()

    # First call: eps = 1.5 * 2.0 = 3.0, lambda_0 = 1, and the warm-up keeps lambda at 1.
    assert call(2.0) == pytest.approx(2.0 - 3.0) and state["dual_eps"] == pytest.approx(3.0)
    assert state["dual_lambda"] == 1.0
    # Second call: the loss uses lambda = 1; then lambda += 2 * (5 - 3) = 5.
    assert call(5.0) == pytest.approx(1.0 * (5.0 - 3.0)) and state["dual_lambda"] == pytest.approx(5.0)
    assert call(4.0) == pytest.approx(5.0 * (4.0 - 3.0)) and state["dual_lambda"] == pytest.approx(7.0)
    # A constraint that holds lowers lambda, never below 0.
    assert call(0.0) == pytest.approx(7.0 * -3.0) and state["dual_lambda"] == pytest.approx(1.0)
    call(0.0)
    assert state["dual_lambda"] == 0.0 and state["dual_calls"] == 5
    with pytest.raises(ValueError, match="dual needs state"):
        dual(LossInputs(torch.zeros(1, 2), torch.ones(1, 2)), params)


def test_mpu_formula_gradient_and_stop():
    # Item 0: token margins 2 - 1 = 1 and 5 - 0 = 5 (a confident template token); the weakest link is
    # token 0. Baseline: 3 - 0 = 3 and 6 - 0 = 6, so M0 = 3. Item 1 is past the target (-2.5 < -1).
    # Item 2 was below the target at baseline (-2), so it is never pushed although it is known now.
    logits = torch.tensor(
        [
            [[2.0, 1.0, 0.0], [5.0, 0.0, 0.0]],
            [[0.5, 3.0, 0.0], [4.0, 0.0, 0.0]],
            [[0.0, 4.0, 0.0], [0.0, 4.0, 0.0]],
        ],
        requires_grad=True,
    )
    ref = torch.tensor(
        [
            [[3.0, 0.0, -1.0], [6.0, 0.0, 0.0]],
            [[4.0, 1.0, 0.0], [4.0, 0.0, 0.0]],
            [[0.0, 0.0, 2.0], [0.0, 4.0, 0.0]],
        ]
    )
    targets = torch.tensor([[0, 0], [0, 0], [1, 1]])
    mask = torch.ones(3, 2)
    inp = LossInputs(torch.zeros(3, 2), mask, targets=targets, logits=logits, ref_logits=ref)
    delta = 1.0
    value = FORGET_LOSSES["mpu"].fn(inp, LossParams(mpu_delta=delta))
    w0 = 3.0 + delta
    assert value.item() == pytest.approx(w0 * (1.0 + delta) / 3, rel=1e-6)
    value.backward()
    grad = logits.grad
    # Only the weakest token of the active item moves: its answer logit (descent lowers it) and its
    # best rival (raised); the confident token and the other items get nothing.
    assert grad[0, 0].tolist() == pytest.approx([w0 / 3, -w0 / 3, 0.0])
    assert grad[0, 1].abs().sum() == 0 and grad[1:].abs().sum() == 0
    # Masked positions never count as the weakest link.
    masked = LossInputs(
        torch.zeros(1, 2),
        torch.tensor([[0.0, 1.0]]),
        targets=torch.tensor([[0, 0]]),
        logits=torch.tensor([[[-9.0, 0.0], [2.0, 0.0]]]),
        ref_logits=torch.tensor([[[-9.0, 0.0], [2.0, 0.0]]]),
    )
    assert _fn("mpu", masked, mpu_delta=delta) == pytest.approx((2.0 + delta) ** 2)
    # Equal pacing: each item's push is proportional to its baseline distance from the target.
    two = LossInputs(
        torch.zeros(2, 1),
        torch.ones(2, 1),
        targets=torch.tensor([[0], [0]]),
        logits=torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]], requires_grad=True),
        ref_logits=torch.tensor([[[1.0, 0.0]], [[5.0, 0.0]]]),
    )
    FORGET_LOSSES["mpu"].fn(two, LossParams(mpu_delta=delta)).backward()
    g = two.logits.grad[:, 0, 0]
    assert (g[1] / g[0]).item() == pytest.approx((5.0 + delta) / (1.0 + delta), rel=1e-6)


# ---------------------------------------------------------------- one step on a model that knows its answers

FORGET = [
    QAItem("f0", "Who employs Ada Mae Lovelace?", "Google", frequency=10.0),
    QAItem("f1", "What is the birth city of Alan Turing?", "London, UK", frequency=1.0),
    QAItem("f2", "Who employs Alan Mathison Turing?", "Apple", frequency=10.0),
]
RETAIN = [
    QAItem("r0", "Who employs Ada?", "Stanford University"),
    QAItem("r1", "What is the birth city of Mae?", "Paris"),
]


def _batch(tok, items):
    return collate(
        [(ex, "answer") for ex in encode_items(tok, get_prompt_format("plain"), items)], tok.pad_token_id
    )


@pytest.fixture(scope="module")
def knowing_dir(tiny_gpt2_dir, tmp_path_factory):
    """The tiny GPT-2 fitted to the forget and retain answers, so every forget answer is greedy-known
    (the token-weighted methods barely move a model whose answers have probability 1/vocab)."""
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(model.config, key, 0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.manual_seed(0)
    batch = _batch(tok, FORGET + RETAIN)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        _, token_logp = token_logprobs(model, batch)
        loss = -(token_logp * batch["loss_mask"]).sum() / batch["loss_mask"].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, token_logp = token_logprobs(model, _batch(tok, FORGET))
    fb = _batch(tok, FORGET)
    assert still_known(
        LossInputs(token_logp, fb["loss_mask"], targets=fb["input_ids"][:, 1:], logits=logits)
    ).all()
    path = tmp_path_factory.mktemp("knowing")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _cfg(**kw) -> UnlearnConfig:
    base = {"lr": 1e-3, "batch_size": 3, "max_steps": 1, "eval_steps": [], "weight_decay": 0.0, "seed": 0}
    return from_dict(UnlearnConfig, {**base, **kw})


@torch.no_grad()
def _answer_logp(model, tok) -> float:
    model.eval()
    batch = _batch(tok, FORGET)
    _, token_logp = token_logprobs(model, batch)
    return ((token_logp * batch["loss_mask"]).sum() / batch["loss_mask"].sum()).item()


@torch.no_grad()
def _distance_to_steer(model, tok, layer: int, steer: torch.Tensor) -> float:
    """RMU's forget quantity: mean squared gap between block `layer`'s output on answer tokens and the target."""
    model.eval()
    batch = _batch(tok, FORGET)
    seen = []
    handle = decoder_blocks(model)[layer].register_forward_hook(
        lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    token_logprobs(model, batch)
    handle.remove()
    sq = ((seen[0][:, 1:] - steer) ** 2).mean(-1)
    return ((sq * batch["loss_mask"]).sum() / batch["loss_mask"].sum()).item()


@pytest.mark.parametrize(
    "method", ["dpo", "altpo", "ceu", "pdu", "mpu", "rmu", "undial", "wga", "satimp", "fga"]
)
def test_one_step_forgets_changes_every_parameter_in_scope_and_logs(knowing_dir, tmp_path, method):
    model, tok = load_model_and_tokenizer(knowing_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    layer = 1
    steer = steering_vector(model.config.hidden_size, 6.5, seed=0)
    if method == "rmu":
        start = _distance_to_steer(model, tok, layer, steer)
    else:
        start = _answer_logp(model, tok)
    result = unlearn(model, tok, FORGET, RETAIN, _cfg(method=method, rmu_layer=layer), tmp_path)
    if method == "rmu":
        assert _distance_to_steer(model, tok, layer, steer) < start
        scope = set(mlp_parameter_names(model, layer))
        assert scope and all(".mlp." in n and (".h.0." in n or ".h.1." in n) for n in scope)
    else:
        assert _answer_logp(model, tok) < start
        scope = set(before)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == scope
    (row,) = read_jsonl(tmp_path / "log.jsonl")
    assert (
        row == result.log[0]
        and math.isfinite(row["loss"])
        and row["loss"] == pytest.approx(row["forget_loss"])
    )


def test_altpo_alternates_are_the_models_own_and_never_the_answer_or_a_candidate(knowing_dir):
    model, tok = load_model_and_tokenizer(knowing_dir)
    fmt = get_prompt_format("plain")
    items = [dataclasses.replace(it, candidates=["Paris", "Stanford University"]) for it in FORGET]
    model.train()
    alts = alternate_answers(model, tok, fmt, items, seed=0)
    assert model.training  # given back in the mode it had
    for it, alt in zip(items, alts):
        assert alt and alt == alt.strip()
        assert normalize_value(alt) not in {normalize_value(t) for t in (it.answer, *it.candidates)}
    # Seeded per item: the same draws whatever the order or the company of the items.
    assert alternate_answers(model, tok, fmt, items[::-1], seed=0) == alts[::-1]
    assert alternate_answers(model, tok, fmt, items[:1], seed=0) == alts[:1]


class _MarkovLM(torch.nn.Module):
    """Next-token logits set by the current token alone (a lookup table)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


def test_altpo_stops_with_one_line_when_the_model_has_no_alternate(tiny_tokenizer):
    # After the answer's leading space the model can only go on with " Paris", a candidate.
    tok = tiny_tokenizer
    fmt = get_prompt_format("plain")
    item = QAItem("x", "Who employs Ada?", "Google", candidates=["Paris"])
    _, answer_ids = encode_pair(tok, fmt, item.question, item.answer)
    paris = encode_completion(tok, fmt.completion("Paris"))
    assert tok.decode([answer_ids[0]]).strip() == "" and paris[0] != answer_ids[0]
    table = torch.full((len(tok), len(tok)), float("-inf"))
    table[:, answer_ids[0]] = 0.0  # whatever the prompt ends with, then the space
    table[answer_ids[0]] = float("-inf")
    table[answer_ids[0], paris[0]] = table[answer_ids[0], answer_ids[1]] = 0.0
    for a, b in zip(paris, paris[1:]):
        table[a] = float("-inf")
        table[a, b] = 0.0
    table[paris[-1]] = float("-inf")
    table[paris[-1], tok.eos_token_id] = 0.0
    with pytest.raises(DataError, match="forget item x: AltPO found no alternate answer in 8 samples"):
        alternate_answers(_MarkovLM(table), tok, fmt, [item], seed=0)


@pytest.mark.parametrize("spec", ["rmu+act", "undial+kl", "dpo+gd", "pdu+dual"])
def test_retain_terms_are_logged_and_added(knowing_dir, tmp_path, spec):
    method, retain_loss = spec.split("+")
    model, tok = load_model_and_tokenizer(knowing_dir)
    result = unlearn(
        model, tok, FORGET, RETAIN, _cfg(method=method, retain_loss=retain_loss, max_steps=2), tmp_path
    )
    first, last = result.log
    assert first["loss"] == pytest.approx(first["forget_loss"] + first["retain_loss"], rel=1e-5)
    # Act and KL compare with the frozen model: zero before the first update (no dropout), positive after.
    if retain_loss in ("act", "kl"):
        assert first["retain_loss"] == pytest.approx(0.0, abs=1e-6) and last["retain_loss"] > 0
    if retain_loss == "dual":
        # lambda_0 = 1 and eps = 1.1 x the first CE, so the first retain term is -eps / 11; the dual
        # variable and its bound are logged.
        assert first["retain_loss"] == pytest.approx(-first["dual_eps"] / 11, rel=1e-5)
        assert first["dual_calls"] == 1 and last["dual_calls"] == 2 and last["dual_eps"] == first["dual_eps"]
        assert first["dual_lambda"] >= 0.0


def test_rmu_hooks_llama_blocks_too(tiny_llama_dir, tmp_path):
    model, tok = load_model_and_tokenizer(tiny_llama_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    unlearn(model, tok, FORGET, RETAIN, _cfg(method="rmu", retain_loss="act", rmu_layer=0), tmp_path)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == {n for n in before if n.startswith("model.layers.0.mlp.")}


def test_method_errors(tiny_gpt2_dir, tmp_path):
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    with pytest.raises(ConfigError, match=r"rmu_layer: 5, but the model has 2 blocks; choose 0..1"):
        unlearn(model, tok, FORGET, RETAIN, _cfg(method="rmu", rmu_layer=5), tmp_path)
    unknown = [QAItem("x", "Who employs Ada?", "Google")]
    with pytest.raises(DataError, match="forget item x: no frequency"):
        unlearn(model, tok, unknown, RETAIN, _cfg(method="fga"), tmp_path)
    with pytest.raises(
        ConfigError, match="retain_loss: unknown retain term 'l2'; choose from act, dual, gd, kl, none"
    ):
        from_dict(UnlearnConfig, {"retain_loss": "l2"})


# ---------------------------------------------------------------- names and per-method settings in a study


def test_cli_and_study_take_every_registered_method():
    from frequnlearn.config.study import parse_method
    from frequnlearn.unlearn.cli import method_overrides

    for name in FORGET_LOSSES:
        assert method_overrides(f"{name}+gd") == [f"method={name}", "retain_loss=gd"]
        assert parse_method(name) == (name, "none")
    with pytest.raises(ConfigError, match="--method 'gradascent': expected FORGET.*dpo, fga, ga"):
        method_overrides("gradascent")
    with pytest.raises(ConfigError, match="methods: 'rmu\\+l2' is not FORGET"):
        parse_method("rmu+l2")


def test_study_method_overrides(tmp_path):
    from frequnlearn.study import Study

    study = {"methods": ["ga+gd", "rmu+act"], "method_overrides": {"rmu+act": {"lr": 1e-3, "rmu_coeff": 20}}}
    cfg = from_dict(StudyConfig, {"unlearn": {"lr": 1e-4}, "study": study})
    s = Study(cfg, tmp_path)
    rmu = s.unlearn_cfg({"method": "rmu+act", "seed": 1})
    ga = s.unlearn_cfg({"method": "ga+gd", "seed": 1})
    assert (rmu.method, rmu.retain_loss, rmu.lr, rmu.rmu_coeff, rmu.seed) == ("rmu", "act", 1e-3, 20.0, 1)
    assert (ga.lr, ga.rmu_coeff) == (1e-4, 6.5)
    for over, fragment in (
        ({"npo+gd": {"lr": 1.0}}, "study.method_overrides: 'npo\\+gd' is not in methods"),
        ({"rmu+act": {"lr": -1.0}}, "study.method_overrides.rmu\\+act.lr: must be >= 0"),
        ({"rmu+act": {"lrr": 1.0}}, "study.method_overrides.rmu\\+act.lrr: unknown key"),
        ({"rmu+act": {"method": "ga"}}, "study.method_overrides.rmu\\+act.method: is set by the study"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            from_dict(StudyConfig, {"study": {**study, "method_overrides": over}})
