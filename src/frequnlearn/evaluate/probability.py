"""Probability-based metrics: answer log-likelihood, ranking among candidates, truth ratio.

All (prompt, completion) pairs of a call, true answers and wrong candidates alike, are scored together
in length-sorted batches; the metrics are then pure functions of per-token log-probs.

The fastest path scores a prompt and every completion asked of it in one row: the completions form a
token tree under the prompt (a shared first token is one node), each tree token attends to the prompt
and its own ancestors through an explicit 4D mask and sits at the position it has in its own plain
sequence, so every log-prob is the one the plain (prompt + completion) sequence gives, from one forward
pass per batch and with logits only where a completion token is predicted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from frequnlearn.evaluate.batching import (
    MAX_ROWS,
    cache_kwarg,
    counted,
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

    Architectures `tree_scorer` accepts run each distinct prompt with all of its completions (the true
    answer and every candidate) as one token-tree row; other models with a KV cache and position ids
    run each distinct prompt once and score its completions from the cached prompt; the rest get every
    (prompt + completion) sequence in full. All three give the plain sequence's log-probs.
    """
    scorer = tree_scorer(model)
    if scorer is not None:
        return tree_log_probs(scorer, pairs, pad_id, batch_size, budget)
    accepted = forward_kwargs(model)
    if cache_kwarg(accepted) and "position_ids" in accepted:
        return shared_prompt_log_probs(model, pairs, pad_id, batch_size, budget)
    return full_sequence_log_probs(model, pairs, pad_id, batch_size, budget)


# Architectures whose forward pass was read to take a custom 4D additive mask as is (transformers'
# `create_causal_mask` returns a 4D mask unchanged), place tokens by `position_ids` alone and slice the
# output layer's input by a boolean `logits_to_keep`; others take the paths below.
TREE_MODEL_TYPES = frozenset({"gpt2", "llama", "olmo", "olmo2"})
TREE_ATTENTION = frozenset({"eager", "sdpa"})


def tree_scorer(model: Any) -> Any | None:
    """The module to run token trees through, or None when the model cannot take them.

    A PEFT wrapper's forward hides the keywords; its base model carries the adapters in place, so it
    scores with them.
    """
    inner = model
    if hasattr(model, "get_base_model"):
        name = getattr(model, "active_adapter", None)
        active = getattr(model, "peft_config", {}).get(name) if isinstance(name, str) else None
        # Unknown adapter kinds, and prompt learning (virtual tokens the base model never sees), no.
        if active is None or getattr(active, "is_prompt_learning", True):
            return None
        inner = model.get_base_model()
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "model_type", None) not in TREE_MODEL_TYPES:
        return None
    if getattr(config, "_attn_implementation", None) not in TREE_ATTENTION:
        return None
    if not getattr(config, "is_causal", True):
        return None
    if not {"position_ids", "logits_to_keep", "attention_mask"} <= forward_kwargs(inner):
        return None
    return inner


@dataclass
class _Tree:
    """One prompt and the completions asked of it, as a row: the prompt, then one node per distinct
    completion prefix that is fed to the model (a completion's last token is predicted, never fed)."""

    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # node index, -1: the prompt's last token
    depths: list[int] = field(default_factory=list)
    children: dict[tuple[int, int], int] = field(default_factory=dict)
    # (pair, predicting row position per completion token, the completion's tokens)
    asks: list[tuple[int, list[int], list[int]]] = field(default_factory=list)

    def add(self, pair: int, completion: Sequence[int]) -> None:
        node, preds = -1, []
        for j, token in enumerate(completion):
            preds.append(len(self.prompt) - 1 if node < 0 else len(self.prompt) + node)
            if j == len(completion) - 1:
                break
            key = (node, int(token))
            if key not in self.children:
                self.children[key] = len(self.tokens)
                self.tokens.append(int(token))
                self.parents.append(node)
                self.depths.append(0 if node < 0 else self.depths[node] + 1)
            node = self.children[key]
        self.asks.append((pair, preds, list(completion)))

    def __len__(self) -> int:
        return len(self.prompt) + len(self.tokens)

    def fill(
        self,
        row: int,
        ids: np.ndarray,
        pos: np.ndarray,
        allow: np.ndarray,
        keep: np.ndarray,
        causal: np.ndarray,
    ) -> None:
        """Write this tree's tokens, positions, attention and wanted logits into batch row `row`
        (`causal`: a lower-triangular boolean matrix at least as wide as the prompt)."""
        p = len(self.prompt)
        ids[row, :p] = self.prompt
        ids[row, p : len(self)] = self.tokens
        pos[row, :p] = np.arange(p)
        pos[row, p : len(self)] = p + np.asarray(self.depths, dtype=np.int64)
        allow[row, :p, :p] = causal[:p, :p]
        for k, parent in enumerate(self.parents):
            line = allow[row, p + k]
            if parent < 0:
                line[:p] = True
            else:
                line[:] = allow[row, p + parent]
            line[p + k] = True
        for _, preds, _ in self.asks:
            keep[row, preds] = True


