"""Tokenizers: a byte-level BPE trained locally on a corpus, saved as a standard HF tokenizer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
