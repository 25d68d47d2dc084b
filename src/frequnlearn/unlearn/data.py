"""Turning QA items into training batches: tokenised pairs, loss masks, forget/retain pairing.

Prompt and answer are tokenised apart (`encode_pair`), exactly as evaluation scores them, so the
tokens the forget loss pushes down are the tokens the evaluation measures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from frequnlearn.models.prompts import PromptFormat, encode_pair
from frequnlearn.records import QAItem


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    answer_start: int  # index of the answer's first token in input_ids


def encode_items(
    tokenizer: Any, fmt: PromptFormat, items: Sequence[QAItem], answer: str | None = None
) -> list[Example]:
    """Encode each item's question with its own answer, or with `answer` for all (the IDK refusal)."""
    out = []
    for it in items:
        prompt_ids, answer_ids = encode_pair(
            tokenizer, fmt, it.question, answer if answer is not None else it.answer
        )
        out.append(Example(prompt_ids + answer_ids, len(prompt_ids)))
    return out


def collate(
    rows: Sequence[tuple[Example, Literal["answer", "full"]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded ids plus `loss_mask` over target positions (position j scores token j + 1).

    Each row says what its loss covers: `answer` counts the answer's tokens only, `full` every token
    after the leading BOS (question and answer).
    """
    width = max(len(ex.input_ids) for ex, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (ex, on) in enumerate(rows):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids, dtype=torch.long)
        attn[i, :n] = 1
        first = ex.answer_start if on == "answer" else 1
        mask[i, first - 1 : n - 1] = 1.0
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": mask}


def pair_indices(n_forget: int, n_retain: int, seed: int, epoch: int) -> list[tuple[int, int]]:
    """One epoch's (forget, retain) index pairs: forget order shuffled, each with a random retain item.

    Seeded by (seed, epoch) alone, so the pairs never depend on what else consumed random numbers.
    """
    rng = random.Random(f"pairs-{seed}-{epoch}")
    order = list(range(n_forget))
    rng.shuffle(order)
    return [(f, rng.randrange(n_retain) if n_retain else -1) for f in order]


def make_collate(
    forget: Sequence[Example],
    retain: Sequence[Example] | None,
    pad_id: int,
    retain_on: Literal["answer", "full"],
    refusal: Sequence[Example] | None = None,
) -> Callable[[list[tuple[int, int]]], dict[str, Any]]:
    """Collate (forget, retain) index pairs into one batch: forget rows first, then the same forget
    items answered with the refusal (when a loss compares the two), then retain rows.

    One forward pass over every part keeps distributed training simple (a wrapped model must not be
    called twice before its backward pass).
    """

    def fn(pairs: list[tuple[int, int]]) -> dict[str, Any]:
        rows: list[tuple[Example, Literal["answer", "full"]]] = [(forget[f], "answer") for f, _ in pairs]
        if refusal is not None:
            rows += [(refusal[f], "answer") for f, _ in pairs]
        if retain is not None:
            rows += [(retain[r], retain_on) for _, r in pairs]
        batch: dict[str, Any] = collate(rows, pad_id)
        batch["forget_index"] = torch.tensor([f for f, _ in pairs], dtype=torch.long)
        return batch

    return fn
