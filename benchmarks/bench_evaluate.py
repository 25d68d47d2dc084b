"""Evaluation speed: answer scoring against lm-eval's HFLM and the earlier paths, KV-cache decoding
against a one-item-at-a-time loop.

    .venv/bin/python benchmarks/bench_evaluate.py            # 300 items, tiny-study model size
    .venv/bin/python benchmarks/bench_evaluate.py --quick    # 40 items
    .venv/bin/python benchmarks/bench_evaluate.py --sweep    # also fixed batch sizes for the fast path
    .venv/bin/python benchmarks/bench_evaluate.py --scoring-only --repeats 3   # answer scoring alone

Answer scoring (every item's true answer and its wrong candidates) is timed four ways in one process
on the same token ids: `completion_log_probs` as the evaluation runs it (token trees: a prompt and all
its answers in one row), the cached-prompt path it replaced (the prompt run once, its KV cache copied
to each answer), lm-eval's HFLM (`_loglikelihood_tokens`: `loglikelihood` without its tokenisation,
at the fastest of a few batch sizes) and a one-by-one loop (every answer in its own forward pass).
Each must agree with the one-by-one log-probs within 1e-4 nats before any time is reported; ratios
are wall seconds of the same run. Greedy decoding is timed against a loop that re-runs the whole
sequence for each new token. The model is a randomly initialised GPT-2 (4 layers, width 128,
vocabulary 2048: the tiny study's size). Peak memory is the resident set size sampled during each
phase, above what the process held before it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.evaluate import evaluate_items
from frequnlearn.evaluate.batching import token_budget
from frequnlearn.evaluate.generation import greedy_decode, stop_token_mask
from frequnlearn.evaluate.probability import completion_log_probs, shared_prompt_log_probs
from frequnlearn.models.loading import pad_id_of
from frequnlearn.models.prompts import encode_completion, encode_pair, get_prompt_format
from frequnlearn.models.tokenizer import train_bpe_tokenizer
from frequnlearn.records import QAItem

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Tim"]
MIDDLE = ["Mae", "Lee", "Rose", "Jean", "Ray", "Ann", "Lou", "Kay"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton"]
EMPLOYERS = [
    "Google",
    "Apple",
    "Stanford University",
    "Acme Robotics",
    "Northwind Traders",
    "Blue Harbor Logistics",
    "Contoso Pharmaceuticals",
    "Initech",
    "Globex Corporation",
    "Umbrella Health",
    "Wayne Enterprises",
    "Stark Industries",
]


def make_items(n: int, k: int, seed: int = 0) -> list[QAItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(MIDDLE)} {rng.choice(LAST)}"
        answer = rng.choice(EMPLOYERS)
        wrong = rng.sample([e for e in EMPLOYERS if e != answer], k)
        items.append(
            QAItem(
                item_id=f"p{i:05d}-employer",
                question=f"Which company employs {name}?",
                answer=answer,
                candidates=wrong,
                person_id=i,
                group="forget_high",
                attribute="employer",
                frequency=1.0,
            )
        )
    return items


VOCAB = 2048


def make_model(vocab: int = VOCAB) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=128, n_layer=4, n_head=4)
    return GPT2LMHeadModel(config).eval()


def make_tokenizer(items: list[QAItem]) -> Any:
    fmt = get_prompt_format("plain")
    texts = [fmt.full(it.question, a) for it in items for a in [it.answer, *it.candidates]]
    texts += [f"{it.question} is {a}. " * 3 for it in items for a in EMPLOYERS]
    return train_bpe_tokenizer(texts, vocab_size=VOCAB, min_frequency=1)


class PeakRSS:
    """Peak resident set size above the starting point, sampled every few milliseconds."""

    def __enter__(self) -> PeakRSS:
        # Hand memory freed by earlier phases back to the OS first, or reusing it would look free.
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float, float, float]:
    """(result, best wall seconds, CPU seconds of that run, peak MiB of the first run).

    The best of a few runs is the least disturbed by other processes on a shared machine; CPU time
    (all threads) measures the work itself.
    """
    best = (math.inf, math.inf)
    peak = 0.0
    out = None
    for r in range(repeats):
        with PeakRSS() as mem:
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = mem.mib if r == 0 else peak
        best = min(best, (wall, cpu))
    return out, best[0], best[1], peak


@torch.inference_mode()
def naive_scores(model: Any, pairs: list[tuple[list[int], list[int]]]) -> list[np.ndarray]:
    out = []
    for prompt, completion in pairs:
        ids = torch.tensor([prompt + completion])
        logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
        pos = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
        out.append(logp[pos, torch.tensor(completion)].double().numpy())
    return out


def hflm_scores(
    lm: Any, pairs: list[tuple[list[int], list[int]]], texts: list[tuple[str, str]]
) -> list[float]:
    """Summed log-prob of each pair from lm-eval's HFLM, on the same token ids (no tokenisation)."""
    requests = [(text, list(p), list(c)) for text, (p, c) in zip(texts, pairs)]
    return [ll for ll, _ in lm._loglikelihood_tokens(requests, disable_tqdm=True)]


