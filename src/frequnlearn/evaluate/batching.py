"""Padding, length-sorted batches and the batch-size choice shared by every metric family.

Rows are sorted by length so a batch holds rows of similar length (little padding); every score is a
function of its own row only, so the batch a row lands in never changes its value.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from frequnlearn import progress

# Rows per batch never exceed this, whatever the token budget allows.
MAX_ROWS = 512
# Token budget per forward pass on a CPU: past it, larger batches stop getting faster.
CPU_TOKEN_BUDGET = 8192


def model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def forward_kwargs(model: Any) -> set[str]:
    """Keyword names `model.forward` takes; `**` catch-alls count as taking everything."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {"*"} | set(params)
    return set(params)


def cache_kwarg(accepted: set[str]) -> str | None:
    """Name under which `forward` takes a KV cache (`cache` in transformers 5, `past_key_values` before)."""
    for name in ("cache", "past_key_values"):
        if name in accepted:
            return name
    return None


def token_budget(model: Any) -> int:
    """Tokens per forward pass for batch_size="auto": what 40% of the free memory of the model's device
    holds (KV cache, activations, float32 logits per token), and on a CPU at most CPU_TOKEN_BUDGET."""
    device = model_device(model)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 4096
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 32
    vocab = getattr(config, "vocab_size", None) or 50_000
    elem = next(iter(model.parameters())).element_size()
    per_token = elem * (2 * layers * hidden + 8 * hidden) + 8 * vocab
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        ceiling = 1 << 20
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        ceiling = CPU_TOKEN_BUDGET
    return int(max(256, min(ceiling, 0.4 * free / per_token)))


def plan_batches(
    lengths: Sequence[int],
    batch_size: int | str,
    budget: int,
    extra: int = 0,
    order: Sequence[int] | None = None,
    desc: str = "",
) -> Iterable[list[int]]:
    """Row indices per batch, longest rows first unless `order` is given; `extra` tokens are added per
    row (generation). An int `batch_size` is rows per batch; "auto" fills batches up to `budget` tokens.
    With `desc`, a bar counts the sequences done (see `frequnlearn.progress`).
    """
    if order is None:
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    if batch_size != "auto":
        size = int(batch_size)
        batches = [list(order[start : start + size]) for start in range(0, len(order), size)]
    else:
        batch: list[int] = []
        width = 0
        for i in order:
            new_width = max(width, lengths[i] + extra)
            if batch and (len(batch) + 1) * new_width > budget or len(batch) >= MAX_ROWS:
                batches.append(batch)
                batch, new_width = [], lengths[i] + extra
            batch.append(i)
            width = new_width
        if batch:
            batches.append(batch)
    if desc and len(batches) > 1:
        return counted(batches, desc)
    return batches


def counted(batches: list[list[int]], desc: str) -> Iterator[list[int]]:
    """The batches, with a bar counting the sequences done (batches differ in size)."""
    with progress.bar(sum(map(len, batches)), desc, unit="seq") as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) padded on the right or the left."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if side == "right":
            ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        else:
            ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def tail_log_probs(
    model: Any, seqs: Sequence[Sequence[int]], first: int, pad_id: int
) -> tuple[torch.Tensor, int]:
    """Float32 log-softmax from position `first` on, in one right-padded forward pass.

    Returns (log_probs [rows, positions, vocab], offset): position t of a row is `log_probs[row, t - offset]`
    and predicts token t + 1. Right padding keeps every real token at the position it has alone, so no
    position ids are needed; only the tail holding the wanted positions goes through the output layer.
    """
    device = model_device(model)
    ids, mask = pad(seqs, pad_id, "right", device)
    keep = ids.shape[1] - first
    accepted = forward_kwargs(model)
    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = keep
    if "use_cache" in accepted:
        kwargs["use_cache"] = False
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    if logits.shape[1] > keep:
        logits = logits[:, -keep:]
    return logits.float().log_softmax(-1), ids.shape[1] - logits.shape[1]
