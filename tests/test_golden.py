"""Golden numbers: per-item scores of the tiny test models and short pretraining/unlearning loss
trajectories, compared with the files in `tests/golden/`.

A change that moves code must leave these numbers as they are; a change that means to alter them
rewrites the files on purpose, so the new numbers show up in its diff:

    FREQUNLEARN_UPDATE_GOLDEN=1 pytest tests/test_golden.py

Only the fields stored in a golden file are compared; fields a later version adds (new columns, new
log keys) are ignored, while a stored field that disappears fails. Floats are stored to 7 significant
digits and compared at 1e-5 relative tolerance, or 1e-6 absolute for probabilities near zero (CPU
numbers, one torch thread); strings (generations) and ids verbatim.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from frequnlearn.config import from_dict
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.data.generate import generate
from frequnlearn.evaluate import evaluate_items
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import encode_completion, encode_pair, encode_prompt, get_prompt_format
from frequnlearn.pretrain import pretrain
from frequnlearn.records import BioPrompt, QAItem, read_jsonl
from frequnlearn.unlearn import unlearn

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FREQUNLEARN_UPDATE_GOLDEN") == "1"
REL_TOL, ABS_TOL = 1e-5, 1e-6
# A truth ratio is exp of a difference of summed answer log-probabilities, so float noise in those sums
# (another CPU's kernels, another summation order) reaches it undamped: 1e-4 relative is 1e-4 nats,
# the agreement asked of the scoring paths. Measured: the taught model moved it by up to 3.4e-5.
REL_TOL_BY_KEY = {"truth_ratio": 1e-4}

# Training runs wherever accelerate puts them; their goldens are CPU numbers.
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="golden trajectories are CPU numbers")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread, so reductions sum in the same order whatever the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- storing and comparing


def _rounded(value: Any) -> Any:
    """JSON-ready copy: floats to 7 significant digits, NaN as null, numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.7g}")
    return value


