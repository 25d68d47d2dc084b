"""Pretraining GPT-2 from scratch on a generated data directory, on Hugging Face `accelerate`.

One short loop: documents are packed whole into fixed-length sequences, biography and QA sequences
are mixed at a fixed ratio and shuffled per epoch from the seed, so the data position of any step is
a pure function of (seed, step) and a resumed run sees exactly the batches an uninterrupted run sees.
A small knowledge check (greedy answers to each group's questions) tracks what the model has learned.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn import progress
from frequnlearn.config.base import config_hash, to_dict
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError, DataError, TrainingError
from frequnlearn.models.loading import pad_id_of
from frequnlearn.records import (
    QAItem,
    append_jsonl,
    claim_output_dir,
    from_record,
    read_jsonl,
    run_info,
    sha256_file,
    write_json,
)

CONFIG_FILE = "pretrain_config.json"
DONE_FILE = "done.json"
# Fields that change speed, bookkeeping or the knowledge check but not the trained weights: a resumed
# run may change them.
RUNTIME_FIELDS = (
    "num_threads",
    "log_every",
    "save_every",
    "keep_checkpoints",
    "log_with",
    "eval_every",
    "eval_attributes",
    "eval_per_group",
    "eval_batch_size",
    "prompt_format",
)
IGNORE_INDEX = -100


# ---------------------------------------------------------------- data


def load_documents(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """(biography texts, QA texts) of `DATA_DIR/corpus.jsonl`, in file order."""
    path = Path(data_dir) / "corpus.jsonl"
    bios: list[str] = []
    qas: list[str] = []
    for i, row in enumerate(read_jsonl(path), 1):
        kind, text = row.get("kind"), row.get("text")
        if not isinstance(text, str) or kind not in ("bio", "qa"):
            raise DataError(f"{path}:{i}: each row needs a 'text' string and a 'kind' of 'bio' or 'qa'")
        (bios if kind == "bio" else qas).append(text)
    if not bios and not qas:
        raise DataError(f"{path}: the corpus is empty; run `frequnlearn generate` first")
    return bios, qas


def encode_documents(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each document, starting with BOS/end-of-text exactly as `encode_prompt` does.

    Evaluation prompts are encoded by `frequnlearn.models.prompts.encode_prompt`; encoding documents the
    same way (batched for speed) makes a question at evaluation look like the start of a document.
    """
    if not texts:
        return []
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        out.append(ids)
    return out


def pack(
    docs: Sequence[Sequence[int]],
    order: Iterator[int] | Sequence[int],
    seq_len: int,
    limit: int | None = None,
    window: int = 16,
) -> tuple[list[list[int]], int]:
    """Pack documents whole into sequences of at most `seq_len` tokens (first fit over the last
    `window` open sequences); a document longer than `seq_len` is cut into pieces.

    Cutting a biography would separate its facts from the name in its first sentence, so documents
    are never split across sequences; the unused tail of a sequence is padding. With `limit`, packing
    stops before a document would open sequence number `limit + 1`. Returns (sequences, documents used).
    """
    seqs: list[list[int]] = []
    open_: list[int] = []
    used = 0
    for i in order:
        doc = docs[i]
        pieces = [doc[k : k + seq_len] for k in range(0, len(doc), seq_len)] if len(doc) > seq_len else [doc]
        slot = (
            next((j for j in open_ if len(seqs[j]) + len(pieces[0]) <= seq_len), None)
            if len(pieces) == 1
            else None
        )
        if slot is None and limit is not None and len(seqs) + len(pieces) > limit:
            break
        used += 1
        if slot is not None:
            seqs[slot].extend(pieces[0])
            if seq_len - len(seqs[slot]) < 8:
                open_.remove(slot)
            continue
        for piece in pieces:
            seqs.append(list(piece))
        if len(seqs[-1]) < seq_len:
            open_.append(len(seqs) - 1)
            if len(open_) > window:
                open_.pop(0)
    return seqs, used