@torch.inference_mode()
def naive_generate(model: Any, prompts: list[list[int]], stop: torch.Tensor, max_new: int) -> list[list[int]]:
    out = []
    for prompt in prompts:
        ids = list(prompt)
        new: list[int] = []
        for _ in range(max_new):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            new.append(token)
            ids.append(token)
            if stop[token]:
                break
        out.append(new)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 items instead of 300")
    parser.add_argument("--candidates", type=int, default=9, help="wrong candidates per item (default 9)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine, more threads measure contention, not work)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest counts")
    parser.add_argument("--sweep", action="store_true", help="also time fixed batch sizes for the fast path")
    parser.add_argument("--scoring-only", action="store_true", help="time answer scoring only")
    parser.add_argument(
        "--hflm-batch-sizes",
        default="16,64,256",
        help="HFLM batch sizes to try; its fastest counts (default 16,64,256)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = 40 if args.quick else 300
    items = make_items(n, args.candidates)
    tok = make_tokenizer(items)
    # The output layer keeps the study's 2048 rows even where this small corpus yields fewer merges.
    model = make_model(max(VOCAB, len(tok)))
    vocab = model.config.vocab_size
    fmt = get_prompt_format("plain")
    pad_id = pad_id_of(tok)
    budget = token_budget(model)
    pairs, texts = [], []
    for it in items:
        prompt, answer = encode_pair(tok, fmt, it.question, it.answer)
        pairs.append((prompt, answer))
        pairs.extend((prompt, encode_completion(tok, fmt.completion(c))) for c in it.candidates)
        texts.extend((fmt.prompt(it.question, tok), fmt.completion(a)) for a in [it.answer, *it.candidates])
    prompts = [encode_pair(tok, fmt, it.question, it.answer)[0] for it in items]
    stop = stop_token_mask(tok, vocab)
    cfg = EvalConfig()
    print(
        f"{n} items x {1 + args.candidates} answers, GPT-2 4x128, vocab {vocab} "
        f"(tokenizer {len(tok)}), "
        f"torch threads {torch.get_num_threads()}, CPU token budget {budget}"
    )

    from frequnlearn.evaluate.utility import _in_memory_lm, _quiet_lm_eval

    with _quiet_lm_eval():
        hflms = {int(b): _in_memory_lm(model, tok, int(b)) for b in args.hflm_batch_sizes.split(",")}
    # Warm up every path once (first calls pay for lazy initialisation).
    completion_log_probs(model, pairs[:20], pad_id, cfg.batch_size, budget)
    shared_prompt_log_probs(model, pairs[:20], pad_id, cfg.batch_size, budget)
    for lm in hflms.values():
        hflm_scores(lm, pairs[:20], texts[:20])
    naive_scores(model, pairs[:5])

    reps = args.repeats
    fast_lp, fast_s, fast_cpu, fast_mem = timed(
        lambda: completion_log_probs(model, pairs, pad_id, cfg.batch_size, budget), reps
    )
    old_lp, old_s, old_cpu, old_mem = timed(
        lambda: shared_prompt_log_probs(model, pairs, pad_id, cfg.batch_size, budget), reps
    )
    hf_runs = {b: timed(lambda lm=lm: hflm_scores(lm, pairs, texts), reps) for b, lm in hflms.items()}
    hf_bs = min(hf_runs, key=lambda b: hf_runs[b][1])
    hf_ll, hf_s, hf_cpu, hf_mem = hf_runs[hf_bs]
    slow_lp, slow_s, slow_cpu, slow_mem = timed(lambda: naive_scores(model, pairs), reps)

    def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))

    diff = max_diff(fast_lp, slow_lp)
    diff_old = max_diff(fast_lp, old_lp)
    diff_hf = max(abs(float(np.sum(x)) - y) for x, y in zip(fast_lp, hf_ll))
    for what, d in (("one-by-one", diff), ("cached-prompt", diff_old), ("HFLM (sums)", diff_hf)):
        assert d < 1e-4, f"token-tree and {what} log-probs differ by {d}"
    print(
        f"scoring: token trees {n / fast_s:8.1f} items/s ({fast_mem:6.1f} MiB peak) | "
        f"cached prompt {n / old_s:8.1f} items/s ({old_mem:6.1f} MiB) | "
        f"lm-eval HFLM (batch {hf_bs}) {n / hf_s:8.1f} items/s ({hf_mem:6.1f} MiB) | "
        f"one-by-one {n / slow_s:8.1f} items/s"
    )
    print(
        f"scoring ratios, same run: {hf_s / fast_s:5.2f}x lm-eval HFLM ({hf_cpu / fast_cpu:5.2f}x CPU time), "
        f"{old_s / fast_s:5.2f}x the cached-prompt path, {slow_s / fast_s:5.1f}x one-by-one; "
        f"cached prompt was {hf_s / old_s:5.2f}x HFLM"
    )
    print(
        f"scoring max |diff| (nats): {diff:.1e} per token vs one-by-one, {diff_old:.1e} vs cached prompt, "
        f"{diff_hf:.1e} per answer vs HFLM"
    )
    print(
        "  HFLM by batch size: "
        + ", ".join(f"{b}: {n / r[1]:.1f} items/s" for b, r in sorted(hf_runs.items()))
    )

    if args.scoring_only:
        return
    fast_g, fast_s, fast_cpu, fast_mem = timed(
        lambda: greedy_decode(model, prompts, stop, pad_id, args.max_new_tokens, cfg.batch_size, budget), reps
    )
    slow_g, slow_s, slow_cpu, slow_mem = timed(
        lambda: naive_generate(model, prompts, stop, args.max_new_tokens), reps
    )
    same = sum(a == b for a, b in zip(fast_g, slow_g))
    assert same >= 0.98 * n, f"only {same}/{n} generations agree"
    print(
        f"generation:  batched {n / fast_s:8.1f} items/s ({fast_mem:6.1f} MiB peak), "
        f"no-cache loop {n / slow_s:8.1f} items/s ({slow_mem:6.1f} MiB) -> {slow_s / fast_s:5.1f}x wall, "
        f"{slow_cpu / fast_cpu:5.1f}x CPU time ({same}/{n} identical, {args.max_new_tokens} new tokens max)"
    )

    everything = EvalConfig(
        metrics=["prob", "gen", "tf"], probes=["question"], max_new_tokens=args.max_new_tokens
    )
    _, all_s, _, all_mem = timed(lambda: evaluate_items(model, tok, items, everything, fmt=fmt), reps)
    print(
        f"evaluate_items (prob, gen, tf; question probe): {n / all_s:8.1f} items/s ({all_mem:6.1f} MiB peak)"
    )

    if args.sweep:
        for bs in (8, 32, 128, 512):
            _, s_p, _, _ = timed(lambda bs=bs: completion_log_probs(model, pairs, pad_id, bs, budget), reps)
            _, s_g, _, _ = timed(
                lambda bs=bs: greedy_decode(model, prompts, stop, pad_id, args.max_new_tokens, bs, budget),
                reps,
            )
            print(
                f"  batch_size={bs:<4} probability {n / s_p:8.1f} items/s, generation {n / s_g:8.1f} items/s"
            )


if __name__ == "__main__":
    main()
