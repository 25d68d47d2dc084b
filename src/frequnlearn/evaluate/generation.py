"""Generation-based metrics: batched greedy decoding and scores on the continuation only.

Decoding left-pads the prompts, gives each row position ids that start at 0 on its first real token
(so a padded row sees exactly the positions it would see alone) and reuses the KV cache, so each new
token costs one position, not the whole sequence. A row is done at the end-of-text token or at the
first token that contains a newline; the batch stops when all rows are done.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch

from frequnlearn.evaluate.batching import cache_kwarg, forward_kwargs, model_device, pad, plan_batches
from frequnlearn.evaluate.known import normalize, rouge_recall

_STOP_MASKS: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def stop_token_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """True for end-of-text and for every token whose text holds a newline (the answer's end)."""
    cached = _STOP_MASKS.get(tokenizer)
    if cached is not None and len(cached) == vocab_size:
        return cached
    n = min(vocab_size, len(tokenizer))
    texts = tokenizer.batch_decode([[tid] for tid in range(n)])
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[:n] = torch.tensor(["\n" in t for t in texts], dtype=torch.bool)
    for tid in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None and tid < vocab_size:
            mask[tid] = True
    _STOP_MASKS[tokenizer] = mask
    return mask


@torch.inference_mode()
def greedy_decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    stop: torch.Tensor,
    pad_id: int,
    max_new_tokens: int,
    batch_size: int | str,
    budget: int,
    finite: list[bool] | None = None,
) -> list[list[int]]:
    """Greedy continuation ids of each prompt, up to and including its stop token.

    `finite`, when given, is filled with one flag per prompt: whether every logit its decoding read
    was finite (the argmax of NaN logits is an arbitrary token, not an answer).
    """
    out: list[list[int]] = [[] for _ in prompts]
    ok = [True] * len(prompts)
    lengths = [len(p) for p in prompts]
    for batch in plan_batches(lengths, batch_size, budget, extra=max_new_tokens, desc="generating"):
        ids_rows, ok_rows = _decode_batch(model, [prompts[i] for i in batch], stop, pad_id, max_new_tokens)
        for i, ids, good in zip(batch, ids_rows, ok_rows):
            out[i] = ids
            ok[i] = good
    if finite is not None:
        finite[:] = ok
    return out


def _decode_batch(
    model: Any, prompts: Sequence[Sequence[int]], stop: torch.Tensor, pad_id: int, max_new_tokens: int
) -> tuple[list[list[int]], list[bool]]:
    device = model_device(model)
    accepted = forward_kwargs(model)
    cache_name = cache_kwarg(accepted)
    ids, mask = pad(prompts, pad_id, "left", device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {}
    if "position_ids" in accepted:
        kwargs["position_ids"] = positions
    if cache_name:
        kwargs["use_cache"] = True
    if "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = 1
    stop = stop.to(device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    bad = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    for step in range(max_new_tokens):
        logits = out.logits[:, -1]
        bad |= ~done & ~torch.isfinite(logits).all(-1)
        token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        new.append(token)
        done |= stop[token]
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        cache = getattr(out, cache_name, None) if cache_name else None
        if cache is not None:
            step_ids = token[:, None]
            kwargs[cache_name] = cache
            if "position_ids" in accepted:
                kwargs["position_ids"] = positions
        else:
            # A model that keeps no cache gets the whole sequence again.
            ids = torch.cat([ids, token[:, None]], dim=1)
            step_ids = ids
            if "position_ids" in accepted:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=step_ids, attention_mask=mask, **kwargs)
    stops = set(torch.nonzero(stop).flatten().tolist())
    result = []
    for row in torch.stack(new, dim=1).tolist():
        ids_row: list[int] = []
        for tid in row:
            ids_row.append(tid)
            if tid in stops:
                break
        result.append(ids_row)
    return result, (~bad).tolist()


def continuation_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """The generated answer: decoded continuation cut at the first newline or end-of-text."""
    eos = tokenizer.eos_token_id
    ids = [t for t in ids if t != eos and t != tokenizer.pad_token_id]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


def generation_scores(continuation: str, answer: str, prefix: bool = False) -> dict[str, float]:
    """ROUGE-L recall of the answer in the continuation, exact and contains match after normalisation.

    `prefix=True` (biography completion, where the sentence goes on after the value) counts a
    continuation that starts with the answer, at a word boundary, as exact.
    """
    cont, ans = normalize(continuation), normalize(answer)
    if prefix:
        exact = cont == ans or cont.startswith(ans + " ")
    else:
        exact = cont == ans
    contains = bool(ans) and f" {ans} " in f" {cont} "
    recall = rouge_recall(continuation, answer)
    return {"rougeL_recall": float(recall), "exact": float(exact), "contains": float(contains)}
