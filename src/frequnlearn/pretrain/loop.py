"""Pretraining GPT-2 from scratch on a generated data directory, on Hugging Face `accelerate`.

`setup` builds a run and its `TrainState` (restored from the newest checkpoint of the same run when
there is one), `train_step` is one optimizer step on one global batch, and `pretrain` is the loop
around them: batches, logging, knowledge checks, checkpoints, then the model, its run.json record and
the done marker (`records.mark_done`).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn import progress
from frequnlearn.config.base import to_dict
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError, TrainingError
from frequnlearn.models.card import write_pretrained_card
from frequnlearn.pretrain.checkpoint import (
    CHECKPOINTS,
    STATE_FILE,
    JsonlLog,
    check_space,
    commit_checkpoint,
    finished,
    load_state,
    remove_partial_saves,
    resumable,
    run_key,
    save_state,
)
from frequnlearn.pretrain.data import (
    IGNORE_INDEX,
    BatchStream,
    PackedCorpus,
    corpus_sha256,
    prepare_data,
    prepare_tokenizer,
)
from frequnlearn.pretrain.knowledge import knowledge_check, load_eval_items
from frequnlearn.pretrain.settings import build_optimizer, build_scheduler, mixed_precision_name, run_summary
from frequnlearn.records import QAItem, claim_output_dir, mark_done, output_set, run_info, write_json


@dataclass
class TrainState:
    """What a step changes and a checkpoint restores: the prepared model, optimizer and schedule, the
    step, and the loss of the current logging window (a checkpoint may cut one; a resumed run must
    log the same numbers)."""

    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    grad_accum: int
    max_grad_norm: float
    tokens_per_step: int
    step: int = 0
    tokens_seen: int = 0
    window_loss: Any = None  # a tensor on the device: micro-batch losses summed since the last log row
    window_steps: int = 0
    forward: Any = None  # the model through torch.compile (`compile: true`), sharing its weights


@dataclass
class Run:
    """What stays fixed while a run trains: its settings, data, knowledge-check items and logs."""

    cfg: PretrainConfig
    out_dir: Path
    data_sha256: str
    tokenizer: Any
    corpus: PackedCorpus
    stream: BatchStream
    items: list[QAItem]
    fmt: Any
    total_steps: int
    main: bool
    metrics: JsonlLog
    knowledge: JsonlLog

    @property
    def key(self) -> str:
        return run_key(self.cfg, self.data_sha256)

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / CHECKPOINTS


@dataclass
class Meter:
    """Training speed over a logging window (steps and seconds of training only: no checks, no saves)."""

    steps: int = 0
    seconds: float = 0.0
    shown_at: float = 0.0  # when the bar's numbers were last refreshed

    def tokens_per_s(self, tokens_per_step: int) -> float:
        return self.steps * tokens_per_step / max(self.seconds, 1e-9)


# ---------------------------------------------------------------- the loop


def pretrain(data_dir: str | Path, cfg: PretrainConfig, out_dir: str | Path) -> Path:
    """Train a GPT-2 preset on `data_dir`'s corpus into `out_dir`; resume if a checkpoint of this run is
    there, and return at once if this run finished there."""
    if cfg.ensemble:  # the batched loop, with one model: the same numbers as in any ensemble
        from frequnlearn.pretrain.ensemble import pretrain_ensemble

        return pretrain_ensemble(data_dir, [cfg], [out_dir])[0]
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    data_sha256 = corpus_sha256(data_dir)
    if finished(out_dir, cfg, data_sha256):
        return out_dir
    run, state = setup(data_dir, cfg, out_dir, data_sha256)
    acc = state.accelerator
    rows = cfg.batch_size // acc.num_processes
    mine = slice(acc.process_index * rows, (acc.process_index + 1) * rows)
    meter = Meter()
    state.model.train()
    with progress.bar(run.total_steps, "pretrain", unit="step", initial=state.step, enabled=run.main) as bar:
        while state.step < run.total_steps:
            t0 = time.perf_counter()
            ids, labels, epoch = run.stream.batch(state.step)
            batch = (
                ids[mine].to(acc.device, non_blocking=True),
                labels[mine].to(acc.device, non_blocking=True),
            )
            train_step(state, batch)
            meter.steps += 1
            meter.seconds += time.perf_counter() - t0
            done, last = state.step, state.step == run.total_steps
            if bar.active and (time.monotonic() - meter.shown_at > 1.0 or last):
                show(bar, state, epoch, meter)
            if done % cfg.log_every == 0 or last:
                log_window(run, state, epoch, meter)
            bar.update(1)
            if cfg.eval_every and done % cfg.eval_every == 0 and not last:
                result = check_knowledge(run, state, epoch)
                if target_met(run, state, result):
                    bar.set(stopped="knowledge target met")
                    finish(run, state, result)
                    return out_dir
            if done % cfg.save_every == 0 and not last:
                save_checkpoint(run, state)
    finish(run, state)
    return out_dir


def target_met(run: Run, state: TrainState, result: dict[str, Any] | None) -> bool:
    """Whether each group of `stop_known` has reached its fraction known in this check (decided by
    the main process, which alone runs the check, and told to the others)."""
    targets = run.cfg.stop_known
    if not targets:
        return False
    met = False
    if run.main:
        assert result is not None
        by_group = result["by_group"]
        missing = sorted(set(targets) - set(by_group))
        if missing:
            raise ConfigError(
                f"stop_known: the knowledge check has no items of {', '.join(missing)} (eval_attributes "
                f"{run.cfg.eval_attributes or 'all'}); name groups the data has"
            )
        met = all(by_group[g]["accuracy"] >= t for g, t in targets.items())
    if state.accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        met = bool(broadcast_object_list([met])[0])
    return met


def train_step(state: TrainState, batch: tuple[Any, Any]) -> dict[str, Any]:
    """One optimizer step on this process's rows (input ids, labels) of a global batch, in grad_accum
    micro-batches; returns the step's loss (a tensor: reading it would wait for the device) and the
    learning rate it applied."""
    import torch

    acc, model = state.accelerator, state.model
    ids, labels = batch
    micro = ids.shape[0] // state.grad_accum
    step_loss = torch.zeros((), device=ids.device)
    for k in range(state.grad_accum):
        last = k == state.grad_accum - 1
        with contextlib.nullcontext() if last else acc.no_sync(model):
            rows = slice(k * micro, (k + 1) * micro)
            # Padding fills each packed sequence's tail only: the mask leaves every real token's
            # attention as it is and tells the model the tail is padding.
            mask = (labels[rows] != IGNORE_INDEX).long()
            forward = model if state.forward is None else state.forward
            loss = (
                forward(input_ids=ids[rows], attention_mask=mask, labels=labels[rows]).loss / state.grad_accum
            )
            acc.backward(loss)
        state.window_loss += loss.detach()
        step_loss += loss.detach()
    if state.max_grad_norm > 0:
        acc.clip_grad_norm_(model.parameters(), state.max_grad_norm)
    lr = state.scheduler.get_last_lr()[0]
    state.optimizer.step()
    if not acc.optimizer_step_was_skipped:
        state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.tokens_seen += state.tokens_per_step
    state.window_steps += 1
    return {"loss": step_loss, "lr": lr}


# ---------------------------------------------------------------- setup


def setup(data_dir: Path, cfg: PretrainConfig, out_dir: Path, data_sha256: str) -> tuple[Run, TrainState]:
    """Everything a run needs, built in the order an uninterrupted run builds it (the seeded model
    first), then restored from this run's newest readable checkpoint, if any."""
    import torch
    from accelerate.utils import set_seed

    from frequnlearn.models.prompts import get_prompt_format

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    preset = cfg.model_preset()
    fmt = get_prompt_format(cfg.prompt_format)
    accelerator = make_accelerator(cfg, out_dir)
    main = accelerator.is_main_process
    if main:
        claim_output_dir(out_dir, "model")
        check_space(out_dir, preset.n_params())
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    tok = prepare_tokenizer(accelerator, data_dir, preset, out_dir)
    corpus = prepare_data(data_dir, tok, cfg)
    stream = BatchStream(corpus, cfg.batch_size)
    total_steps = cfg.max_steps or stream.steps_for(cfg.epochs)
    if total_steps < 1:
        raise ConfigError(
            f"epochs: {cfg.epochs} epochs hold fewer sequences than one batch ({cfg.batch_size})"
        )
    items = load_eval_items(data_dir, cfg)
    state = build_state(accelerator, preset, tok, cfg, total_steps)
    if main:
        remove_partial_saves(out_dir / CHECKPOINTS)
    path = resumable(out_dir / CHECKPOINTS, cfg, data_sha256, main)
    if path is not None:
        load_checkpoint(state, path)
    logs = [JsonlLog(out_dir / name, state.step, main) for name in ("metrics.jsonl", "knowledge.jsonl")]
    run = Run(cfg, out_dir, data_sha256, tok, corpus, stream, items, fmt, total_steps, main, *logs)
    if cfg.log_with:
        accelerator.init_trackers("frequnlearn-pretrain", config=to_dict(cfg))
    return run, state


