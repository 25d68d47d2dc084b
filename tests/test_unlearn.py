from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from frequnlearn.config import from_dict
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.errors import ConfigError, DataError, TrainingError
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import QAItem, read_json, read_jsonl
from frequnlearn.unlearn import UnlearnResult, unlearn
from frequnlearn.unlearn import losses as losses_mod
from frequnlearn.unlearn.data import collate, encode_items, pair_indices
from frequnlearn.unlearn.loop import setup, token_logprobs, train_step

FORGET = [
    QAItem("f0", "Who employs Ada Mae Lovelace?", "Google"),
    QAItem("f1", "What is the birth city of Alan Turing?", "London, UK"),
    QAItem("f2", "Who employs Alan Mathison Turing?", "Apple"),
    QAItem("f3", "What is the birth city of Ada?", "Paris"),
]
RETAIN = [
    QAItem("r0", "Who employs Ada?", "Apple in Cupertino, CA"),
    QAItem("r1", "What is the birth city of Mae?", "Paris"),
    QAItem("r2", "Who employs Turing?", "Stanford University"),
]
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def _cfg(**kw) -> UnlearnConfig:
    base = {"lr": 1e-3, "batch_size": 4, "max_steps": 1, "eval_steps": [], "weight_decay": 0.0}
    return from_dict(UnlearnConfig, {**base, **kw})


def _model(path, dropout: bool = True):
    model, tok = load_model_and_tokenizer(path)
    if not dropout:
        for key, value in NO_DROPOUT.items():
            setattr(model.config, key, value)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model, tok


@torch.no_grad()
def _answer_logp(model, tok, items, answer=None) -> float:
    """Mean per-token log-probability of the answers (or of `answer` for every item), eval mode."""
    model.eval()
    batch = collate(
        [(ex, "answer") for ex in encode_items(tok, get_prompt_format("plain"), items, answer)],
        tok.pad_token_id,
    )
    _, token_logp = token_logprobs(model, batch)
    return ((token_logp * batch["loss_mask"]).sum() / batch["loss_mask"].sum()).item()


@pytest.mark.parametrize(
    "spec, answer_text",
    [("plain", " Google"), ("olmo", "Google"), ("Q: {question} A: {answer}.", " Google.")],
)
def test_encoding_masks_answer_or_full_sequence(tiny_gpt2_dir, spec, answer_text):
    _, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    (ex,) = encode_items(tok, get_prompt_format(spec), [FORGET[0]])
    batch = collate([(ex, "answer"), (ex, "full")], tok.pad_token_id)
    n = len(ex.input_ids)
    answer_targets = [ex.input_ids[j + 1] for j in range(n - 1) if batch["loss_mask"][0, j]]
    assert tok.decode(answer_targets) == answer_text
    assert batch["loss_mask"][1, : n - 1].sum().item() == n - 1  # every token after BOS
    assert ex.input_ids[0] == tok.bos_token_id


def test_chat_format_uses_the_tokenizer_template(tiny_gpt2_dir):
    _, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    tok.chat_template = "{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}Bot:{% endif %}"
    (ex,) = encode_items(tok, get_prompt_format("chat"), [FORGET[0]])
    assert tok.decode(ex.input_ids[1 : ex.answer_start]) == "User: Who employs Ada Mae Lovelace?\nBot:"
    assert tok.decode(ex.input_ids[ex.answer_start :]) == "Google"


def test_pairing_is_a_seeded_shuffle_with_random_retain():
    pairs = pair_indices(10, 3, seed=0, epoch=0)
    assert sorted(f for f, _ in pairs) == list(range(10))
    assert all(0 <= r < 3 for _, r in pairs)
    assert pairs == pair_indices(10, 3, seed=0, epoch=0)
    assert pairs != pair_indices(10, 3, seed=0, epoch=1)
    assert pairs != pair_indices(10, 3, seed=1, epoch=0)