def _differences(expected: Any, actual: Any, where: str) -> list[str]:
    """Where `actual` departs from `expected`; keys only `actual` has are not compared."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {actual!r}"]
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing (expected {value!r})")
            else:
                out.extend(_differences(value, actual[key], f"{where}.{key}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} entries, got {actual!r}"]
        return [
            d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f"{where}[{i}]")
        ]
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in (expected, actual)]
    if all(numbers):
        rel_tol = REL_TOL_BY_KEY.get(where.rsplit(".", 1)[-1], REL_TOL)
        if math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=ABS_TOL):
            return []
    elif expected == actual and type(expected) is type(actual):
        return []
    return [f"{where}: expected {expected!r}, got {actual!r}"]


def check_golden(name: str, actual: dict[str, Any]) -> None:
    """Compare `actual` with tests/golden/<name>.json, or rewrite that file when updating."""
    path = GOLDEN_DIR / f"{name}.json"
    actual = _rounded(actual)
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        return
    assert path.is_file(), f"{path} is missing; write it with FREQUNLEARN_UPDATE_GOLDEN=1 pytest {__file__}"
    diffs = _differences(json.loads(path.read_text()), actual, name)
    shown = "\n".join(diffs[:20]) + (f"\n... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
    assert not diffs, (
        f"{len(diffs)} numbers differ from {path.name}; if the change is intended, rerun with "
        f"FREQUNLEARN_UPDATE_GOLDEN=1 and commit the new file:\n{shown}"
    )


def test_comparison_ignores_added_fields_and_catches_changed_ones():
    stored = {"rows": {"a": {"logprob": -5.0, "generation": "Paris", "rank": None}}, "steps": [1.0, 2.0]}
    same = {"rows": {"a": {"logprob": -5.00001, "generation": "Paris", "rank": None, "margin": 0.3}}}
    assert _differences(stored, {**same, "steps": [1.0, 2.0]}, "g") == []
    changed = {"rows": {"a": {"logprob": -5.001, "generation": "Pari", "rank": 1.0}}, "steps": [1.0]}
    assert len(_differences(stored, changed, "g")) == 4
    (missing,) = _differences(stored, {"steps": [1.0, 2.0]}, "g")
    assert missing.startswith("g.rows: missing")


# ---------------------------------------------------------------- per-item scores

ITEMS = [
    QAItem(
        item_id="p00000-employer",
        question="Who employs Ada Mae Lovelace?",
        answer="Google",
        paraphrase="Which company does Ada Mae Lovelace work for?",
        person_id=0,
        group="forget_high",
        attribute="employer",
        frequency=10.0,
        bucket="high",
        candidates=["Apple", "Stanford University", "London, UK"],
    ),
    QAItem(
        item_id="p00001-birth_city",
        question="What is the birth city of Alan Mathison Turing?",
        answer="London, UK",
        paraphrase="Where was Alan Mathison Turing born?",
        person_id=1,
        group="forget_low",
        attribute="birth_city",
        frequency=1.0,
        bucket="low",
        candidates=["Paris", "Cupertino, CA"],
    ),
    QAItem(
        item_id="p00002-employer",
        question="Who employs Alan Mathison Turing?",
        answer="Apple",
        person_id=2,
        group="retain",
        attribute="employer",
        frequency=1.0,
        in_corpus=True,
        candidates=["Google", "Stanford University"],
    ),
    QAItem(
        item_id="p00003-birth_city",
        question="What is the birth city of Ada Mae Lovelace?",
        answer="Paris",
        paraphrase="In which city was Ada Mae Lovelace born?",
        person_id=3,
        group="utility",
        attribute="birth_city",
        frequency=1.0,
        candidates=["London, UK", "Cupertino, CA", "Google"],
    ),
]
BIO_PROMPTS = [
    BioPrompt(
        item_id="p00000-employer",
        person_id=0,
        group="forget_high",
        attribute="employer",
        prompt="Ada Mae Lovelace studied Physics at Stanford University. She works for ",
        target="Google",
        frequency=10.0,
    ),
    BioPrompt(
        item_id="p00001-birth_city",
        person_id=1,
        group="forget_low",
        attribute="birth_city",
        prompt="Alan Mathison Turing was born in ",
        target="London, UK",
        frequency=1.0,
    ),
]
TEACH_EPOCHS = 30
EVAL = {
    "metrics": ["prob", "gen", "tf", "bio"],
    "probes": ["question", "paraphrase"],
    "batch_size": 4,
    "max_new_tokens": 8,
    "tf_shots": 1,
    "seed": 0,
}
# Every column `evaluate_items` writes today that a later version must keep.
SCORE_COLUMNS = [
    "model",
    "run_id",
    "step",
    "person_id",
    "group",
    "attribute",
    "frequency",
    "bucket",
    "logprob",
    "logprob_per_token",
    "p_norm",
    "n_answer_tokens",
    "rank",
    "rank_correct",
    "truth_ratio",
    "generation",
    "rougeL_recall",
    "exact",
    "contains",
    "p_true",
    "p_false",
    "tf_correct",
]


def _no_dropout(model: Any) -> Any:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.fixture(scope="module")
def taught_gpt2_dir(tiny_gpt2_dir, tmp_path_factory):
    """The tiny GPT-2 after memorising the first two QA pairs and the first biography sentence, so
    that some rows are right answers (rank 1, exact generations) and the others are not."""
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir, device="cpu")
    _no_dropout(model).train()
    fmt = get_prompt_format("plain")
    docs = [encode_pair(tok, fmt, it.question, it.answer) for it in ITEMS[:2]]
    bio = BIO_PROMPTS[0]
    docs.append((encode_prompt(tok, bio.prompt.rstrip(" ")), encode_completion(tok, " " + bio.target)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(TEACH_EPOCHS):
        for prompt, answer in docs:
            ids = torch.tensor([prompt + answer + [tok.eos_token_id]])
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    out = tmp_path_factory.mktemp("taught-gpt2")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("model_fixture", ["tiny_gpt2_dir", "tiny_llama_dir", "taught_gpt2_dir"])
def test_item_scores(model_fixture, request):
    model, tok = load_model_and_tokenizer(request.getfixturevalue(model_fixture), device="cpu")
    df = evaluate_items(
        model,
        tok,
        ITEMS,
        EvalConfig(**EVAL),
        fmt=get_prompt_format("plain"),
        bio_prompts=BIO_PROMPTS,
        step=3,
        model_name=model_fixture,
        run_id="golden",
    )
    rows = {}
    for record in df.to_dict("records"):
        key = f"{record['item_id']}/{record['probe']}/{record['family']}"
        assert key not in rows, f"two rows for {key}"
        rows[key] = {c: record[c] for c in SCORE_COLUMNS if c in record}
    expected_file = GOLDEN_DIR / f"scores_{model_fixture}.json"
    if not UPDATE and expected_file.is_file():
        # The row set itself is pinned: no row may appear or vanish.
        assert sorted(rows) == sorted(json.loads(expected_file.read_text())["rows"])
    check_golden(f"scores_{model_fixture}", {"eval": EVAL, "rows": rows})


# ---------------------------------------------------------------- pretraining

GENERATE = {
    "seed": 0,
    "n_people": 12,
    "high_exposure": 3,
    "n_candidates": 3,
    "attributes": ["birth_city", "employer"],
    "n_templates": 2,
}
PRETRAIN = {
    "preset": "tiny",
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "vocab_size": 300,
    "seq_len": 64,
    "batch_size": 4,
    "max_steps": 36,
    "lr": 3e-3,
    "log_every": 3,
    "save_every": 1000,
    "eval_every": 0,
    "eval_per_group": 1,
    "num_threads": 1,
}


@cpu_only
def test_pretraining_trajectory(tmp_path):
    data = generate(from_dict(GenerateConfig, GENERATE), tmp_path / "data")
    out = pretrain(data, from_dict(PretrainConfig, PRETRAIN), tmp_path / "model")
    # tokens_per_s is a timing, not a result.
    metrics = [
        {k: row[k] for k in ("step", "epoch", "loss", "lr", "tokens_seen")}
        for row in read_jsonl(out / "metrics.jsonl")
    ]
    check_golden(
        "pretrain",
        {
            "generate": GENERATE,
            "pretrain": PRETRAIN,
            # Pretrained models are cached by this hash: the same config must keep writing the same corpus.
            "corpus_sha256": hashlib.sha256((data / "corpus.jsonl").read_bytes()).hexdigest(),
            "metrics": metrics,
        },
    )


# ---------------------------------------------------------------- unlearning

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
UNLEARN = {"lr": 1e-3, "batch_size": 2, "max_steps": 6, "eval_steps": [], "weight_decay": 0.01, "seed": 0}


@cpu_only
@pytest.mark.parametrize("method", ["ga", "simnpo"])
def test_unlearning_trajectory(method, tiny_gpt2_dir, tmp_path):
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    _no_dropout(model)  # the golden pins the losses, not the order in which random numbers are drawn
    settings = {**UNLEARN, "method": method, "retain_loss": "gd"}
    result = unlearn(model, tok, FORGET, RETAIN, from_dict(UnlearnConfig, settings), tmp_path / "run")
    assert [row["step"] for row in result.log] == list(range(1, 7))
    check_golden(f"unlearn_{method}_gd", {"unlearn": settings, "log": result.log})
