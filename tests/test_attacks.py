"""Robustness: the oracle corpus, relearning and quantization attacks, and the recovery arithmetic."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from frequnlearn.attacks.oracle import write_oracle_data
from frequnlearn.attacks.quality import above_oracle, forget_quality, recovery
from frequnlearn.attacks.quantize import conv1d_to_linear
from frequnlearn.attacks.relearn import bio_texts, qa_examples, relearn, split_targeted
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.data.generate import generate, load_data_dir
from frequnlearn.evaluate import evaluate_items
from frequnlearn.evaluate.misalignment import verdicts
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import QAItem, read_jsonl

EVAL = EvalConfig(
    metrics=["prob", "gen"], probes=["question"], max_new_tokens=6, batch_size=8, utility_tasks=[]
)
FMT = get_prompt_format("plain")


def _items() -> list[QAItem]:
    people = ["Ada Mae Lovelace", "Alan Mathison Turing", "Grace Brewster Hopper", "Edsger Wybe Dijkstra"]
    cities = ["London, UK", "Paris", "Cupertino, CA", "Stanford"]
    return [
        QAItem(
            item_id=f"p{i}-birth_city",
            question=f"What is the birth city of {name}?",
            answer=cities[i],
            candidates=[c for c in cities if c != cities[i]],
            person_id=i,
            group="forget_high",
            attribute="birth_city",
            frequency=10,
        )
        for i, name in enumerate(people)
    ]


def _evaluator(items: list[QAItem]):
    def evaluate(model, tok, k: int) -> pd.DataFrame:
        return evaluate_items(model, tok, items, EVAL, fmt=FMT, step=k, model_name="m", run_id="r")

    return evaluate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return generate(GenerateConfig(n_people=24, seed=1), tmp_path_factory.mktemp("data") / "d")


def test_oracle_corpus_drops_only_the_forget_biographies(data_dir, tmp_path):
    data = load_data_dir(data_dir)
    forget = {p.person_id for p in data.people if p.group in ("forget_high", "forget_low")}
    counts = write_oracle_data(data_dir, tmp_path / "oracle", forget)
    rows = read_jsonl(data_dir / "corpus.jsonl")
    kept = read_jsonl(tmp_path / "oracle" / "corpus.jsonl")
    assert not [r for r in kept if r["kind"] == "bio" and r["person_id"] in forget]
    # Everything else is there, in the same order and wording.
    assert kept == [r for r in rows if not (r["kind"] == "bio" and r["person_id"] in forget)]
    assert counts["removed_bio"] == sum(p.exposure for p in data.people if p.person_id in forget) > 0
    for name in ("people.jsonl", "qa.jsonl", "bio_prompts.jsonl"):
        assert (tmp_path / "oracle" / name).read_bytes() == (data_dir / name).read_bytes()
    manifest = json.loads((tmp_path / "oracle" / "manifest.json").read_text())
    assert manifest["oracle"]["excluded_people"] == sorted(forget)
    assert (
        manifest["files"]["corpus.jsonl"]
        != json.loads((data_dir / "manifest.json").read_text())["files"]["corpus.jsonl"]
    )
    load_data_dir(tmp_path / "oracle")  # a complete data directory that pretraining can read


def test_bio_attack_text_states_only_the_other_attribute(data_dir):
    people = load_data_dir(data_dir).people[:5]
    texts = bio_texts(people, "university", None, seed=0)
    for person, text in zip(people, texts):
        assert person.name in text and person.university in text
        assert person.birth_city not in text and person.employer not in text


def _as_attack(frames: pd.DataFrame, attack: str) -> pd.DataFrame:
    """Relearning frames dressed as the attack stage writes them (run identity, attack, attacked)."""
    ident = {"run_id": "r", "size": "tiny", "seed": 0, "method": "ga+gd", "selection": "known"}
    return frames.assign(**ident, level="forget_high", attack=attack, attacked=frames["k"] > 0)


def _before(frames: pd.DataFrame, known: bool | None = None) -> pd.DataFrame:
    """Per-item 'known before unlearning' as the report reads it: the k = 0 verdicts, or all `known`."""
    v = verdicts(frames[frames["k"] == 0].drop(columns="k"))
    flags = v["gen_known"].astype(bool) if known is None else known
    return pd.DataFrame(
        {"model": "m", "item_id": v["item_id"], "known": flags, "truth_ratio": v["truth_ratio"]}
    )


NO_ORACLE = pd.DataFrame(columns=["model", "item_id", "known", "truth_ratio"])


def test_an_unlearned_nothing_model_recovers_nothing(tiny_gpt2_dir):
    """A model that was never unlearned never lost anything, however much the attack teaches it."""
    from frequnlearn.report.attacks import recovery_table

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    train, measure = split_targeted(_items(), seed=0)
    assert train and measure and not {i.item_id for i in train} & {i.item_id for i in measure}
    # Trained on the measured items themselves: the strongest attack there is.
    frames = relearn(model, tok, qa_examples(tok, FMT, measure), [4, 8], 3e-2, 4, 0, _evaluator(measure))
    assert not frames[frames["k"] == 8]["logprob"].equals(frames[frames["k"] == 0]["logprob"])  # it did train
    table = recovery_table(_as_attack(frames, "targeted"), _before(frames), NO_ORACLE, "question", 0.5)
    assert sorted(table["k"]) == [4, 8]
    assert (table["n_lost"] == 0).all() and (table["n_recovered"] == 0).all()
    assert (table["known_unlearned"] == table["known_before"]).all()


def test_relearning_with_lr_zero_changes_and_recovers_nothing(tiny_gpt2_dir):
    from frequnlearn.report.attacks import recovery_table

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    items = _items()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    frames = relearn(model, tok, qa_examples(tok, FMT, items), [1, 3], 0.0, 2, 0, _evaluator(items))
    assert sorted(frames["k"].unique()) == [0, 1, 3]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for k in (1, 3):
        pd.testing.assert_series_equal(
            frames[frames["k"] == k]["logprob"].reset_index(drop=True),
            frames[frames["k"] == 0]["logprob"].reset_index(drop=True),
        )
    # Count every item as known before unlearning, so whatever is unknown now counts as lost.
    table = recovery_table(
        _as_attack(frames, "benign"), _before(frames, known=True), NO_ORACLE, "question", 0.5
    )
    assert (table["n_lost"] > 0).all() and (table["n_recovered"] == 0).all()
    assert (table["known_attacked"] == table["known_unlearned"]).all()


def test_relearning_moves_the_trained_answers(tiny_gpt2_dir):
    """The same loop with a learning rate does train: the answers it fine-tunes on become likelier."""
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    items = _items()
    evaluate = _evaluator(items)
    frames = relearn(model, tok, qa_examples(tok, FMT, items), [5], 1e-2, 4, 0, evaluate)
    prob = frames[frames["family"] == "prob"].groupby("k")["logprob"].mean()
    assert prob[5] > prob[0] + 1.0


def test_conv1d_to_linear_computes_the_same_function(tiny_gpt2_dir):
    from transformers.pytorch_utils import Conv1D

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    ids = torch.tensor([tok("Question: What is the birth city of Ada?")["input_ids"]])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        conv1d_to_linear(model)
        got = model(input_ids=ids).logits
    assert not any(isinstance(m, Conv1D) for m in model.modules())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _int8_grid(model) -> None:
    """Every Conv1D weight row (one output channel) made exactly representable in asymmetric int8:
    integers from -128 to 127 (both present) times a power-of-two scale."""
    from transformers.pytorch_utils import Conv1D

    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, Conv1D):
            n_in, n_out = m.weight.shape
            q = torch.randint(-128, 128, (n_out, n_in), generator=gen).float()
            q[:, 0], q[:, 1] = -128, 127
            scale = 2.0 ** torch.randint(-12, -8, (n_out, 1), generator=gen).float()
            with torch.no_grad():
                m.weight.copy_((q * scale).t())


def test_int8_quantization_of_exactly_representable_weights_scores_the_same(tiny_gpt2_dir):
    pytest.importorskip("torchao")
    from frequnlearn.attacks.quantize import quantize_model

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    _int8_grid(model)
    items = _items()
    plain = evaluate_items(model, tok, items, EVAL, fmt=FMT, model_name="m", run_id="r")
    quant = evaluate_items(
        quantize_model(model, "int8"), tok, items, EVAL, fmt=FMT, model_name="m", run_id="r"
    )
    pd.testing.assert_frame_equal(quant, plain)
    # int4 cannot hold these weights: the same evaluation then differs, so the check above has teeth.
    q4 = evaluate_items(
        quantize_model(model, "int4", group_size=32), tok, items, EVAL, fmt=FMT, model_name="m", run_id="r"
    )
    assert not q4["logprob"].dropna().equals(plain["logprob"].dropna())


def test_recovery_counts_and_oracle_normalisation():
    idx = ["a", "b", "c", "d"]
    before = pd.Series([True, True, True, False], index=idx)
    unlearned = pd.Series([False, False, True, False], index=idx)
    attacked = pd.Series([True, False, True, True], index=idx)
    rec = recovery(before, unlearned, attacked)
    assert (rec["n_lost"], rec["n_recovered"]) == (2, 1)
    assert rec["recovered_share"] == 0.5 and rec["recovered_of_known"] == pytest.approx(1 / 3)
    assert above_oracle(0.5, 1.0, 0.0) == 0.5 and above_oracle(0.2, 0.2, 0.2) != above_oracle(0.2, 0.2, 0.2)


def test_forget_quality_separates_different_truth_ratios():
    same = forget_quality([0.1, 0.5, 0.9, 0.3, 0.7] * 4, [0.1, 0.5, 0.9, 0.3, 0.7] * 4)
    apart = forget_quality([0.01 * i for i in range(20)], [5 + 0.01 * i for i in range(20)])
    assert same[1] == pytest.approx(1.0) and apart[1] < 1e-6 and apart[0] == 1.0


def test_robustness_config_dry_runs_with_oracle_and_attacks(capsys):
    from frequnlearn.cli import main

    path = Path(__file__).resolve().parents[1] / "configs" / "robustness.yaml"
    assert main(["study", str(path), "--dry-run", "--out", "x"]) == 0
    out = capsys.readouterr().out
    assert "[oracle  ] tiny-s0" in out and "[attack  ] tiny-s0/ga+gd/forget_low-known" in out


def test_attacks_are_off_by_default_and_checked_against_the_study(capsys):
    from frequnlearn.cli import main
    from frequnlearn.config.study import StudyConfig

    assert not StudyConfig().attacks.active and not StudyConfig().attacks.oracle
    path = Path(__file__).resolve().parents[1] / "configs" / "robustness.yaml"
    assert main(["study", str(path), "--dry-run", "attacks.relearn_attribute=birth_city"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: attacks.relearn_attribute:") and "\n" not in err


STUDY = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 4,
           batch_size: 8, lr: 3.0e-3, save_every: 10, eval_per_group: 2, num_threads: 1}
unlearn: {lr: 2.0e-3, max_steps: 4, eval_steps: [0, 2, 4], batch_size: 4}
evaluate: {metrics: [prob, gen], utility_tasks: [], max_new_tokens: 8, batch_size: 16}
study: {model_sizes: [tiny], methods: [ga+gd], selections: [all], eval_retain_size: 6,
        eval_utility_size: 6, n_boot: 200}
attacks: {oracle: true, relearn: [targeted, benign, bio], relearn_steps: [1, 2], quantize: [int8],
          selections: [all]}
"""


