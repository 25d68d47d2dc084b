"""The few-shot True/False probe: does the model affirm the true answer?

Each query is preceded by `n_shots` solved examples about other people, alternating true statements
and false ones (a wrong candidate as the answer), starting with a label drawn per item so the last
shot's label is not always the same. Only the true answer is queried: the probe follows whether the
model still affirms the fact, and any bias towards " True" is the same at every step of a trajectory
and for retain items, against which forget items are read.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from frequnlearn.errors import DataError
from frequnlearn.evaluate.batching import plan_batches, tail_log_probs
from frequnlearn.models.prompts import PromptFormat, encode_completion
from frequnlearn.records import QAItem

log = logging.getLogger(__name__)

SUFFIX = "\nTrue or False:"
SEPARATOR = "\n\n"
_WARNED: set[tuple[str, int]] = set()


def verdict_token_ids(tokenizer: Any) -> tuple[int, int]:
    """First token of " True" and of " False"; where either is longer than one token, says so."""
    true_ids = encode_completion(tokenizer, " True")
    false_ids = encode_completion(tokenizer, " False")
    if not true_ids or not false_ids or true_ids[0] == false_ids[0]:
        raise DataError(
            "metrics: this tokenizer cannot tell ' True' from ' False' by their first token; drop 'tf'"
        )
    key = (getattr(tokenizer, "name_or_path", ""), len(tokenizer))
    if (len(true_ids) > 1 or len(false_ids) > 1) and key not in _WARNED:
        _WARNED.add(key)
        log.warning(
            "True/False probe: ' True' is %d tokens and ' False' %d; comparing their first tokens",
            len(true_ids),
            len(false_ids),
        )
    return true_ids[0], false_ids[0]


def _statement(fmt: PromptFormat, question: str, answer: str, tokenizer: Any) -> str:
    return fmt.full(question, answer, tokenizer) + SUFFIX


def _draw_other(rng: np.random.Generator, pool: Sequence[QAItem], accept: Any) -> QAItem | None:
    """A random pool item passing `accept`: a few random draws, then a full shuffled scan."""
    for idx in rng.integers(len(pool), size=16):
        if accept(pool[int(idx)]):
            return pool[int(idx)]
    for idx in rng.permutation(len(pool)):
        if accept(pool[int(idx)]):
            return pool[int(idx)]
    return None


def shots_for(item: QAItem, pool: Sequence[QAItem], n_shots: int, seed: int) -> list[tuple[str, str, bool]]:
    """(question, answer, is_true) of the solved examples before `item`'s query; fixed per item and seed."""
    rng = np.random.default_rng([seed, zlib.crc32(item.item_id.encode())])
    label = bool(rng.integers(2))
    chosen: set[str] = {item.item_id}
    shots = []
    for _ in range(n_shots):

        def eligible(other: QAItem) -> bool:
            same_person = item.person_id is not None and other.person_id == item.person_id
            return other.item_id not in chosen and not same_person

        shot = _draw_other(rng, pool, eligible)
        if shot is None:
            break
        chosen.add(shot.item_id)
        answer = shot.answer
        if not label:
            if shot.candidates:
                answer = shot.candidates[int(rng.integers(len(shot.candidates)))]
            else:
                other = _draw_other(rng, pool, lambda o, s=shot: o.answer != s.answer)
                if other is None:
                    continue
                answer = other.answer
        shots.append((shot.question, answer, label))
        label = not label
    return shots


def tf_prompt(
    item: QAItem,
    question: str,
    pool: Sequence[QAItem],
    fmt: PromptFormat,
    tokenizer: Any,
    n_shots: int,
    seed: int,
) -> str:
    """Solved examples, then "<question and true answer> True or False:"."""
    parts = [
        _statement(fmt, q, a, tokenizer) + (" True" if is_true else " False")
        for q, a, is_true in shots_for(item, pool, n_shots, seed)
    ]
    parts.append(_statement(fmt, question, item.answer, tokenizer))
    return SEPARATOR.join(parts)


@torch.inference_mode()
def next_token_probs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    token_ids: Sequence[int],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> np.ndarray:
    """Probabilities of `token_ids` as the next token after each prompt: array [prompts, tokens]."""
    out = np.zeros((len(prompts), len(token_ids)))
    for batch in plan_batches([len(p) for p in prompts], batch_size, budget):
        last = [len(prompts[i]) - 1 for i in batch]
        logp, offset = tail_log_probs(model, [prompts[i] for i in batch], min(last), pad_id)
        rows = torch.arange(len(batch), device=logp.device)
        picked = logp[rows, torch.tensor(last, device=logp.device) - offset][:, list(token_ids)]
        out[batch] = picked.double().exp().cpu().numpy()
    return out
