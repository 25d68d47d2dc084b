"""The few-shot True/False probe: does the model affirm the true answer?

Each query follows `n_shots` solved examples, alternating true statements and false ones (a wrong
candidate as the answer). The examples are one fixed set, drawn once from the retain group when there
is one (facts that stay known while others are unlearned), so every query shares the same prefix and
its KV cache is computed once; items about a person in that set get a second, disjoint set. Only the
true answer is queried: the probe follows whether the model still affirms the fact, and any bias
towards " True" is the same at every step of a trajectory and for the retain items that forget items
are read against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from frequnlearn.errors import DataError
from frequnlearn.evaluate.batching import (
    cache_kwarg,
    forward_kwargs,
    model_device,
    pad,
    plan_batches,
    tail_log_probs,
)
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


def _person(item: QAItem) -> Any:
    return item.item_id if item.person_id is None else ("person", item.person_id)


def shot_sets(pool: Sequence[QAItem], n_shots: int, seed: int) -> list[list[tuple[QAItem, str, bool]]]:
    """Two disjoint sets of (item, shown answer, is_true) about different people, fixed by `seed`."""
    retain = [it for it in pool if it.group == "retain"]
    source = retain if len({_person(it) for it in retain}) >= 2 * n_shots else list(pool)
    source = sorted(source, key=lambda it: it.item_id)
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(source))
    sets: list[list[tuple[QAItem, str, bool]]] = []
    used: set[Any] = set()
    for _ in range(2):
        label = bool(rng.integers(2))
        shots: list[tuple[QAItem, str, bool]] = []
        for idx in order:
            if len(shots) == n_shots:
                break
            shot = source[int(idx)]
            if _person(shot) in used:
                continue
            answer = shot.answer
            if not label:
                wrong = list(shot.candidates) or sorted({it.answer for it in source} - {shot.answer})
                if not wrong:
                    continue
                answer = wrong[int(rng.integers(len(wrong)))]
            used.add(_person(shot))
            shots.append((shot, answer, label))
            label = not label
        sets.append(shots)
    return sets


def tf_texts(
    item: QAItem,
    question: str,
    sets: Sequence[Sequence[tuple[QAItem, str, bool]]],
    fmt: PromptFormat,
    tokenizer: Any,
) -> tuple[str, str]:
    """(prefix, query): the solved examples, then "<question and true answer> True or False:".

    The query starts with the separator, so the split falls before whitespace and tokenizing the two
    apart gives the tokens of the whole (checked by the caller all the same).
    """
    shots = sets[0]
    if any(_person(shot) == _person(item) for shot, _, _ in shots):
        shots = sets[1]
    statement = _statement(fmt, question, item.answer, tokenizer)
    if not shots:
        return "", statement
    prefix = SEPARATOR.join(
        _statement(fmt, shot.question, answer, tokenizer) + (" True" if is_true else " False")
        for shot, answer, is_true in shots
    )
    return prefix, SEPARATOR + statement


def encode_split(encode: Callable[[str], list[int]], prefix: str, query: str) -> tuple[list[int], list[int]]:
    """Ids of prefix and query (`encode` is `encode_prompt` bound to a tokenizer) that together are the
    ids of the whole text.

    Where the tokenizer merges across the boundary, the whole text's ids are split after the first
    token instead (correct, only not shared).
    """
    whole = encode(prefix + query)
    head = encode(prefix)
    if len(head) < len(whole) and whole[: len(head)] == head:
        return head, whole[len(head) :]
    return whole[:1], whole[1:]


@torch.inference_mode()
def next_token_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    token_ids: Sequence[int],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> np.ndarray:
    """Probabilities of `token_ids` as the next token after each (prefix + query): [pairs, tokens].

    With a KV cache, each distinct prefix of a batch runs once and its queries run after it; without
    one, every whole sequence runs right-padded.
    """
    accepted = forward_kwargs(model)
    if cache_kwarg(accepted) and "position_ids" in accepted:
        return _prefix_next_token_probs(model, pairs, token_ids, pad_id, batch_size, budget)
    seqs = [list(p) + list(q) for p, q in pairs]
    out = np.zeros((len(seqs), len(token_ids)))
    for batch in plan_batches([len(s) for s in seqs], batch_size, budget, desc="true/false"):
        last = [len(seqs[i]) - 1 for i in batch]
        logp, offset = tail_log_probs(model, [seqs[i] for i in batch], min(last), pad_id)
        rows = torch.arange(len(batch), device=logp.device)
        picked = logp[rows, torch.tensor(last, device=logp.device) - offset][:, list(token_ids)]
        out[batch] = picked.double().exp().cpu().numpy()
    return out


def _prefix_next_token_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    token_ids: Sequence[int],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> np.ndarray:
    """Prefix pass left-padded with its cache copied to each query; queries left-padded too, so every
    row ends in the last column and only that column goes through the output layer."""
    device = model_device(model)
    accepted = forward_kwargs(model)
    cache_name = cache_kwarg(accepted)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
    keys = [tuple(p) for p, _ in pairs]
    group = {k: g for g, k in enumerate(dict.fromkeys(keys))}
    lengths = [len(p) + len(q) for p, q in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (group[keys[i]], -len(pairs[i][1]), i))
    out = np.zeros((len(pairs), len(token_ids)))
    wanted = torch.tensor(list(token_ids), device=device)
    for batch in plan_batches(lengths, batch_size, budget, order=order, desc="true/false"):
        if any(len(pairs[i][1]) == 0 for i in batch):
            raise ValueError("every query needs at least one token after its prefix")
        prefix_keys = list(dict.fromkeys(keys[i] for i in batch))
        slot = {k: j for j, k in enumerate(prefix_keys)}
        ids, mask = pad([list(k) for k in prefix_keys], pad_id, "left", device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
        rows = torch.tensor([slot[keys[i]] for i in batch], device=device)
        cache = getattr(first, cache_name)
        cache.batch_select_indices(rows)
        q_ids, q_mask = pad([list(pairs[i][1]) for i in batch], pad_id, "left", device)
        q_pos = positions[rows, -1:] + q_mask.cumsum(-1)
        second = model(
            input_ids=q_ids,
            attention_mask=torch.cat([mask[rows], q_mask], dim=1),
            position_ids=q_pos,
            use_cache=True,
            **{cache_name: cache},
            **keep,
        )
        logp = second.logits[:, -1].float().log_softmax(-1)[:, wanted]
        out[batch] = logp.double().exp().cpu().numpy()
    return out