def make_accelerator(cfg: PretrainConfig, out_dir: Path) -> Any:
    """The accelerator for `cfg`'s precision and trackers, once the global batch splits evenly."""
    import torch
    from accelerate import Accelerator

    _check_trackers(cfg.log_with)
    precision = mixed_precision_name(cfg.mixed_precision)
    _forget_other_precision(precision)
    # cpu=True on a machine without GPUs lets torchrun-started processes (`accelerate launch --multi_gpu`,
    # `torchrun --nproc_per_node N`) train together over gloo instead of each alone.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        log_with=cfg.log_with or None,
        project_dir=str(out_dir),
    )
    n_proc = accelerator.num_processes
    if cfg.batch_size % (n_proc * cfg.grad_accum):
        raise ConfigError(
            f"batch_size: {cfg.batch_size} is not divisible by processes x grad_accum ({n_proc} x {cfg.grad_accum}); "
            "the global batch is kept whatever the process count, so pick a multiple"
        )
    return accelerator


def _forget_other_precision(precision: str) -> None:
    """Let a second run in one process train at another precision than the first.

    accelerate keeps one AcceleratorState per process and refuses an Accelerator whose mixed
    precision differs from it, so `pretrain(fp32 config)` then `pretrain(bf16 config)` in one Python
    session (a notebook, a benchmark) would fail. A single process owns nothing in that state but the
    precision, so it is cleared; a distributed launch keeps it (all its processes agreed on it).
    """
    from accelerate.state import AcceleratorState, PartialState

    if not AcceleratorState._shared_state or PartialState().use_distributed:
        return
    if AcceleratorState().mixed_precision != precision:
        AcceleratorState._reset_state()