@dataclass
class EpochPlan:
    """What one epoch holds: counts are recorded in run.json so the real exposure is documented."""

    bio_seqs: int
    qa_seqs: int
    qa_docs_used: int
    pad_fraction: float


class PackedCorpus:
    """Tokenised documents and the per-epoch sequence order, a pure function of (seed, epoch)."""

    def __init__(
        self,
        bio_docs: list[list[int]],
        qa_docs: list[list[int]],
        seq_len: int,
        qa_ratio: float | None,
        seed: int,
        pad_id: int,
    ) -> None:
        self.bio_docs, self.qa_docs = bio_docs, qa_docs
        self.seq_len, self.qa_ratio, self.seed, self.pad_id = seq_len, qa_ratio, seed, pad_id
        self._cache: tuple[int, Any, Any] | None = None
        self._plans: dict[int, EpochPlan] = {}

    def _rng(self, epoch: int) -> Any:
        import numpy as np

        return np.random.default_rng([self.seed, epoch])

    def _sequences(self, epoch: int) -> tuple[list[list[int]], EpochPlan]:
        rng = self._rng(epoch)
        bio_seqs, _ = pack(self.bio_docs, rng.permutation(len(self.bio_docs)).tolist(), self.seq_len)
        if self.qa_ratio is None:
            qa_seqs, used = pack(self.qa_docs, rng.permutation(len(self.qa_docs)).tolist(), self.seq_len)
        elif self.qa_docs and self.qa_ratio > 0:
            target = max(1, round(self.qa_ratio * len(bio_seqs)))

            def passes() -> Iterator[int]:  # QA documents repeated in freshly shuffled passes
                while True:
                    yield from rng.permutation(len(self.qa_docs)).tolist()

            qa_seqs, used = pack(self.qa_docs, passes(), self.seq_len, limit=target)
        else:
            qa_seqs, used = [], 0
        seqs = bio_seqs + qa_seqs
        seqs = [seqs[i] for i in rng.permutation(len(seqs))]
        filled = sum(len(s) for s in seqs)
        plan = EpochPlan(len(bio_seqs), len(qa_seqs), used, 1.0 - filled / max(1, len(seqs) * self.seq_len))
        return seqs, plan

    def plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans[epoch] = self._sequences(epoch)[1]
        return self._plans[epoch]

    def epoch(self, epoch: int) -> tuple[Any, Any]:
        """(input_ids, labels) tensors of shape [sequences, seq_len]; padding is not a target."""
        import torch

        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1], self._cache[2]
        seqs, self._plans[epoch] = self._sequences(epoch)
        ids = torch.full((len(seqs), self.seq_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), self.seq_len), IGNORE_INDEX, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = ids[row, : len(seq)]
        self._cache = (epoch, ids, labels)
        return ids, labels


class BatchStream:
    """Global batches over consecutive epochs: step `s` always gets the same sequences."""

    def __init__(self, corpus: PackedCorpus, batch_size: int) -> None:
        self.corpus, self.batch_size = corpus, batch_size
        self.epoch_sizes: list[int] = []

    def steps_for(self, epochs: float) -> int:
        """Whole global batches in `epochs` epochs (a fractional last epoch counts in part)."""
        whole = math.floor(epochs)
        total = sum(self._size(e) for e in range(whole))
        if epochs > whole:
            total += int((epochs - whole) * self._size(whole))
        return total // self.batch_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, offset in that epoch) of the first sequence of `step`."""
        index = step * self.batch_size
        epoch = 0
        while True:
            size = self._size(epoch)
            if index < size:
                return epoch, index
            index -= size
            epoch += 1

    def _size(self, epoch: int) -> int:
        while len(self.epoch_sizes) <= epoch:
            plan = self.corpus.plan(len(self.epoch_sizes))
            self.epoch_sizes.append(plan.bio_seqs + plan.qa_seqs)
        return self.epoch_sizes[epoch]

    def batch(self, step: int) -> tuple[Any, Any, float]:
        """(input_ids, labels, fractional epoch) of the global batch of `step`."""
        import torch

        epoch, offset = self.position(step)
        ids_parts, label_parts = [], []
        need = self.batch_size
        while need:
            ids, labels = self.corpus.epoch(epoch)
            take = min(need, ids.shape[0] - offset)
            ids_parts.append(ids[offset : offset + take])
            label_parts.append(labels[offset : offset + take])
            need -= take
            epoch, offset = epoch + 1, 0
        return torch.cat(ids_parts), torch.cat(label_parts), self.epoch_at(step)

    def epoch_at(self, step: int) -> float:
        """Epochs completed before `step` (fractional)."""
        epoch, offset = self.position(step)
        return epoch + offset / self._size(epoch)


