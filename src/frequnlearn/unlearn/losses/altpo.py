"""AltPO: prefer an alternate answer over the true one, against the frozen model as reference.

The alternates are the model's own: before training, one answer per forget item is sampled at
temperature 1 from the model as it is, with the true answer and the item's evaluation candidates
ruled out (`alternate_answers`). AltPO generates its alternates with the model being unlearned too
(prompted to invent plausible facts); a model pretrained here on biographies cannot follow such an
instruction, but its own answer distribution, with the truth taken out, is a plausible alternative by
construction. The candidates are excluded because the rank and truth-ratio metrics compare the answer
against them: an alternate among them would be scored as forgetting for the wrong reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from frequnlearn.errors import DataError
from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, sequence_logp

# Samples drawn per item before giving up, and tokens an alternate may run beyond the answer's length.
ALTERNATE_TRIES = 8
EXTRA_TOKENS = 8


@register("altpo", "forget", needs=("alternate", "ref_logp"))
def altpo(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = -(2/beta) log sigmoid(beta [(log pi(a|x) - log ref(a|x)) - (log pi(y|x) - log ref(y|x))]).

    Mekala et al. 2024, "Alternate Preference Optimization for Unlearning Factual Knowledge in Large
    Language Models" (COLING 2025, arXiv 2409.13474): DPO with the item's alternate answer a as the
    preferred and the true answer y as the rejected response, so forgetting y comes with positive
    feedback toward a plausible answer instead of toward nothing in particular (or a refusal, as in
    IdkDPO). 2/beta scale as in the authors' code and open-unlearning; example mean; both reference
    log-probabilities computed once before training. One alternate per item (docs/methods.md).
    """
    require(inp, "altpo", "alternate", "ref_logp")
    require(inp.alternate, "altpo", "ref_logp")
    win = sequence_logp(inp.alternate) - inp.alternate.ref_logp
    lose = sequence_logp(inp) - inp.ref_logp
    return -(2.0 / p.beta) * F.logsigmoid(p.beta * (win - lose)).mean()


@torch.no_grad()
def alternate_answers(model: Any, tokenizer: Any, fmt: Any, items: Sequence[Any], seed: int) -> list[str]:
    """One alternate answer per item, sampled at temperature 1 from `model` before it is trained.

    The answer's leading whitespace tokens (a tokenizer may spell " Google" as " " + "Google") are
    kept; at the first token after them the stop tokens (no empty answer) and the tokens with which the
    true answer and every candidate go on there are ruled out, so the sample leaves them at once
    instead of copying most of the answer. The rest is the model's own sampling, up to a stop token
    (end of text or a newline, as greedy decoding stops) or the answer's length plus EXTRA_TOKENS. A
    sample whose normalised text equals the answer or a candidate is drawn again (ALTERNATE_TRIES in
    all). Each item's draws come from its own generator, seeded by `seed` and its id, so an item's
    alternate does not depend on which other items are unlearned with it.
    """
    from frequnlearn.evaluate.generation import continuation_text, stop_token_mask
    from frequnlearn.evaluate.known import normalize_value
    from frequnlearn.models.loading import max_positions
    from frequnlearn.models.prompts import encode_completion, encode_pair

    device = next(model.parameters()).device
    limit = max_positions(model)
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for it in items:
            prompt_ids, answer_ids = encode_pair(tokenizer, fmt, it.question, it.answer)
            taken = {normalize_value(t) for t in (it.answer, *it.candidates)}
            lead = _leading_blanks(tokenizer, answer_ids)
            prefix = answer_ids[:lead]
            banned = set()
            for ids in [
                answer_ids,
                *(encode_completion(tokenizer, fmt.completion(c)) for c in it.candidates),
            ]:
                if len(ids) > lead and ids[:lead] == prefix:
                    banned.add(ids[lead])
            budget = len(answer_ids) - lead + EXTRA_TOKENS
            if limit is not None:
                budget = min(budget, limit - len(prompt_ids) - lead)
            digest = hashlib.sha256(f"altpo-{seed}-{it.item_id}".encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big"))
            for _ in range(ALTERNATE_TRIES):
                new = _sample(
                    model, prompt_ids + prefix, banned, budget, tokenizer, gen, device, stop_token_mask
                )
                text = continuation_text(tokenizer, prefix + new)
                if text and normalize_value(text) not in taken:
                    out.append(text)
                    break
            else:
                raise DataError(
                    f"forget item {it.item_id}: AltPO found no alternate answer in {ALTERNATE_TRIES} samples "
                    "from the model (each was empty, the answer or a candidate): the model puts nearly all "
                    "its probability there; unlearn this item with another method"
                )
    finally:
        model.train(was_training)
    return out


def _leading_blanks(tokenizer: Any, ids: list[int]) -> int:
    """How many of the answer's first tokens decode to whitespace only (never all of them)."""
    n = 0
    while n < len(ids) - 1 and not tokenizer.decode([ids[n]]).strip():
        n += 1
    return n


def _sample(
    model: Any,
    prompt_ids: list[int],
    banned: set[int],
    budget: int,
    tokenizer: Any,
    gen: torch.Generator,
    device: Any,
    stop_token_mask: Any,
) -> list[int]:
    """Token ids of one temperature-1 continuation (a CPU generator, so draws match on any device)."""
    ids = list(prompt_ids)
    new: list[int] = []
    stop = None
    for step in range(max(budget, 1)):
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float().cpu()
        if stop is None:
            stop = stop_token_mask(tokenizer, logits.shape[-1])
        if step == 0:
            logits = logits.masked_fill(stop, float("-inf"))
            logits[list(banned)] = float("-inf")
        token = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
        new.append(token)
        ids.append(token)
        if stop[token]:
            break
    return new