def _trees(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[_Tree]:
    """One tree per distinct prompt, in first-seen order."""
    trees: dict[tuple[int, ...], _Tree] = {}
    for i, (prompt, completion) in enumerate(pairs):
        key = tuple(prompt)
        if key not in trees:
            trees[key] = _Tree(prompt=[int(t) for t in key])
        trees[key].add(i, completion)
    return list(trees.values())


# Tokens per token-tree batch on a CPU: measured on the tiny study's GPT-2 (4x128, 300 items x 10
# answers, one thread), 1024 and 2048 ran ~20% faster than 8192 (a batch's activations stay in cache).
TREE_CPU_TOKENS = 2048
# Cells of a batch's [rows, width, width] attention mask: the cap keeps the mask small beside the
# activations when long rows meet a large token budget.
MASK_CELLS = 1 << 25


def _tree_batches(trees: Sequence[_Tree], batch_size: int | str, budget: int) -> Iterable[list[int]]:
    """Tree indices per batch, longest first. "auto" fills a batch up to `budget` tokens (and
    MASK_CELLS mask cells, MAX_ROWS rows); an int caps the (prompt, completion) pairs per batch (a
    tree larger than that runs alone)."""
    lengths = [len(t) for t in trees]
    order = sorted(range(len(trees)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    batch: list[int] = []
    count = 0
    for i in order:
        # Longest first: the batch's width is its first tree's length.
        width = lengths[batch[0]] if batch else lengths[i]
        if batch_size == "auto":
            full = (len(batch) + 1) * width > budget or (len(batch) + 1) * width * width > MASK_CELLS
            full = full or len(batch) >= MAX_ROWS
        else:
            full = count + len(trees[i].asks) > int(batch_size)
        if batch and full:
            batches.append(batch)
            batch, count = [], 0
        batch.append(i)
        count += len(trees[i].asks)
    if batch:
        batches.append(batch)
    return counted(batches, "scoring") if len(batches) > 1 else batches


@torch.inference_mode()
def tree_log_probs(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    batch_size: int | str,
    budget: int,
) -> list[np.ndarray]:
    """`completion_log_probs` through token trees: one row per distinct prompt (see the module note).

    `model` must be one `tree_scorer` accepts. Padding slots attend to themselves only, so no row of
    the attention is empty (an empty row would be NaN, and NaN times a zero weight is still NaN).
    """
    device = model_device(model)
    dtype = next(iter(model.parameters())).dtype
    if not dtype.is_floating_point:
        dtype = torch.float32
    if device.type == "cpu":
        budget = min(budget, TREE_CPU_TOKENS)
    trees = _trees(pairs)
    out: list[np.ndarray] = [np.zeros(0)] * len(pairs)
    for batch in _tree_batches(trees, batch_size, budget):
        width = max(len(trees[t]) for t in batch)
        rows = len(batch)
        ids = np.full((rows, width), pad_id, dtype=np.int64)
        pos = np.zeros((rows, width), dtype=np.int64)
        allow = np.zeros((rows, width, width), dtype=bool)
        keep = np.zeros((rows, width), dtype=bool)
        allow[:, np.arange(width), np.arange(width)] = True
        causal = np.tril(np.ones((width, width), dtype=bool))
        for r, t in enumerate(batch):
            trees[t].fill(r, ids, pos, allow, keep, causal)
        # Flat index of each kept (row, position) in the output layer's row-major output.
        flat = np.cumsum(keep.reshape(-1)).reshape(rows, width) - 1
        mask = torch.zeros((rows, 1, width, width), dtype=dtype)
        mask.masked_fill_(~torch.from_numpy(allow)[:, None], torch.finfo(dtype).min)
        logits = model(
            input_ids=torch.from_numpy(ids).to(device),
            attention_mask=mask.to(device),
            position_ids=torch.from_numpy(pos).to(device),
            logits_to_keep=torch.from_numpy(keep).to(device),
            use_cache=False,
        ).logits
        logits = logits.reshape(-1, logits.shape[-1]).float()
        at, targets, spans = [], [], []
        for r, t in enumerate(batch):
            for pair, preds, completion in trees[t].asks:
                spans.append((pair, len(at), len(completion)))
                at.extend(flat[r, preds].tolist())
                targets.extend(completion)
        at_t = torch.tensor(at, dtype=torch.long, device=logits.device)
        tgt_t = torch.tensor(targets, dtype=torch.long, device=logits.device)
        # log_softmax, as the other paths take it: x - max - log(sum) rounds unlike x - logsumexp.
        picked = logits.log_softmax(-1)[at_t, tgt_t]
        values = picked.double().cpu().numpy()
        for pair, start, n in spans:
            out[pair] = values[start : start + n]
    return out


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