@pytest.mark.slow
def test_study_with_oracle_and_attacks_reports_recovery(tmp_path, capsys):
    from frequnlearn.cli import main

    cfg = tmp_path / "robust.yaml"
    cfg.write_text(STUDY)
    run = tmp_path / "run"
    assert main(["study", str(cfg), "--out", str(run), "--quiet"]) == 0
    table = pd.read_csv(run / "report" / "attacks.csv")
    attacks = {"targeted", "benign", "bio"} | ({"int8"} if importlib.util.find_spec("torchao") else set())
    assert set(table["attack"]) == attacks
    assert set(table["level"]) == {"forget_high", "forget_low"}
    assert (table["n_recovered"] <= table["n_lost"]).all()
    quality = pd.read_csv(run / "report" / "forget_quality.csv")
    assert len(quality) == 2 and quality["forget_quality"].between(0, 1).all()
    md, page = (run / "report" / "report.md").read_text(), (run / "report" / "report.html").read_text()
    for title in ("Relearning attacks", "Quantization attacks", "Forget quality against the never-learned model"):
        assert f"## {title}\n" in md and f"<h2>{title}</h2>" in page, title
    oracle_corpus = read_jsonl(run / "data-oracle" / "corpus.jsonl")
    people = {p.person_id: p.group for p in load_data_dir(run / "data").people}
    assert not [
        r
        for r in oracle_corpus
        if r["kind"] == "bio" and people[r["person_id"]] != "retain" and people[r["person_id"]] != "utility"
    ]
    record = json.loads(next((run / "unlearn").glob("**/forget_high-all/attacks/attacks.json")).read_text())
    assert set(record["trained_on"]) == {"targeted", "benign", "bio"}
    if not importlib.util.find_spec("torchao"):
        assert any("torchao" in s for s in record["skipped"])
    capsys.readouterr()
    assert main(["study", str(cfg), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert (
        "oracle: tiny-s0 (done, skipping)" in err
        and "attack: tiny-s0/ga+gd/forget_low-all (done, skipping)" in err
    )