def build_state(accelerator: Any, preset: Any, tok: Any, cfg: PretrainConfig, total_steps: int) -> TrainState:
    """The seeded model, its optimizer and schedule, prepared for `accelerator`, at step 0."""
    import torch

    from frequnlearn.models.presets import build_model

    model = build_model(preset, tok, seed=cfg.seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Only the training forward is compiled: saving, checks and checkpoints see the plain module.
    forward = torch.compile(model, dynamic=False) if cfg.compile else None
    return TrainState(
        accelerator,
        model,
        optimizer,
        scheduler,
        grad_accum=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        tokens_per_step=cfg.batch_size * cfg.seq_len,
        window_loss=torch.tensor(0.0, device=accelerator.device),
        forward=forward,
    )


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(run: Run, state: TrainState) -> None:
    """Save the state under a temporary name and move it into place whole: a kill leaves no half save."""
    acc = state.accelerator
    tmp = run.ckpt_dir / f".step-{state.step:08d}.tmp"
    if run.main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    save_state(acc, state.model, state.optimizer, state.scheduler, tmp)
    acc.wait_for_everyone()
    if run.main:
        record = {
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "window_loss": state.window_loss.item(),
            "window_steps": state.window_steps,
            "key": run.key,
            "data_sha256": run.data_sha256,
            "config": to_dict(run.cfg),
        }
        commit_checkpoint(tmp, run.ckpt_dir, state.step, record, run.cfg.keep_checkpoints)
    acc.wait_for_everyone()


def load_checkpoint(state: TrainState, path: Path) -> None:
    """Restore model, optimizer, schedule and random states, then the step and the logging window."""
    import torch

    load_state(state.accelerator, state.model, state.optimizer, state.scheduler, path)
    record = json.loads((path / STATE_FILE).read_text())
    state.step, state.tokens_seen = record["step"], record["tokens_seen"]
    state.window_loss = torch.tensor(record["window_loss"], device=state.accelerator.device)
    state.window_steps = record["window_steps"]


# ---------------------------------------------------------------- logging, checks, the finished run


def show(bar: Any, state: TrainState, epoch: float, meter: Meter) -> None:
    """This process's loss over the current logging window; numbers a second old are current enough."""
    meter.shown_at = time.monotonic()
    bar.set(
        epoch=f"{epoch:.2f}",
        loss=f"{state.window_loss.item() / state.window_steps:.3f}",
        **{"tok/s": f"{meter.tokens_per_s(state.tokens_per_step):.0f}"},
    )


def log_window(run: Run, state: TrainState, epoch: float, meter: Meter) -> None:
    """One metrics row: the window's mean loss over all processes; a non-finite one stops the run."""
    acc = state.accelerator
    mean_loss = acc.reduce(state.window_loss, reduction="mean").item() / state.window_steps
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"loss became {mean_loss} at step {state.step}; lower lr (now {run.cfg.lr}) or check the data "
            "(the last checkpoint is kept)"
        )
    row = {
        "step": state.step,
        "epoch": round(epoch, 4),
        "loss": round(mean_loss, 6),
        "lr": state.scheduler.get_last_lr()[0],
        "tokens_seen": state.tokens_seen,
        "tokens_per_s": round(meter.tokens_per_s(state.tokens_per_step), 1),
    }
    run.metrics.write(row)
    if run.cfg.log_with:
        acc.log({k: v for k, v in row.items() if k != "step"}, step=state.step)
    state.window_loss.zero_()
    state.window_steps, meter.steps, meter.seconds = 0, 0, 0.0


