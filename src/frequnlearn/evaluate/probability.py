"""Probability-based metrics: answer log-likelihood, ranking among candidates, truth ratio.

All (prompt, completion) pairs of a call, true answers and wrong candidates alike, are scored together
in length-sorted, right-padded batches; the metrics are then pure functions of per-token log-probs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from frequnlearn.evaluate.batching import (
    cache_kwarg,
    forward_kwargs,
    model_device,
    pad,
    plan_batches,
    tail_log_probs,
)


@torch.inference_mode()
def completion_log_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> list[np.ndarray]:
    """Per-token log p(completion token | prompt, earlier completion tokens) for each pair.

    Models with a KV cache and position ids run each distinct prompt once and score all of its
    completions (the true answer and every candidate) from the cached prompt; others get every
    (prompt + completion) sequence in full.
    """
    accepted = forward_kwargs(model)
    if cache_kwarg(accepted) and "position_ids" in accepted:
        return shared_prompt_log_probs(model, pairs, pad_id, batch_size, budget)
    return full_sequence_log_probs(model, pairs, pad_id, batch_size, budget)


@torch.inference_mode()
def full_sequence_log_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> list[np.ndarray]:
    """One right-padded sequence per pair: needs nothing of the model but logits."""
    seqs = [list(p) + list(c) for p, c in pairs]
    out: list[np.ndarray] = [np.zeros(0)] * len(pairs)
    for batch in plan_batches([len(s) for s in seqs], batch_size, budget, desc="scoring"):
        starts = [len(pairs[i][0]) for i in batch]
        lens = [len(pairs[i][1]) for i in batch]
        logp, offset = tail_log_probs(model, [seqs[i] for i in batch], min(starts) - 1, pad_id)
        # Position start-1+j predicts completion token j.
        pos = torch.tensor(starts)[:, None] - 1 + _steps(lens)
        picked = _pick(logp, pos - offset, [pairs[i][1] for i in batch])
        for k, i in enumerate(batch):
            out[i] = picked[k, : lens[k]]
    return out


def _steps(lens: Sequence[int]) -> torch.Tensor:
    """[rows, max len] of 0..len-1, padded slots repeating the last valid step (read, then dropped)."""
    steps = torch.arange(max(lens))
    return torch.minimum(steps[None, :], torch.tensor(lens)[:, None] - 1)


def _pick(logp: torch.Tensor, pos: torch.Tensor, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """logp[row, pos[row, j], targets[row][j]] as float64, zero-padded targets beyond each row's length."""
    width = pos.shape[1]
    tgt = torch.tensor([list(t[:width]) + [0] * (width - len(t[:width])) for t in targets])
    rows = torch.arange(len(targets))[:, None]
    device = logp.device
    return logp[rows.to(device), pos.to(device), tgt.to(device)].double().cpu().numpy()


@torch.inference_mode()
def shared_prompt_log_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> list[np.ndarray]:
    """Each distinct prompt of a batch runs once (left-padded, with position ids); its KV cache is then
    copied to each of its completions, which run right-padded after it.

    The first completion token is scored from the prompt pass, the rest from the completion pass.
    """
    device = model_device(model)
    accepted = forward_kwargs(model)
    cache_name = cache_kwarg(accepted)
    keys = [tuple(p) for p, _ in pairs]
    group = {k: g for g, k in enumerate(dict.fromkeys(keys))}
    lengths = [len(p) + len(c) for p, c in pairs]
    # Longest prompts first, a prompt's completions side by side.
    order = sorted(range(len(pairs)), key=lambda i: (-len(pairs[i][0]), group[keys[i]], -len(pairs[i][1]), i))
    out: list[np.ndarray] = [np.zeros(0)] * len(pairs)
    for batch in plan_batches(lengths, batch_size, budget, order=order, desc="scoring"):
        prompt_keys = list(dict.fromkeys(keys[i] for i in batch))
        slot = {k: j for j, k in enumerate(prompt_keys)}
        ids, mask = pad([list(k) for k in prompt_keys], pad_id, "left", device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"position_ids": positions, "use_cache": True}
        if "logits_to_keep" in accepted:
            kwargs["logits_to_keep"] = 1
        first = model(input_ids=ids, attention_mask=mask, **kwargs)
        first_logp = first.logits[:, -1].float().log_softmax(-1)
        rows = torch.tensor([slot[keys[i]] for i in batch], device=device)
        completions = [list(pairs[i][1]) for i in batch]
        lens = [len(c) for c in completions]
        head = first_logp[rows, torch.tensor([c[0] for c in completions], device=device)]
        head = head.double().cpu().numpy()
        tail = None
        if max(lens) > 1:
            cache = getattr(first, cache_name)
            cache.batch_select_indices(rows)
            # Feed tokens 1..n-1 of each completion (token n needs no input), after its prompt.
            c_ids, c_mask = pad(
                [c[:-1] if len(c) > 1 else c[:1] for c in completions], pad_id, "right", device
            )
            c_mask[torch.tensor(lens, device=device) == 1] = 0
            c_pos = positions[rows, -1:] + 1 + torch.arange(c_ids.shape[1], device=device)[None, :]
            second = model(
                input_ids=c_ids,
                attention_mask=torch.cat([mask[rows], c_mask], dim=1),
                position_ids=c_pos,
                use_cache=True,
                **{cache_name: cache},
            )
            logp = second.logits.float().log_softmax(-1)
            tail_lens = [max(n - 1, 1) for n in lens]
            tail = _pick(logp, _steps(tail_lens), [c[1:] if len(c) > 1 else c[:1] for c in completions])
        for k, i in enumerate(batch):
            values = [head[k]]
            if lens[k] > 1:
                values.extend(tail[k, : lens[k] - 1])
            out[i] = np.asarray(values, dtype=np.float64)
    return out


def likelihood_metrics(true_lp: np.ndarray, wrong_lps: Sequence[np.ndarray]) -> dict[str, Any]:
    """Scores of the true answer, and of its standing among wrong candidates when there are any.

    The ranking compares length-normalised log-probabilities; a tie counts against the true answer,
    so a model that no longer tells answers apart (e.g. a flat distribution) does not rank it first.
    A non-finite log-prob anywhere (NaN/inf logits) makes the row `finite = False` with every metric
    NaN: comparisons with NaN are all false, which would otherwise rank the truth first.
    """
    row: dict[str, Any] = dict.fromkeys(
        (
            "logprob",
            "logprob_per_token",
            "p_norm",
            "n_answer_tokens",
            "rank",
            "rank_correct",
            "truth_ratio",
            "margin",
        ),
        math.nan,
    )
    finite = bool(np.isfinite(true_lp).all()) and all(bool(np.isfinite(w).all()) for w in wrong_lps)
    row["finite"] = finite
    row["n_answer_tokens"] = float(len(true_lp))
    if not finite:
        return row
    n = len(true_lp)
    logprob = float(np.sum(true_lp))
    per_token = logprob / n
    row.update(logprob=logprob, logprob_per_token=per_token, p_norm=math.exp(per_token))
    if len(wrong_lps):
        wrong = np.array([float(np.mean(w)) for w in wrong_lps])
        rank = 1 + int(np.sum(wrong >= per_token))
        row["rank"] = float(rank)
        row["rank_correct"] = float(rank == 1)
        with np.errstate(over="ignore"):
            row["truth_ratio"] = float(np.mean(np.exp(wrong - per_token)))
        row["margin"] = float(per_token - wrong.max())
    return row
