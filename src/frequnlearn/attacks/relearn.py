"""Relearning attacks: a few steps of plain fine-tuning on related data after unlearning.

If knowledge was removed, a handful of steps on *other* facts cannot bring it back; if it was only
hidden, it returns. Three kinds of related data: the other half of the forget set's QA (targeted),
QA of people who were never unlearned (benign), and biography sentences about another attribute of
the forget people (bio). The fine-tune reuses the unlearning loop's pieces: the same tokenised
examples (`encode_items`), batches (`collate`), token log-probs and the GD retain loss, which is
plain cross-entropy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from frequnlearn.models.loading import pad_id_of
from frequnlearn.models.prompts import PromptFormat, encode_prompt
from frequnlearn.records import Person, QAItem
from frequnlearn.unlearn.data import Example, collate, encode_items
from frequnlearn.unlearn.loop import token_logprobs
from frequnlearn.unlearn.losses import LossInputs, LossParams, get_loss

EvalFn = Callable[[Any, Any, int], pd.DataFrame]


def split_targeted(forget: Sequence[QAItem], seed: int) -> tuple[list[QAItem], list[QAItem]]:
    """(trained, measured): a seeded half of the forget items to fine-tune on, the rest to measure.

    With one item there is nothing left to measure, so both halves need at least two items.
    """
    items = sorted(forget, key=lambda it: it.item_id)
    random.Random(f"targeted-{seed}").shuffle(items)
    half = len(items) // 2
    return sorted(items[:half], key=_id), sorted(items[half:], key=_id)


def benign_items(pool: Sequence[QAItem], n: int, seed: int) -> list[QAItem]:
    """`n` QA items (seeded draw) of people who were never in a forget set."""
    items = sorted(pool, key=_id)
    return sorted(random.Random(f"benign-{seed}").sample(items, min(n, len(items))), key=_id)


def bio_texts(people: Sequence[Person], attribute: str, n_templates: int | None, seed: int) -> list[str]:
    """One freshly worded biography sentence per person about `attribute` alone (naming the person).

    A full biography cut before another attribute would restate the unlearned fact (biographies keep a
    fixed attribute order), so only that attribute's sentence is rendered.
    """
    from frequnlearn.data.generate import Verbalizer
    from frequnlearn.data.templates import compile_templates

    verbalizer = Verbalizer(compile_templates((attribute,), n_templates), random.Random(f"bio-attack-{seed}"))
    return [verbalizer.biography(p.name, p.pronoun, (getattr(p, attribute),)) for p in people]


def qa_examples(tokenizer: Any, fmt: PromptFormat, items: Sequence[QAItem]) -> list[tuple[Example, str]]:
    """QA pairs, the loss on the answer tokens (as the forget and retain sets are trained)."""
    return [(ex, "answer") for ex in encode_items(tokenizer, fmt, items)]


def text_examples(tokenizer: Any, texts: Sequence[str]) -> list[tuple[Example, str]]:
    """Free text, the loss on every token after the leading end-of-text (as in pretraining)."""
    return [(Example(encode_prompt(tokenizer, t), 1), "full") for t in texts]


def relearn(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[Example, str]],
    steps: Sequence[int],
    lr: float,
    batch_size: int,
    seed: int,
    eval_fn: EvalFn,
) -> pd.DataFrame:
    """Fine-tune `model` in place with cross-entropy for max(`steps`) steps; evaluate at 0 and each step.

    Batches walk through the examples in a seeded order, reshuffled each pass. Returns the evaluation
    frames stacked, with the step count in column `k`.
    """
    if not examples:
        raise ValueError("relearn needs at least one training example")
    ce = get_loss("gd", "retain")
    params = LossParams()
    device = next(model.parameters()).device
    pad_id = pad_id_of(tokenizer)
    points = sorted(set(steps))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rng = random.Random(f"relearn-{seed}")
    order: list[int] = []
    frames = []

    def evaluate(k: int) -> None:
        model.eval()
        with torch.no_grad():
            frame = eval_fn(model, tokenizer, k).copy()
        frame["k"] = k
        frames.append(frame)

    evaluate(0)
    torch.manual_seed(seed)
    for step in range(1, points[-1] + 1):
        model.train()
        batch_rows = []
        while len(batch_rows) < min(batch_size, len(examples)):
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch_rows.append(examples[order.pop()])
        batch = {k: v.to(device) for k, v in collate(batch_rows, pad_id).items()}  # type: ignore[arg-type]
        _, token_logp = token_logprobs(model, batch)
        loss = ce.fn(LossInputs(token_logp, batch["loss_mask"]), params)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in points:
            evaluate(step)
    model.eval()
    return pd.concat(frames, ignore_index=True)


def _id(item: QAItem) -> str:
    return item.item_id
