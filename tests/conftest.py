"""Tiny models and tokenizers built by the tests themselves and saved to temp dirs (never downloaded)."""

from __future__ import annotations

import pytest
import torch

from frequnlearn.models.tokenizer import train_bpe_tokenizer

WORDS = (
    "Question: What is the birth city of Ada Mae Lovelace?\nAnswer: London, UK\n"
    "Question: Who employs Alan Mathison Turing?\nAnswer: Google\n"
    "She was born in Paris. He studied Physics at Stanford University. They work for Apple in Cupertino, CA. "
    "I don't know. True False The capital of France is Paris. 0123456789 January February December"
)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_bpe_tokenizer([WORDS] * 20, vocab_size=300, min_frequency=1)


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer):
    """A randomly initialised 2-layer GPT-2 (width 32) saved with its tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = tiny_tokenizer
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return _save(GPT2LMHeadModel(config), tok, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer):
    """A randomly initialised 2-layer Llama-style model: a second architecture for 'any causal LM'."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tiny_tokenizer
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return _save(LlamaForCausalLM(config), tok, tmp_path_factory.mktemp("tiny-llama"))