# ---------------------------------------------------------------- knowledge check


def _accuracy(rows: list[bool]) -> dict[str, Any]:
    return {"accuracy": sum(rows) / len(rows) if rows else float("nan"), "n": len(rows)}


def greedy_decode(model: Any, ids: Any, mask: Any, max_new_tokens: int) -> Any:
    """Greedy continuation of left-padded prompts with a KV cache: [batch, max_new_tokens] token ids.

    A bare loop rather than `generate`: for models this small, `generate`'s per-token overhead costs
    more than the forward passes.
    """
    import torch
    from transformers import DynamicCache

    # transformers renamed `past_key_values` to `cache`; pass whichever this version's forward takes.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = {cache_arg: DynamicCache()}
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = []
    inputs = ids
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True, **cache
        ).logits
        inputs = logits[:, -1].argmax(-1, keepdim=True)
        out.append(inputs)
        mask = torch.cat([mask, torch.ones_like(inputs)], dim=1)
        positions = positions[:, -1:] + 1
    return torch.cat(out, dim=1)


def knowledge_check(
    model: Any, tokenizer: Any, items: Sequence[QAItem], *, fmt: Any = None, batch_size: int = 128
) -> dict[str, Any]:
    """Greedy answers to `items`, scored by `evaluate`'s one "known" rule (its default, exact); accuracy
    overall, per group, exposure, attribute.

    Batched with left padding and a KV cache; prompts are encoded like every pretraining document.
    The continuation is cut at end-of-text and at the first newline, as evaluation cuts it.
    """
    import torch

    from frequnlearn.evaluate.generation import continuation_text
    from frequnlearn.evaluate.known import is_known
    from frequnlearn.models.prompts import encode_completion, encode_prompt, get_prompt_format

    fmt = fmt or get_prompt_format("plain")
    pad = pad_id_of(tokenizer)
    prompts = [encode_prompt(tokenizer, fmt.prompt(item.question, tokenizer)) for item in items]
    answer_lens = [len(encode_completion(tokenizer, fmt.completion(item.answer))) for item in items]
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    correct = [False] * len(items)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                    mask[row, width - len(prompts[i]) :] = 1
                new_tokens = greedy_decode(
                    model, ids.to(device), mask.to(device), max(answer_lens[i] for i in idx) + 1
                )
                for i, row in zip(idx, new_tokens.tolist()):
                    # The answer ends at end-of-text; what follows belongs to another document.
                    if tokenizer.eos_token_id in row:
                        row = row[: row.index(tokenizer.eos_token_id)]
                    correct[i] = is_known(continuation_text(tokenizer, row), items[i].answer)
    finally:
        model.train(was_training)
    groups: dict[str, dict[str, list[bool]]] = {
        "group": defaultdict(list),
        "exposure": defaultdict(list),
        "attribute": defaultdict(list),
    }
    for item, ok in zip(items, correct):
        groups["group"][str(item.group)].append(ok)
        exposure = item.frequency
        groups["exposure"][
            str(int(exposure)) if exposure is not None and float(exposure).is_integer() else str(exposure)
        ].append(ok)
        groups["attribute"][str(item.attribute)].append(ok)
    result: dict[str, Any] = _accuracy(correct)
    for key, table in groups.items():
        result[f"by_{key}"] = {name: _accuracy(rows) for name, rows in sorted(table.items(), key=_sort_key)}
    return result


