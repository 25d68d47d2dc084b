"""Generation-based metrics: batched greedy decoding and scores on the continuation only.

Decoding left-pads the prompts, gives each row position ids that start at 0 on its first real token
(so a padded row sees exactly the positions it would see alone) and reuses the KV cache, so each new
token costs one position, not the whole sequence. A row is done at the end-of-text token or at the
first token that contains a newline; the batch stops when all rows are done.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch

from frequnlearn.evaluate.batching import cache_kwarg, forward_kwargs, model_device, pad, plan_batches

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
) -> list[list[int]]:
    """Greedy continuation ids of each prompt, up to and including its stop token."""
    out: list[list[int]] = [[] for _ in prompts]
    lengths = [len(p) for p in prompts]
    for batch in plan_batches(lengths, batch_size, budget, extra=max_new_tokens, desc="generating"):
        for i, ids in zip(
            batch, _decode_batch(model, [prompts[i] for i in batch], stop, pad_id, max_new_tokens)
        ):
            out[i] = ids
    return out


def _decode_batch(
    model: Any, prompts: Sequence[Sequence[int]], stop: torch.Tensor, pad_id: int, max_new_tokens: int
) -> list[list[int]]:
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
    new: list[torch.Tensor] = []
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
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
    return result


def continuation_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """The generated answer: decoded continuation cut at the first newline or end-of-text."""
    eos = tokenizer.eos_token_id
    ids = [t for t in ids if t != eos and t != tokenizer.pad_token_id]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return text.split("\n", 1)[0].strip()


_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case-folded, punctuation and symbols turned into spaces, whitespace collapsed (Unicode-aware)."""
    chars = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in unicodedata.normalize("NFKC", text)]
    return _SPACE.sub(" ", "".join(chars).casefold()).strip()


class _Tokenizer:
    """Word tokenizer for rouge_score: its default one drops every non-ASCII letter ("Zürich" -> "z rich")."""

    def tokenize(self, text: str) -> list[str]:
        return normalize(text).split()


_SCORER: Any = None


def _rouge() -> Any:
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return _SCORER


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
    recall = _rouge().score(answer, continuation)["rougeL"].recall
    return {"rougeL_recall": float(recall), "exact": float(exact), "contains": float(contains)}