def check_knowledge(run: Run, state: TrainState, epoch: float) -> dict[str, Any] | None:
    """The knowledge check at the current step (main process only; the others wait)."""
    acc, result = state.accelerator, None
    if run.main:
        with acc.autocast():
            result = knowledge_check(
                acc.unwrap_model(state.model),
                run.tokenizer,
                run.items,
                fmt=run.fmt,
                batch_size=run.cfg.eval_batch_size,
            )
        run.knowledge.write({"step": state.step, "epoch": round(epoch, 4), **result})
        if run.cfg.log_with:
            acc.log({f"knowledge/{g}": v["accuracy"] for g, v in result["by_group"].items()}, step=state.step)
    acc.wait_for_everyone()
    return result


def finish(run: Run, state: TrainState, final: dict[str, Any] | None = None) -> None:
    """The last knowledge check (unless `final`, this step's, is given), the model, its run.json
    record and, last, the done marker."""
    acc = state.accelerator
    if final is None:
        final = check_knowledge(run, state, run.stream.epoch_at(state.step))
    if run.main:
        model = acc.unwrap_model(state.model)
        record = {**run_info(run.cfg, run.cfg.seed), "key": run.key, "data_sha256": run.data_sha256}
        # Weights, tokenizer and run.json move in as one set (run.json last): a full disk or a kill
        # leaves the earlier files, never a cut weight file beside them.
        with output_set(run.out_dir, None, "run.json") as tmp:
            model.save_pretrained(tmp)
            run.tokenizer.save_pretrained(tmp)
            write_json(tmp / "run.json", {**record, "summary": summary(run, state, model, final)})
            write_pretrained_card(tmp, run.out_dir)
        mark_done(run.out_dir, run.key, {"steps": state.step})
    acc.wait_for_everyone()
    if run.cfg.log_with:
        acc.end_training()


def summary(run: Run, state: TrainState, model: Any, knowledge: dict[str, Any] | None) -> dict[str, Any]:
    """run.json's summary: what was trained, on how much data, and what the model knows at the end."""
    acc = state.accelerator
    return run_summary(
        run.cfg,
        run.corpus,
        run.stream,
        state.step,
        state.tokens_seen,
        run.tokenizer,
        model,
        knowledge,
        num_processes=acc.num_processes,
        mixed_precision=acc.mixed_precision,
        planned_steps=run.total_steps,
    )


# ---------------------------------------------------------------- optimizer, schedule, precision, trackers


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