def _sort_key(entry: tuple[str, Any]) -> tuple[int, float | str]:
    try:
        return (0, float(entry[0]))
    except ValueError:
        return (1, entry[0])


def load_eval_items(data_dir: str | Path, cfg: PretrainConfig) -> list[QAItem]:
    """The knowledge check's items: every group's QA (held out, or in the corpus for retain people),
    restricted to `eval_attributes` and sampled to `eval_per_group` per group from the seed."""
    import numpy as np

    path = Path(data_dir) / "qa.jsonl"
    items = [from_record(QAItem, row) for row in read_jsonl(path)]
    if cfg.eval_attributes:
        items = [it for it in items if it.attribute in cfg.eval_attributes]
    if not items:
        raise DataError(f"{path}: no QA items for eval_attributes {cfg.eval_attributes}")
    if cfg.eval_per_group:
        by_group: dict[str, list[QAItem]] = defaultdict(list)
        for it in items:
            by_group[str(it.group)].append(it)
        rng = np.random.default_rng([cfg.seed, 7])
        items = []
        for group in sorted(by_group):
            pool = by_group[group]
            keep = sorted(rng.permutation(len(pool))[: cfg.eval_per_group].tolist())
            items.extend(pool[i] for i in keep)
    return items


# ---------------------------------------------------------------- run files


def _read_rows(path: Path, max_step: int) -> list[dict[str, Any]]:
    """Rows of a JSONL log up to `max_step`; a line cut by a kill is dropped."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if row.get("step", 0) <= max_step:
                    rows.append(row)
    return rows


class JsonlLog:
    """Append-only log that, on resume, keeps only the rows of steps already checkpointed."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled:
            from frequnlearn.records import write_jsonl

            write_jsonl(path, _read_rows(path, resume_step))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, row)


def _checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            m = re.fullmatch(r"step-(\d+)", p.name)
            if m and (p / "trainer_state.json").is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def _check_run_config(out_dir: Path, cfg: PretrainConfig, data_sha256: str) -> None:
    """A directory holding another run is never silently continued (or returned) with a different
    config or on other data. A run recorded before the data hash was kept is taken as is."""
    path = out_dir / CONFIG_FILE
    mine = {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_FIELDS}
    if path.is_file():
        record = json.loads(path.read_text())
        theirs = {k: v for k, v in record["config"].items() if k not in RUNTIME_FIELDS}
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            raise ConfigError(
                f"--out {out_dir}: holds a pretraining run with other settings ({', '.join(changed)}); "
                "use another --out, or remove it to start over"
            )
        if record.get("data_sha256", data_sha256) != data_sha256:
            raise ConfigError(
                f"--out {out_dir}: holds a pretraining run on other data (its corpus.jsonl differs from "
                "--data's); use another --out, or remove it to start over"
            )