def test_one_ga_step_lowers_forget_answers(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    before = _answer_logp(model, tok, FORGET)
    unlearn(model, tok, FORGET, RETAIN, _cfg(method="ga"), tmp_path)
    assert _answer_logp(model, tok, FORGET) < before - 0.05


def test_one_idk_step_raises_the_refusal(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    before = _answer_logp(model, tok, FORGET, answer="I don't know.")
    unlearn(model, tok, FORGET, RETAIN, _cfg(method="idk"), tmp_path)
    assert _answer_logp(model, tok, FORGET, answer="I don't know.") > before + 0.05


@pytest.mark.parametrize("retain_on", ["answer", "full"])
def test_gd_term_alone_raises_retain_answers(tiny_gpt2_dir, tmp_path, retain_on):
    model, tok = _model(tiny_gpt2_dir)
    before = _answer_logp(model, tok, RETAIN)
    cfg = _cfg(forget_weight=0.0, retain_loss="gd", retain_on=retain_on, max_steps=2)
    unlearn(model, tok, FORGET, RETAIN, cfg, tmp_path)
    assert _answer_logp(model, tok, RETAIN) > before + 0.05


@pytest.mark.parametrize(
    "method, retain_loss",
    [("ga", "none"), ("npo", "gd"), ("simnpo", "gd"), ("idk", "gd"), ("ga", "kl")],
)
def test_every_method_changes_every_parameter_and_logs_its_loss(tiny_gpt2_dir, tmp_path, method, retain_loss):
    model, tok = _model(tiny_gpt2_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = unlearn(
        model, tok, FORGET, RETAIN, _cfg(method=method, retain_loss=retain_loss, max_steps=2), tmp_path
    )
    unchanged = [
        n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])
    ]
    assert not unchanged
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows == result.log
    for row in rows:
        assert all(isinstance(row[k], float) for k in ("loss", "forget_loss", "grad_norm", "lr"))
        if retain_loss != "none":
            assert row["loss"] == pytest.approx(row["forget_loss"] + row["retain_loss"], rel=1e-5)
        else:
            assert "retain_loss" not in row and row["loss"] == pytest.approx(row["forget_loss"])


def _first_batch(state):
    return [next(iter(state.data.loader(state.accelerator, 0)))]


def test_train_step_alone_logs_its_losses_and_changes_every_parameter(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    state = setup(model, tok, FORGET, RETAIN, _cfg(method="simnpo", retain_loss="gd", max_steps=3), tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    row = train_step(state, _first_batch(state))
    assert row["step"] == state.step == 1 and row["epoch"] == 1
    for key in ("loss", "forget_loss", "retain_loss", "forget_token_logp", "retain_token_logp", "grad_norm"):
        assert math.isfinite(row[key]), key
    assert row["loss"] == pytest.approx(row["forget_loss"] + row["retain_loss"], rel=1e-5)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged


def test_train_step_refuses_a_non_finite_loss_without_touching_parameters(
    tiny_gpt2_dir, tmp_path, monkeypatch
):
    def nan_loss(inp, p):
        return (inp.token_logp * inp.mask).sum() * float("nan")

    monkeypatch.setitem(
        losses_mod.FORGET_LOSSES, "ga", losses_mod.Loss("ga", "forget", nan_loss, frozenset())
    )
    model, tok = _model(tiny_gpt2_dir)
    state = setup(model, tok, FORGET, RETAIN, _cfg(method="ga", retain_loss="gd"), tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(TrainingError, match="step 1: the loss is not finite"):
        train_step(state, _first_batch(state))
    assert state.step == 0
    assert all(torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())


def test_npo_starts_at_its_reference_and_kl_at_zero(tiny_gpt2_dir, tmp_path):
    """Without dropout the first step's model is the reference: NPO = (2/beta) log 2 and KL = 0."""
    model, tok = _model(tiny_gpt2_dir, dropout=False)
    result = unlearn(
        model, tok, FORGET, RETAIN, _cfg(method="npo", retain_loss="kl", beta=0.5, max_steps=3), tmp_path
    )
    first, last = result.log[0], result.log[-1]
    assert first["forget_loss"] == pytest.approx(2 / 0.5 * torch.log(torch.tensor(2.0)).item(), rel=1e-4)
    assert first["retain_loss"] == pytest.approx(0.0, abs=1e-6)
    assert last["retain_loss"] > 1e-6  # the model has moved away from its reference


def test_evaluation_schedule_trajectory_and_outputs(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    start = next(model.parameters()).detach().clone()
    calls = []

    def eval_fn(m, t, step):
        calls.append(step)
        if step == 0:
            assert torch.equal(next(m.parameters()).detach(), start)  # before any update
        assert not m.training
        return pd.DataFrame({"step": [step, step], "item_id": ["f0", "r0"], "logprob": [-1.0 * step, 0.5]})

    # 4 forget items, batch 1, accumulation 2 -> 2 optimizer steps per epoch, 3 epochs = 6 steps.
    cfg = _cfg(
        batch_size=1,
        grad_accum=2,
        max_steps=None,
        epochs=3,
        eval_steps=[1, 5],
        eval_every=4,
        eval_each_epoch=True,
    )
    result = unlearn(
        model, tok, FORGET, RETAIN, cfg, tmp_path, eval_fn=eval_fn, info={"inputs": {"forget": "x"}}
    )
    assert isinstance(result, UnlearnResult)
    assert calls == [0, 1, 2, 4, 5, 6] and result.steps == 6 and result.epochs == 3
    traj = pd.read_parquet(tmp_path / "trajectory.parquet")
    assert traj["step"].tolist() == [s for s in calls for _ in range(2)]
    assert traj.loc[traj["step"] == 4, "epoch"].tolist() == [2.0, 2.0]
    assert [r["epoch"] for r in result.log] == [1, 1, 2, 2, 3, 3]
    info = read_json(tmp_path / "run.json")
    assert info["seed"] == 0 and info["config"]["method"] == "ga" and info["inputs"] == {"forget": "x"}
    assert info["summary"]["steps"] == 6 and info["summary"]["final"]["step"] == 6
    assert info["summary"]["evaluated_steps"] == calls
    saved, _ = load_model_and_tokenizer(tmp_path / "model")
    for (name, p), q in zip(model.named_parameters(), saved.parameters()):
        assert torch.equal(p.detach(), q.detach()), name


def test_epoch_ends_are_evaluated_only_when_asked(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    calls = []

    def eval_fn(m, t, step):
        calls.append(step)
        return pd.DataFrame({"step": [step], "item_id": ["f0"]})

    # 2 steps per epoch; without eval_each_epoch the epoch ends (2, 4) are not evaluated.
    cfg = _cfg(batch_size=1, grad_accum=2, max_steps=None, epochs=3, eval_steps=[1, 5])
    unlearn(model, tok, FORGET, RETAIN, cfg, tmp_path, eval_fn=eval_fn)
    assert calls == [0, 1, 5, 6]
    stop = read_json(tmp_path / "run.json")["summary"]["stop"]
    assert stop["reason"] == "max_steps" and stop["step"] == 6 and stop["S_max"] == 6


def test_max_steps_overrides_epochs_and_schedules_decay(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    cfg = _cfg(batch_size=2, max_steps=5, epochs=1, scheduler="linear", warmup_ratio=0.2)
    result = unlearn(model, tok, FORGET, RETAIN, cfg, tmp_path)
    assert result.steps == 5 and result.epochs == 3
    lrs = [r["lr"] for r in result.log]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(1e-3) and lrs[1] > lrs[2] > lrs[3] > lrs[4] > 0


def test_same_seed_same_numbers_on_cpu(tiny_gpt2_dir, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model, tok = _model(tiny_gpt2_dir)
        cfg = _cfg(method="simnpo", retain_loss="gd", batch_size=2, max_steps=4, seed=seed)
        result = unlearn(model, tok, FORGET, RETAIN, cfg, tmp_path / name)
        runs.append((result.log, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1], runs[1][1]))
    assert runs[0][0] != runs[2][0]


def test_nan_loss_stops_with_one_line_and_keeps_what_was_written(tiny_gpt2_dir, tmp_path, monkeypatch):
    calls = {"n": 0}

    def exploding(inp, p):
        calls["n"] += 1
        value = (inp.token_logp * inp.mask).sum() / inp.mask.sum()
        return value * float("nan") if calls["n"] >= 3 else value

    monkeypatch.setitem(
        losses_mod.FORGET_LOSSES, "ga", losses_mod.Loss("ga", "forget", exploding, frozenset())
    )
    model, tok = _model(tiny_gpt2_dir)
    cfg = _cfg(batch_size=4, max_steps=5, eval_steps=[1, 2, 3])
    with pytest.raises(TrainingError) as err:
        unlearn(
            model, tok, FORGET, RETAIN, cfg, tmp_path, eval_fn=lambda m, t, s: pd.DataFrame({"step": [s]})
        )
    text = str(err.value)
    assert "\n" not in text and text.startswith("step 3: the loss is not finite") and "lr" in text
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2]
    assert pd.read_parquet(tmp_path / "trajectory.parquet")["step"].tolist() == [0, 1, 2]
    assert not (tmp_path / "model").exists() and not (tmp_path / "run.json").exists()


def test_input_errors(tiny_gpt2_dir, tmp_path):
    model, tok = _model(tiny_gpt2_dir)
    with pytest.raises(DataError, match="forget set is empty"):
        unlearn(model, tok, [], RETAIN, _cfg(), tmp_path)
    with pytest.raises(DataError, match="retain set is empty but retain_loss=gd"):
        unlearn(model, tok, FORGET, [], _cfg(retain_loss="gd"), tmp_path)
    with pytest.raises(DataError, match=r"also in the forget set \(f1\)"):
        unlearn(model, tok, FORGET, [*RETAIN, FORGET[1]], _cfg(), tmp_path)
    long = QAItem("long", "Who employs " + "Ada " * 200 + "?", "Google")
    with pytest.raises(DataError, match="forget item long: .* more than the model's 128 positions"):
        unlearn(model, tok, [long], RETAIN, _cfg(), tmp_path)


@pytest.mark.parametrize(
    "override, fragment",
    [
        (
            {"method": "gradascent"},
            "method: unknown method 'gradascent'; choose from altpo, ceu, dpo, fga, ga",
        ),
        ({"beta": 0}, "beta: must be > 0"),
        ({"prompt_format": "Q: {question}"}, "prompt_format:"),
        ({"eval_steps": [-1]}, "eval_steps"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_config_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(UnlearnConfig, override)


def test_config_defaults_are_paper_like():
    cfg = UnlearnConfig()
    assert (cfg.beta, cfg.gamma, cfg.forget_weight, cfg.retain_weight) == (0.1, 0.0, 1.0, 1.0)
    assert dataclasses.replace(cfg, method="simnpo", retain_loss="gd").retain_loss == "gd"
    assert json.loads(json.dumps(dataclasses.asdict(cfg)))["refusal"] == "I don't know."


def test_huge_lr_keeps_no_step_after_a_non_finite_update(tiny_gpt2_dir, tmp_path):
    """lr=1e3 (with the default weight decay) gives NaN within a few steps; the trajectory ends before
    the first broken model, and every kept row is finite."""
    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.evaluate import evaluate_items

    items = [dataclasses.replace(it, candidates=["Paris", "Apple", "Google"]) for it in FORGET]
    ecfg = EvalConfig(metrics=["prob", "gen"], probes=["question"], max_new_tokens=4)

    def eval_fn(m, t, s):
        return evaluate_items(m, t, items, ecfg, fmt=get_prompt_format("plain"), step=s)

    model, tok = _model(tiny_gpt2_dir)
    cfg = _cfg(lr=1e3, batch_size=2, max_steps=20, eval_steps=list(range(21)), weight_decay=0.01)
    with pytest.raises(TrainingError) as err:
        unlearn(model, tok, FORGET, RETAIN, cfg, tmp_path, eval_fn=eval_fn)
    text = str(err.value)
    assert "\n" not in text and text.startswith("step ") and "not finite" in text
    failed = int(text.split(":")[0].split()[1])
    traj = pd.read_parquet(tmp_path / "trajectory.parquet")
    assert 1 < failed <= 20 and traj["step"].max() < failed
    prob = traj[traj["family"] == "prob"]
    assert traj["finite"].all() and prob["logprob"].notna().all() and prob["rank"].notna().all()
    assert all(r["loss"] == r["loss"] and r["step"] <= failed for r in read_jsonl(tmp_path / "log.jsonl"))