def _unreadable(path: Path) -> str | None:
    """Why the checkpoint `path` cannot be resumed from (a file missing, cut short or corrupt), or None.

    Checked before `load_state`, which would otherwise fail half way with the model already changed.
    """
    import torch

    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as err:
        return f"trainer_state.json: {err}"
    files = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pkl", ".pt", ".safetensors"))
    if not any(p.name.startswith(("model", "pytorch_model")) for p in files):
        return "no model weights"
    for file in files:
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                load_file(file)
            else:
                torch.load(file, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any failure to read means: not this checkpoint
            return f"{file.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None


# ---------------------------------------------------------------- the loop


def _mixed_precision(setting: str) -> str:
    """accelerate's name for the setting ("no" is spelt fp32 in configs: YAML reads `no` as false)."""
    import torch

    if setting == "fp32":
        return "no"
    if setting != "auto":
        if not torch.cuda.is_available():
            raise ConfigError(f"mixed_precision: {setting} needs a GPU; use auto or fp32 on CPU")
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _check_trackers(names: Sequence[str]) -> None:
    """accelerate drops a tracker whose package is missing without a word; say so instead."""
    if not names:
        return
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            raise ConfigError(
                f"log_with: {name} is not installed; `pip install {name}` or remove it from log_with"
            )


def build_optimizer(model: Any, cfg: PretrainConfig) -> Any:
    """AdamW with weight decay on matrices and embeddings only (not biases or layer norms)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def build_scheduler(optimizer: Any, cfg: PretrainConfig, total_steps: int) -> Any:
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    warmup = int(cfg.warmup * total_steps)
    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    make = get_cosine_schedule_with_warmup if cfg.schedule == "cosine" else get_linear_schedule_with_warmup
    return make(optimizer, warmup, total_steps)


def prepare_data(data_dir: Path, tokenizer: Any, cfg: PretrainConfig) -> PackedCorpus:
    bios, qas = load_documents(data_dir)
    pad = pad_id_of(tokenizer)
    return PackedCorpus(
        encode_documents(tokenizer, bios),
        encode_documents(tokenizer, qas),
        cfg.seq_len,
        cfg.qa_ratio,
        cfg.seed,
        pad,
    )


def _prepare_tokenizer(accelerator: Any, data_dir: Path, preset: Any, out_dir: Path) -> Any:
    """Built once (on the main process), saved in out_dir, and read back by every process."""
    from transformers import AutoTokenizer

    from frequnlearn.models.tokenizer import get_tokenizer

    if accelerator.is_main_process and not (out_dir / "tokenizer_config.json").is_file():
        tok = get_tokenizer(preset.tokenizer, data_dir, preset.vocab_size)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
    tok = AutoTokenizer.from_pretrained(out_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def pretrain(data_dir: str | Path, cfg: PretrainConfig, out_dir: str | Path) -> Path:
    """Train a GPT-2 preset on `data_dir`'s corpus into `out_dir`; resume if a checkpoint is there."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from frequnlearn.models.presets import build_model
    from frequnlearn.models.prompts import get_prompt_format

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    for name in ("corpus.jsonl", "qa.jsonl"):
        if not (data_dir / name).is_file():
            raise DataError(
                f"--data {data_dir}: no {name}; point it at a directory written by `frequnlearn generate`"
            )
    data_sha256 = sha256_file(data_dir / "corpus.jsonl")
    if (out_dir / DONE_FILE).is_file():
        _check_run_config(out_dir, cfg, data_sha256)
        return out_dir
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    preset = cfg.model_preset()
    fmt = get_prompt_format(cfg.prompt_format)

    _check_trackers(cfg.log_with)
    # cpu=True on a machine without GPUs lets torchrun-started processes (`accelerate launch --multi_gpu`,
    # `torchrun --nproc_per_node N`) train together over gloo instead of each alone.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=_mixed_precision(cfg.mixed_precision),
        log_with=cfg.log_with or None,
        project_dir=str(out_dir),
    )
    n_proc = accelerator.num_processes
    if cfg.batch_size % (n_proc * cfg.grad_accum):
        raise ConfigError(
            f"batch_size: {cfg.batch_size} is not divisible by processes x grad_accum ({n_proc} x {cfg.grad_accum}); "
            "the global batch is kept whatever the process count, so pick a multiple"
        )
    main = accelerator.is_main_process
    if main:
        claim_output_dir(out_dir, "model")
        _check_run_config(out_dir, cfg, data_sha256)
        write_json(
            out_dir / CONFIG_FILE,
            {"config": to_dict(cfg), "key": config_hash(cfg), "data_sha256": data_sha256},
        )
    accelerator.wait_for_everyone()

    set_seed(cfg.seed)
    tok = _prepare_tokenizer(accelerator, data_dir, preset, out_dir)
    corpus = prepare_data(data_dir, tok, cfg)
    stream = BatchStream(corpus, cfg.batch_size)
    total_steps = cfg.max_steps or stream.steps_for(cfg.epochs)
    if total_steps < 1:
        raise ConfigError(
            f"epochs: {cfg.epochs} epochs hold fewer sequences than one batch ({cfg.batch_size})"
        )
    items = load_eval_items(data_dir, cfg)

    model = build_model(preset, tok, seed=cfg.seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    ckpt_dir = out_dir / "checkpoints"
    if main and ckpt_dir.is_dir():
        for partial in ckpt_dir.glob(".step-*.tmp"):  # a save cut by a kill
            shutil.rmtree(partial, ignore_errors=True)
    start_step, tokens_seen = 0, 0
    resumed_window = (0.0, 0)
    # Resume from the newest checkpoint that can be read whole; say which one, and why newer ones were not.
    saved = _checkpoints(ckpt_dir)
    for _, path in reversed(saved):
        why = _unreadable(path)
        if why is not None:
            if main:
                print(f"checkpoint {path.name} is unreadable ({why}); trying an older one", file=sys.stderr)
            continue
        if main:
            print(f"resuming from checkpoint {path.name}", file=sys.stderr)
        accelerator.load_state(str(path))
        state = json.loads((path / "trainer_state.json").read_text())
        start_step, tokens_seen = state["step"], state["tokens_seen"]
        resumed_window = (state["window_loss"], state["window_steps"])
        break
    else:
        if saved and main:
            print("no checkpoint is readable; training from step 0", file=sys.stderr)
    metrics = JsonlLog(out_dir / "metrics.jsonl", start_step, main)
    knowledge = JsonlLog(out_dir / "knowledge.jsonl", start_step, main)
    if cfg.log_with:
        accelerator.init_trackers("frequnlearn-pretrain", config=to_dict(cfg))

    def check_knowledge(step: int, epoch: float) -> dict[str, Any] | None:
        result = None
        if main:
            with accelerator.autocast():
                result = knowledge_check(
                    accelerator.unwrap_model(model), tok, items, fmt=fmt, batch_size=cfg.eval_batch_size
                )
            knowledge.write({"step": step, "epoch": round(epoch, 4), **result})
            if cfg.log_with:
                flat = {f"knowledge/{g}": v["accuracy"] for g, v in result["by_group"].items()}
                accelerator.log(flat, step=step)
        accelerator.wait_for_everyone()
        return result

    def save_checkpoint(step: int) -> None:
        tmp = ckpt_dir / f".step-{step:08d}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=False)
        accelerator.wait_for_everyone()
        if main:
            # The loss of a logging window cut by the checkpoint, so a resumed run logs the same numbers.
            write_json(
                tmp / "trainer_state.json",
                {
                    "step": step,
                    "tokens_seen": tokens_seen,
                    "window_loss": loss_sum.item(),
                    "window_steps": window_steps,
                },
            )
            final = ckpt_dir / f"step-{step:08d}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for _, old in _checkpoints(ckpt_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    bar = progress.bar(total_steps, "pretrain", unit="step", initial=start_step, enabled=main)
    shown_at = 0.0  # when the bar's numbers were last refreshed
    rank, local_rows = accelerator.process_index, cfg.batch_size // n_proc
    micro = local_rows // cfg.grad_accum
    tokens_per_step = cfg.batch_size * cfg.seq_len
    loss_sum = torch.tensor(resumed_window[0], device=accelerator.device)
    window_steps, epoch = resumed_window[1], 0.0
    timed_steps, window_time = 0, 0.0  # tokens/s counts training time only (no checks, no saves)
    model.train()
    for step in range(start_step, total_steps):
        t0 = time.perf_counter()
        ids, labels, epoch = stream.batch(step)
        ids = ids[rank * local_rows : (rank + 1) * local_rows].to(accelerator.device, non_blocking=True)
        labels = labels[rank * local_rows : (rank + 1) * local_rows].to(accelerator.device, non_blocking=True)
        for k in range(cfg.grad_accum):
            sync = contextlib.nullcontext() if k == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                rows = slice(k * micro, (k + 1) * micro)
                # Padding fills each packed sequence's tail only: the mask leaves every real token's
                # attention as it is and tells the model the tail is padding.
                mask = (labels[rows] != IGNORE_INDEX).long()
                loss = (
                    model(input_ids=ids[rows], attention_mask=mask, labels=labels[rows]).loss / cfg.grad_accum
                )
                accelerator.backward(loss)
            loss_sum += loss.detach()
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        if not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += tokens_per_step
        done = step + 1
        window_steps += 1
        timed_steps += 1
        window_time += time.perf_counter() - t0
        if bar.active and (time.monotonic() - shown_at > 1.0 or done == total_steps):
            # This process's loss over the current logging window; numbers a second old are current enough.
            shown_at = time.monotonic()
            bar.set(
                epoch=f"{epoch:.2f}",
                loss=f"{loss_sum.item() / window_steps:.3f}",
                **{"tok/s": f"{timed_steps * tokens_per_step / max(window_time, 1e-9):.0f}"},
            )
        if done % cfg.log_every == 0 or done == total_steps:
            mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / window_steps
            if not math.isfinite(mean_loss):
                raise TrainingError(
                    f"loss became {mean_loss} at step {done}; lower lr (now {cfg.lr}) or check the data "
                    "(the last checkpoint is kept)"
                )
            row = {
                "step": done,
                "epoch": round(epoch, 4),
                "loss": round(mean_loss, 6),
                "lr": scheduler.get_last_lr()[0],
                "tokens_seen": tokens_seen,
                "tokens_per_s": round(timed_steps * tokens_per_step / max(window_time, 1e-9), 1),
            }
            metrics.write(row)
            if cfg.log_with:
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=done)
            loss_sum.zero_()
            window_steps, timed_steps, window_time = 0, 0, 0.0
        bar.update(1)
        if cfg.eval_every and done % cfg.eval_every == 0 and done < total_steps:
            check_knowledge(done, epoch)
        if done % cfg.save_every == 0 and done < total_steps:
            save_checkpoint(done)
    bar.close()

    final = check_knowledge(total_steps, stream.epoch_at(total_steps))
    if main:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        plan = corpus.plan(0)
        summary = {
            "steps": total_steps,
            "epochs": round(stream.epoch_at(total_steps), 4),
            "tokens_seen": tokens_seen,
            "n_params": sum(p.numel() for p in unwrapped.parameters()),
            "preset": to_dict(preset),
            "vocab_size": len(tok),
            "num_processes": n_proc,
            "mixed_precision": accelerator.mixed_precision,
            "data": {
                "bio_documents": len(corpus.bio_docs),
                "qa_documents": len(corpus.qa_docs),
                "bio_sequences_per_epoch": plan.bio_seqs,
                "qa_sequences_per_epoch": plan.qa_seqs,
                "qa_repeats_per_epoch": round(plan.qa_docs_used / max(1, len(corpus.qa_docs)), 4),
                "pad_fraction": round(plan.pad_fraction, 4),
                "longest_document": max((len(d) for d in corpus.bio_docs + corpus.qa_docs), default=0),
            },
            "knowledge": final,
        }
        write_json(out_dir / "run.json", {**run_info(cfg, cfg.seed), "summary": summary})
        write_json(out_dir / DONE_FILE, {"step": total_steps})
    accelerator.wait_for_everyone()
    if cfg.log_with:
        accelerator.end_training()
    return out_dir
