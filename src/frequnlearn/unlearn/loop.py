"""One training loop for every unlearning method, evaluated as it goes so each run is a trajectory.

`setup` checks and encodes the sets, prepares what the losses need (reference log-probs, a frozen
reference model, RMU's block) and returns an `UnlearnState`; `train_step` is one optimizer step on it;
`unlearn` is the loop. Each optimizer step sees `batch_size` forget examples (in a seeded shuffled
order), each paired with a randomly drawn retain example, in one forward pass. Evaluation runs at step
0 (before any update), at `eval_steps`, every `eval_every` steps, at the end and, when asked, after
each epoch; the stopping rule (`StopRule`) is checked at every evaluation and ends the run early once
the targets are forgotten to the configured level or the retain items have suffered too much. The
trajectory file is rewritten atomically after every evaluation and each step's losses are appended to
the log as soon as the step is done, so a run that is killed or stopped by a NaN loss keeps everything
measured so far. The loss and the gradient norm are checked before every `optimizer.step()`, so a
non-finite update is never applied; an evaluation whose rows are not finite (an update that
overflowed) stops the run before it is written, so no score of a broken model reaches the trajectory.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from frequnlearn import progress
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.data.tables import check_overlap
from frequnlearn.errors import ConfigError, DataError, TrainingError
from frequnlearn.models.loading import max_positions, pad_id_of
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import (
    QAItem,
    append_jsonl,
    atomic_dir,
    run_info,
    write_json,
    write_jsonl,
    write_parquet,
)
from frequnlearn.unlearn.data import Example, collate, encode_items, make_collate, pair_indices
from frequnlearn.unlearn.losses import Loss, LossInputs, LossParams, get_loss
from frequnlearn.unlearn.losses.altpo import alternate_answers
from frequnlearn.unlearn.losses.rmu import decoder_blocks, mlp_parameter_names, rmu_layer, steering_vector

EvalFn = Callable[[Any, Any, int], pd.DataFrame]

_SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass
class UnlearnResult:
    out_dir: Path
    model_dir: Path
    steps: int
    epochs: int  # epochs started (the last may be cut by max_steps)
    log: list[dict[str, Any]]
    trajectory: pd.DataFrame | None
    final: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def token_logprobs(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits aligned with targets [B, T-1, V], log-prob of each target token [B, T-1])."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    token_logp = -F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return logits, token_logp


@torch.no_grad()
def reference_logps(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int, device: Any
) -> torch.Tensor:
    """log ref(y|x) of every example, once, before training (NPO needs nothing else from the reference)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        batch = collate([(ex, "answer") for ex in examples[start : start + batch_size]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        _, token_logp = token_logprobs(model, batch)
        out.append((token_logp * batch["loss_mask"]).sum(-1).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def _check_lengths(model: Any, sets: dict[str, tuple[Sequence[QAItem], Sequence[Example]]]) -> None:
    limit = max_positions(model)
    if limit is None:
        return
    for name, (items, examples) in sets.items():
        for it, ex in zip(items, examples):
            if len(ex.input_ids) > limit:
                raise DataError(
                    f"{name} item {it.item_id}: {len(ex.input_ids)} tokens, more than the model's {limit} "
                    "positions; shorten its question or answer"
                )


def _eval_points(cfg: UnlearnConfig, total: int) -> set[int]:
    points = {0, total, *(s for s in cfg.eval_steps if s <= total)}
    if cfg.eval_every:
        points.update(range(cfg.eval_every, total + 1, cfg.eval_every))
    return points


@dataclass
class Encoded:
    """The sets as token ids, and the seeded pairing that batches them (a new order every epoch)."""

    forget: list[Example]
    # The forget questions with a second answer, when a loss compares two: the refusal (IDK, DPO) or
    # each item's alternate (AltPO); `second_as` is the LossInputs field those rows fill.
    second: list[Example] | None
    retain: list[Example] | None  # None when there is no retain term
    pad_id: int
    retain_on: str
    batch_size: int
    seed: int
    second_as: str = "refusal"

    def loader(self, accelerator: Any, epoch: int) -> Any:
        pairs = pair_indices(len(self.forget), len(self.retain or ()), self.seed, epoch)
        collate_fn = make_collate(self.forget, self.retain, self.pad_id, self.retain_on, refusal=self.second)
        dl = torch.utils.data.DataLoader(
            pairs, batch_size=self.batch_size, shuffle=False, collate_fn=collate_fn
        )
        return accelerator.prepare_data_loader(dl)


@dataclass
class LossTerms:
    """The registered forget and retain losses with their weights, and what their `needs` asked for:
    reference log-probs, a frozen reference model, item frequencies, RMU's block and direction."""

    forget: Loss
    retain: Loss | None  # None for retain_loss=none
    params: LossParams
    forget_weight: float
    retain_weight: float
    ref_logp: torch.Tensor | None = None
    ref_logp_second: torch.Tensor | None = None
    frequency: torch.Tensor | None = None
    ref_model: Any = None
    layer: int | None = None
    block: torch.nn.Module | None = None
    ref_block: torch.nn.Module | None = None
    steer: torch.Tensor | None = None
    # What a loss keeps across the steps of the run (PDU's dual variable).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class UnlearnState:
    """Everything a step reads or changes: the prepared model, optimizer and schedule, the loss terms,
    the batches, and where the run stands."""

    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    params: list[torch.nn.Parameter]  # the trainable ones
    terms: LossTerms
    data: Encoded
    cfg: UnlearnConfig
    out_dir: Path
    total: int  # optimizer steps of the run
    steps_per_epoch: int
    frozen: list[torch.nn.Parameter] = field(default_factory=list)  # given back their gradients at the end
    step: int = 0
    epoch: int = 0


class Trajectory:
    """The evaluations along the run: trajectory.parquet is rewritten after each, so a run that stops
    keeps everything measured so far."""

    def __init__(self, eval_fn: EvalFn | None, tokenizer: Any, path: Path, meta: dict[str, Any]) -> None:
        self.eval_fn, self.tokenizer, self.path, self.meta = eval_fn, tokenizer, path, meta
        self.frames: list[pd.DataFrame] = []
        self.evaluated: set[int] = set()

    def evaluate(self, state: UnlearnState, step: int) -> pd.DataFrame | None:
        """Evaluate at `step` (once per step); the frame on the main process, else None."""
        if self.eval_fn is None or step in self.evaluated:
            return None
        self.evaluated.add(step)
        frame = None
        acc = state.accelerator
        if acc.is_main_process:
            inner = acc.unwrap_model(state.model)
            inner.eval()
            # Evaluation must not shift the training's random stream (dropout), whatever it draws.
            devices = [acc.device.index or 0] if acc.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                frame = self.eval_fn(inner, self.tokenizer, step)
            inner.train()
            _check_finite_scores(frame, step, state)
            frame = frame.copy()
            if "epoch" not in frame.columns:
                frame["epoch"] = step / state.steps_per_epoch
            self.frames.append(frame)
            write_parquet(pd.concat(self.frames, ignore_index=True), self.path, self.meta)
        acc.wait_for_everyone()
        return frame

    def frame(self) -> pd.DataFrame | None:
        return pd.concat(self.frames, ignore_index=True) if self.frames else None

    def truncate(self, state: UnlearnState, step: int) -> None:
        """Forget the evaluations after `step` (the weights were put back to it) and rewrite the file."""
        self.frames = [f for f in self.frames if int(f["step"].max()) <= step]
        self.evaluated = {s for s in self.evaluated if s <= step}
        if state.accelerator.is_main_process and self.frames:
            write_parquet(pd.concat(self.frames, ignore_index=True), self.path, self.meta)
        state.accelerator.wait_for_everyone()


# ---------------------------------------------------------------- the stopping rule


class StopRule:
    """When a run has unlearned enough: checked at every evaluation, from the evaluation's own rows.

    The level of forgetting is the share of the target (`forget`) items generated at step 0 that are
    still generated, on `stop_probe` (the report's normalised accuracy, so the step a run stops at is
    the step the report reads it at); the retain drop is the evaluated retain items' generation
    accuracy at step 0 minus now. The run stops at the first evaluation where the level is <= L
    (`stop_forget_level`) or the drop exceeds T (`stop_retain_drop`); otherwise it runs its S_max
    steps. Only the main process evaluates, so the decision is broadcast to the others.
    """

    def __init__(self, cfg: UnlearnConfig, total: int, *, active: bool) -> None:
        self.L, self.T, self.probe, self.total = (
            cfg.stop_forget_level,
            cfg.stop_retain_drop,
            cfg.stop_probe,
            total,
        )
        self.enabled = active and (self.L is not None or self.T is not None)
        self.targets: set[str] | None = None  # target items generated at step 0
        self.retain_start = math.nan
        self.forget_level = math.nan
        self.retain_drop = math.nan
        self.step_reached: int | None = None

    def measure(self, frame: pd.DataFrame) -> tuple[float, float]:
        """(level of forgetting, retain drop) of one evaluation; the first call fixes the start."""
        gen = (
            frame[(frame["family"] == "gen") & (frame["probe"] == self.probe)]
            if "family" in frame
            else frame[:0]
        )
        if gen.empty or "role" not in gen or "known" not in gen:
            raise ConfigError(
                f"stop_probe: the evaluation gives no generation rows with a role on probe {self.probe!r}, "
                "so the stopping rule cannot be read; evaluate gen on that probe, change stop_probe, or set "
                "stop_forget_level and stop_retain_drop to null"
            )
        known = gen.assign(_k=gen["known"] == 1.0).drop_duplicates("item_id").set_index("item_id")
        forget = known[known["role"] == "forget"]["_k"]
        retain = known[known["role"] == "retain"]["_k"]
        if self.targets is None:
            self.targets = set(forget.index[forget.to_numpy(dtype=bool)])
            self.retain_start = float(retain.mean()) if len(retain) else math.nan
        still = forget.reindex(sorted(self.targets)).fillna(False).astype(bool)
        level = float(still.mean()) if len(still) else math.nan
        drop = self.retain_start - float(retain.mean()) if len(retain) else math.nan
        return level, drop

    def check(self, acc: Any, frame: pd.DataFrame | None, step: int) -> str | None:
        """The criterion that ends the run at `step` (None: go on); `frame` is this step's evaluation
        (None when the step was evaluated already or on a process that does not evaluate)."""
        if not self.enabled:
            return None
        reason = None
        if acc.is_main_process and frame is not None:
            self.forget_level, self.retain_drop = self.measure(frame)
            if self.L is not None and self.forget_level <= self.L:
                reason = "forget_level"
                self.step_reached = step if self.step_reached is None else self.step_reached
            elif self.T is not None and self.retain_drop > self.T:
                reason = "retain_drop"
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            reason = broadcast_object_list([reason])[0]
        return reason

    def record(self, reason: str | None, step: int) -> dict[str, Any]:
        """summary.stop of run.json: why and where the run ended (`reason`: forget_level, retain_drop or
        max_steps, the budget spent), whether and at which step L was reached, the levels measured at
        the last evaluation, and the budget (L, T, S_max)."""

        def number(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "reason": reason or "max_steps",
            "step": step,
            "forget_level_reached": self.step_reached is not None,
            "step_reached_L": self.step_reached,
            "forget_level": number(self.forget_level),
            "retain_drop": number(self.retain_drop),
            "n_targets_known": None if self.targets is None else len(self.targets),
            "L": self.L,
            "T": self.T,
            "S_max": self.total,
            "probe": self.probe,
        }


class Restore:
    """`stop_restore`: the trainable weights (on the CPU) of the last evaluated step that did not stop
    the run, with what the rule measured there, put back when the retain drop ends the run.

    With `stop_backtrack` N > 0 it also keeps the optimizer's and the schedule's state of that step,
    so that the first N crossings put the whole run back there (`back_off`) and it goes on at a rate
    `stop_backtrack_factor` times smaller, as if the crossing steps had never been taken."""

    def __init__(self, backtracks: int = 0, factor: float = 0.5) -> None:
        self.step = -1
        self.weights: list[torch.Tensor] = []
        self.measured = (math.nan, math.nan)
        self.left, self.factor = backtracks, factor
        self.optimizer_state: dict[str, Any] | None = None
        self.scheduler_state: dict[str, Any] | None = None
        self.backtracks: list[dict[str, Any]] = []  # summary.stop.backtracks, one per back_off

    def take(self, state: UnlearnState, rule: StopRule) -> None:
        if state.step == self.step:
            return
        self.step = state.step
        self.weights = [p.detach().to("cpu", copy=True) for p in state.params]
        if self.left:  # only a run that goes on needs them
            self.optimizer_state = _on_cpu(state.optimizer.state_dict())
            self.scheduler_state = copy.deepcopy(state.scheduler.state_dict())
        self.measured = (rule.forget_level, rule.retain_drop)

    def put_back(self, state: UnlearnState, rule: StopRule, trajectory: Trajectory) -> dict[str, Any]:
        """Restore the kept step; returns summary.stop.restored (the step and drop that crossed T)."""
        crossed = {"from_step": state.step, "retain_drop": rule.retain_drop}
        with torch.no_grad():
            for p, w in zip(state.params, self.weights):
                p.copy_(w.to(p.device))
        state.step = self.step
        rule.forget_level, rule.retain_drop = self.measured
        trajectory.truncate(state, self.step)
        return crossed

    def back_off(self, state: UnlearnState, rule: StopRule, trajectory: Trajectory) -> dict[str, Any]:
        """Put weights, optimizer and schedule back to the kept step and shrink the rate; returns the
        record of summary.stop.backtracks (the crossing step and drop, the step gone back to, the new
        rate)."""
        assert self.optimizer_state is not None and self.scheduler_state is not None and self.left > 0
        crossed = self.put_back(state, rule, trajectory)
        state.optimizer.load_state_dict(self.optimizer_state)
        state.scheduler.load_state_dict(self.scheduler_state)
        # Every later rate of the schedule is base_lr * f(step): scaling base_lrs scales them all.
        state.scheduler.base_lrs = [b * self.factor for b in state.scheduler.base_lrs]
        for group in state.optimizer.param_groups:
            group["lr"] *= self.factor
        state.scheduler._last_lr = [group["lr"] for group in state.optimizer.param_groups]
        # The kept step now carries the smaller rate: a crossing before the next evaluation within T
        # comes back here and shrinks it again, rather than from the old rate.
        self.optimizer_state = _on_cpu(state.optimizer.state_dict())
        self.scheduler_state = copy.deepcopy(state.scheduler.state_dict())
        self.left -= 1
        record = {**crossed, "to_step": self.step, "lr": state.scheduler.get_last_lr()[0]}
        self.backtracks.append(record)
        return record


def _on_cpu(value: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU: a snapshot, not a view."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return copy.deepcopy(value)


# ---------------------------------------------------------------- the loop


def unlearn(
    model: Any,
    tokenizer: Any,
    forget: list[QAItem],
    retain: list[QAItem],
    cfg: UnlearnConfig,
    out_dir: str | Path,
    *,
    eval_fn: EvalFn | None = None,
    info: dict[str, Any] | None = None,
) -> UnlearnResult:
    """Unlearn `forget` from `model` (in place) while keeping `retain`; write model, trajectory, log.

    `eval_fn(model, tokenizer, step)` returns a per-item frame; the frames become trajectory.parquet
    with an `epoch` column added (fractional: step / steps per epoch). `info` (e.g. where the model
    and tables came from) is recorded in run.json.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    state = setup(model, tokenizer, forget, retain, cfg, out_dir)
    acc = state.accelerator
    meta = run_info(cfg, cfg.seed)
    trajectory = Trajectory(eval_fn, tokenizer, out_dir / "trajectory.parquet", meta)
    points = _eval_points(cfg, state.total)
    log_path = out_dir / "log.jsonl"
    log: list[dict[str, Any]] = []
    if acc.is_main_process:
        write_jsonl(log_path, [])
    title = f"unlearn {cfg.method}" + (f"+{cfg.retain_loss}" if state.terms.retain is not None else "")
    rule = StopRule(cfg, state.total, active=eval_fn is not None)
    keep = (
        Restore(cfg.stop_backtrack, cfg.stop_backtrack_factor) if cfg.stop_restore and rule.enabled else None
    )

    def check(step: int) -> str | None:
        reason = rule.check(acc, trajectory.evaluate(state, step), step)
        if reason is None and keep is not None:
            keep.take(state, rule)
        if reason == "retain_drop" and keep is not None and keep.left:
            back = keep.back_off(state, rule, trajectory)
            # The undone steps leave the log; summary.stop.backtracks records them.
            log[:] = [row for row in log if row["step"] <= state.step]
            if acc.is_main_process:
                write_jsonl(log_path, log)
                progress.message(
                    f"retain accuracy dropped by {back['retain_drop']:.3g} > {rule.T:g} at step {step}: "
                    f"back to step {state.step}, lr now {back['lr']:.3g}"
                )
            bar.update(state.step - step)
            # Close to the budget now: every step is evaluated, so the next crossing is caught at once.
            points.update(range(state.step + 1, state.total + 1))
            return None
        return reason

    with progress.bar(state.total, title, unit="step", enabled=acc.is_main_process) as bar:
        stop = check(0)
        while state.step < state.total and stop is None:
            batches = iter(state.data.loader(acc, state.epoch))
            while state.step < state.total and stop is None:
                micro = [b for _, b in zip(range(cfg.grad_accum), batches)]
                if not micro:
                    break
                row = train_step(state, micro)
                log.append(row)
                if acc.is_main_process:  # one appended row per step: a killed run keeps every finished step
                    append_jsonl(log_path, row)
                bar.set(**{k: f"{row[f'{k}_loss']:.4g}" for k in ("forget", "retain") if f"{k}_loss" in row})
                bar.update(1)
                if state.step in points:
                    stop = check(state.step)
            state.epoch += 1
            if cfg.eval_each_epoch and stop is None:
                stop = check(state.step)
    if stop is not None and acc.is_main_process:
        progress.message(
            f"stopped at step {state.step} of {state.total}: "
            + (f"forget level {rule.forget_level:.3g} <= {rule.L:g}" if stop == "forget_level"
               else f"retain accuracy dropped by {rule.retain_drop:.3g} > {rule.T:g}")
            + (f"; the weights of step {keep.step} are put back" if stop == "retain_drop" and keep else "")
        )  # fmt: skip
    restored = keep.put_back(state, rule, trajectory) if stop == "retain_drop" and keep is not None else None
    final = next((row for row in reversed(log) if row["step"] <= state.step), {})
    summary = _summary(state, len(forget), len(retain), sorted(trajectory.evaluated), final)
    summary["stop"] = {
        **rule.record(stop, state.step),
        "restored": restored,
        "backtracks": keep.backtracks if keep is not None else [],
    }
    model_dir = write_outputs(state, tokenizer, {**meta, **(info or {}), "summary": summary})
    for p in state.frozen:
        p.requires_grad_(True)
    acc.free_memory()
    return UnlearnResult(
        out_dir,
        model_dir,
        state.step,
        state.epoch,
        log,
        trajectory.frame(),
        final,
        time.perf_counter() - started,
    )


def train_step(state: UnlearnState, micro: list[dict[str, Any]]) -> dict[str, Any]:
    """One optimizer step over `micro` (grad_accum batches); returns its log row.

    A non-finite loss or gradient norm stops the run before `optimizer.step()`, so no broken update
    is ever applied.
    """
    acc, cfg = state.accelerator, state.cfg
    sums: dict[str, float] = {}
    for i, batch in enumerate(micro):
        with contextlib.nullcontext() if i == len(micro) - 1 else acc.no_sync(state.model):
            loss, terms = losses_on(state, batch)
            _check_finite_loss(state, terms)
            acc.backward(loss / len(micro))
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v / len(micro)
    grad_norm = acc.clip_grad_norm_(state.params, cfg.max_grad_norm if cfg.max_grad_norm else math.inf)
    # A finite loss can still give an inf/NaN gradient; one such update makes every weight NaN.
    if grad_norm is not None and not math.isfinite(float(grad_norm)):
        raise TrainingError(
            f"step {state.step + 1}: the gradient norm is not finite ({float(grad_norm):.4g}), so the update "
            f"was not applied; lower lr (now {cfg.lr:g}) or set max_grad_norm; what was evaluated "
            f"so far is kept in {state.out_dir}"
        )
    lr = state.scheduler.get_last_lr()[0]
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    row = {"step": state.step, "epoch": state.epoch + 1, "lr": lr, **_mean_over_processes(acc, sums)}
    row["grad_norm"] = float(grad_norm) if grad_norm is not None else None
    _track(state, row)
    return row


def write_outputs(state: UnlearnState, tokenizer: Any, record: dict[str, Any]) -> Path:
    """The unlearned model with its tokenizer, model card and run record (each directory written whole
    or not at all), then run.json. With LoRA, model/ holds the adapter; with `lora_merge`, the merged
    weights, and adapter/ the adapter."""
    acc, cfg = state.accelerator, state.cfg
    model_dir = state.out_dir / "model"
    acc.wait_for_everyone()
    if acc.is_main_process:
        model = acc.unwrap_model(state.model)

        def save(path: Path, weights: Any, adapter: bool) -> None:
            _save_model_dir(path, weights, tokenizer, record, state.out_dir / "trajectory.parquet", adapter)

        if cfg.lora is None:
            save(model_dir, model, adapter=False)
        else:
            _point_adapter_at_base(model)
            save(state.out_dir / ADAPTER_DIR if cfg.lora_merge else model_dir, model, adapter=True)
            if cfg.lora_merge:  # in place: the caller's model is the unlearned one, without adapter layers
                save(model_dir, model.merge_and_unload(), adapter=False)
        write_json(state.out_dir / "run.json", record)
    acc.wait_for_everyone()
    if cfg.log_with:
        acc.end_training()
    return model_dir


ADAPTER_DIR = "adapter"  # beside a merged model/ (unlearn.stage.RUN_FILES lists both)


def _save_model_dir(
    path: Path, model: Any, tokenizer: Any, record: dict[str, Any], trajectory: Path, adapter: bool
) -> None:
    """Weights (or a LoRA adapter), tokenizer, model card (README.md) and run.json, as one directory."""
    from frequnlearn.models.card import write_unlearned_card
    from frequnlearn.models.tokenizer import save_tokenizer

    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp, max_positions(model))
        write_json(tmp / "run.json", record)
        write_unlearned_card(tmp, record, trajectory, adapter=adapter, title=path.name)


def _point_adapter_at_base(model: Any) -> None:
    """An adapter names its base model: a local base by its absolute path, so the adapter loads from
    any working directory."""
    for peft_cfg in model.peft_config.values():
        base = peft_cfg.base_model_name_or_path
        if base and Path(base).expanduser().is_dir():
            peft_cfg.base_model_name_or_path = str(Path(base).expanduser().resolve())


def _track(state: UnlearnState, row: dict[str, Any]) -> None:
    """A step's log row to the configured trackers (log_with)."""
    if state.cfg.log_with:
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        state.accelerator.log(numbers, step=row["step"])


# ---------------------------------------------------------------- setup


def setup(
    model: Any, tokenizer: Any, forget: list[QAItem], retain: list[QAItem], cfg: UnlearnConfig, out_dir: Path
) -> UnlearnState:
    """Check the sets, encode them, prepare what the losses need (from the model as it is), add LoRA
    adapters when asked, and build the optimizer and schedule."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    forget_loss, retain_loss = _check_sets(forget, retain, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = _accelerator(cfg, out_dir)
    set_seed(cfg.seed)
    # On its device first: AltPO samples its alternates from the model while the sets are encoded.
    model.to(accelerator.device)
    data = encode_sets(model, tokenizer, forget, retain if retain_loss else None, cfg, forget_loss)
    terms = prepare_terms(model, cfg, data, forget, forget_loss, retain_loss, accelerator.device)
    frozen = _freeze_outside_rmu_scope(model, cfg, terms.layer)
    if terms.layer is not None:
        terms.block = decoder_blocks(model)[terms.layer]
        terms.ref_block = (
            decoder_blocks(terms.ref_model)[terms.layer] if terms.ref_model is not None else None
        )
    model, frozen = _with_lora(model, cfg, frozen)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data.loader(accelerator, 0)) / cfg.grad_accum)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    scheduler = get_scheduler(
        _SCHEDULERS[cfg.scheduler],
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    return UnlearnState(
        accelerator,
        model,
        optimizer,
        scheduler,
        params,
        terms,
        data,
        cfg,
        out_dir,
        total,
        steps_per_epoch,
        frozen,
    )


TRACKER_PROJECT = "frequnlearn-unlearn"  # the trackers' folder in the output directory (in RUN_FILES too)


def _accelerator(cfg: UnlearnConfig, out_dir: Path) -> Any:
    """The run's accelerator, with the trackers of `log_with` started (their files go in out_dir)."""
    from accelerate import Accelerator

    from frequnlearn.config import to_dict
    from frequnlearn.pretrain.loop import _check_trackers

    _check_trackers(cfg.log_with)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), log_with=cfg.log_with or None, project_dir=str(out_dir)
    )
    if cfg.log_with:
        accelerator.init_trackers(TRACKER_PROJECT, config=to_dict(cfg))
    return accelerator


def _with_lora(
    model: Any, cfg: UnlearnConfig, frozen: list[torch.nn.Parameter]
) -> tuple[Any, list[torch.nn.Parameter]]:
    """With `cfg.lora`: the model with LoRA adapters injected in place (peft), so only they train; the
    base weights peft froze join `frozen`, to get their gradients back at the end."""
    if cfg.lora is None:
        return model, frozen
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    from frequnlearn.errors import ConfigError

    trainable = [p for p in model.parameters() if p.requires_grad]
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        # GPT-2 keeps its projections as Conv1D, (in, out) weights: the adapter must know.
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing`; nothing for a user to change.
            warnings.filterwarnings(
                "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
            )
            wrapped = get_peft_model(model, lora)
    except ValueError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"lora.target_modules: {first}") from None
    return wrapped, frozen + [p for p in trainable if not p.requires_grad]


def _check_sets(forget: list[QAItem], retain: list[QAItem], cfg: UnlearnConfig) -> tuple[Loss, Loss | None]:
    """The registered forget and retain losses, once the sets suit them (None: no retain term)."""
    if not forget:
        raise DataError("forget: the forget set is empty; give at least one item to unlearn")
    forget_loss = get_loss(cfg.method, "forget")
    retain_loss = get_loss(cfg.retain_loss, "retain")
    use_retain = cfg.retain_loss != "none"
    if use_retain and not retain:
        raise DataError(
            f"retain: the retain set is empty but retain_loss={cfg.retain_loss}; give retain items or retain_loss=none"
        )
    check_overlap(forget, retain)
    return forget_loss, retain_loss if use_retain else None


def encode_sets(
    model: Any,
    tokenizer: Any,
    forget: list[QAItem],
    retain: list[QAItem] | None,
    cfg: UnlearnConfig,
    forget_loss: Loss,
) -> Encoded:
    """Token ids of every set the losses read, each checked against the model's positions."""
    fmt = get_prompt_format(cfg.prompt_format)
    forget_ex = encode_items(tokenizer, fmt, forget)
    second_as = "alternate" if "alternate" in forget_loss.needs else "refusal"
    second_ex = None
    if "refusal" in forget_loss.needs:
        second_ex = encode_items(tokenizer, fmt, forget, answer=cfg.refusal)
    elif "alternate" in forget_loss.needs:
        answers = alternate_answers(model, tokenizer, fmt, forget, cfg.seed)
        second_ex = [encode_items(tokenizer, fmt, [it], answer=a)[0] for it, a in zip(forget, answers)]
    retain_ex = encode_items(tokenizer, fmt, retain) if retain is not None else None
    _check_lengths(
        model,
        {
            "forget": (forget, forget_ex),
            **({second_as: (forget, second_ex)} if second_ex else {}),
            **({"retain": (retain, retain_ex)} if retain_ex else {}),
        },
    )
    return Encoded(
        forget_ex,
        second_ex,
        retain_ex,
        pad_id_of(tokenizer),
        cfg.retain_on,
        cfg.batch_size,
        cfg.seed,
        second_as,
    )


def prepare_terms(
    model: Any,
    cfg: UnlearnConfig,
    data: Encoded,
    forget: list[QAItem],
    forget_loss: Loss,
    retain_loss: Loss | None,
    device: Any,
) -> LossTerms:
    """What the losses' `needs` ask for, computed once before training from the model as it is."""
    needs = forget_loss.needs | (retain_loss.needs if retain_loss else frozenset())
    terms = LossTerms(
        forget_loss, retain_loss, LossParams.from_config(cfg), cfg.forget_weight, cfg.retain_weight
    )
    terms.frequency = _frequencies(forget) if "frequency" in needs else None
    if "ref_logp" in forget_loss.needs:
        terms.ref_logp = reference_logps(model, data.forget, data.pad_id, cfg.batch_size, device)
        if data.second is not None:
            terms.ref_logp_second = reference_logps(model, data.second, data.pad_id, cfg.batch_size, device)
    if needs & {"ref_logits", "ref_hidden"}:
        terms.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    if needs & {"hidden", "ref_hidden"}:
        terms.layer = rmu_layer(model, cfg.rmu_layer)
        terms.steer = steering_vector(model.config.hidden_size, cfg.rmu_coeff, cfg.seed).to(device)
    return terms


def _freeze_outside_rmu_scope(model: Any, cfg: UnlearnConfig, layer: int | None) -> list[torch.nn.Parameter]:
    """As published, RMU trains a few MLPs below the steered block and nothing else: freeze the rest."""
    if cfg.method != "rmu" or cfg.rmu_params != "mlp":
        return []
    scope = set(mlp_parameter_names(model, layer))
    frozen = [p for name, p in model.named_parameters() if p.requires_grad and name not in scope]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


# ---------------------------------------------------------------- one step's losses


@dataclass
class _Rows:
    """One forward pass's per-token outputs, sliced into the LossInputs of a part of the batch."""

    token_logp: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor
    hidden: torch.Tensor | None
    steer: torch.Tensor | None

    def inputs(self, part: slice, **extra: Any) -> LossInputs:
        return LossInputs(
            self.token_logp[part],
            self.mask[part],
            targets=self.targets[part],
            logits=self.logits[part],
            hidden=self.hidden[part] if self.hidden is not None else None,
            steer=self.steer,
            **extra,
        )


def losses_on(state: UnlearnState, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted total loss of one batch (forget rows, refusal rows, retain rows) and its terms."""
    t, device = state.terms, state.accelerator.device
    n_f = batch["forget_index"].shape[0]
    index = batch["forget_index"].cpu()
    with _capture(t.block) as seen:
        logits, token_logp = token_logprobs(state.model, batch)
    # Block outputs at the target tokens' positions, aligned with the loss mask.
    hidden = seen[0][:, 1:] if seen else None
    rows = _Rows(token_logp, batch["loss_mask"], batch["input_ids"][:, 1:], logits, hidden, t.steer)
    forget_rows = slice(0, n_f)
    f_in = rows.inputs(
        forget_rows,
        ref_logp=_at(t.ref_logp, index, device),
        frequency=_at(t.frequency, index, device),
        state=t.state,
        **_reference(t, forget_rows, t.forget.needs, batch),
    )
    if state.data.second is not None:
        second = rows.inputs(slice(n_f, 2 * n_f), ref_logp=_at(t.ref_logp_second, index, device))
        setattr(f_in, state.data.second_as, second)
    f_loss = t.forget.fn(f_in, t.params)
    terms = {"forget_loss": f_loss.item(), "forget_token_logp": _token_mean(f_in)}
    loss = t.forget_weight * f_loss
    if t.retain is not None:
        retain_rows = slice(n_f * (2 if state.data.second is not None else 1), None)
        r_in = rows.inputs(retain_rows, state=t.state, **_reference(t, retain_rows, t.retain.needs, batch))
        r_loss = t.retain.fn(r_in, t.params)
        terms.update(retain_loss=r_loss.item(), retain_token_logp=_token_mean(r_in))
        loss = loss + t.retain_weight * r_loss
    terms["loss"] = loss.item()
    # A loss's numbers kept across steps (PDU's dual variable) are logged with the step.
    terms.update({k: float(v) for k, v in t.state.items() if isinstance(v, (int, float))})
    return loss, terms


def _at(values: torch.Tensor | None, index: torch.Tensor, device: Any) -> torch.Tensor | None:
    """Per-item values (reference log-probs, frequencies) of the batch's forget items."""
    return values[index].to(device) if values is not None else None


def _reference(t: LossTerms, rows: slice, want: frozenset[str], batch: dict[str, Any]) -> dict[str, Any]:
    """The frozen model's logits and/or block activations on `rows` of the batch."""
    if not want & {"ref_logits", "ref_hidden"}:
        return {}
    with torch.no_grad(), _capture(t.ref_block if "ref_hidden" in want else None) as seen:
        out = t.ref_model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows])
    return {
        "ref_logits": out.logits[:, :-1] if "ref_logits" in want else None,
        "ref_hidden": seen[0][:, 1:] if seen else None,
    }


# ---------------------------------------------------------------- checks and records


def _check_finite_loss(state: UnlearnState, terms: dict[str, float]) -> None:
    """Stop before the backward pass of a non-finite loss (on any process)."""
    acc = state.accelerator
    finite = torch.tensor(float(math.isfinite(terms["loss"])), device=acc.device)
    if acc.num_processes > 1:
        finite = acc.gather(finite.reshape(1)).min()
    if not finite.item():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
        raise TrainingError(
            f"step {state.step + 1}: the loss is not finite ({shown}); lower lr (now {state.cfg.lr:g}) or set "
            f"max_grad_norm; what was evaluated so far is kept in {state.out_dir}"
        )


def _check_finite_scores(frame: pd.DataFrame, step: int, state: UnlearnState) -> None:
    """Finite weights can still give NaN/inf logits (an update that overflowed): such a model is
    broken, and its scores (NaN ranks) must not enter the trajectory."""
    if "finite" in frame.columns and not frame["finite"].all():
        n_bad = int((~frame["finite"].astype(bool)).sum())
        raise TrainingError(
            f"step {step}: the logits are not finite after this update ({n_bad} of "
            f"{len(frame)} evaluation rows); lower lr (now {state.cfg.lr:g}) or set max_grad_norm; "
            f"what was evaluated before is kept in {state.out_dir}"
        )


def _mean_over_processes(acc: Any, values: dict[str, float]) -> dict[str, float]:
    if acc.num_processes == 1:
        return values
    t = acc.reduce(torch.tensor(list(values.values()), device=acc.device, dtype=torch.float64), "mean")
    return dict(zip(values, t.tolist()))


def _summary(
    state: UnlearnState, n_forget: int, n_retain: int, evaluated: list[int], final: dict[str, Any]
) -> dict[str, Any]:
    return {
        "steps": state.step,
        "epochs": state.epoch,
        "steps_per_epoch": state.steps_per_epoch,
        "n_forget": n_forget,
        "n_retain": n_retain,
        "num_processes": state.accelerator.num_processes,
        "evaluated_steps": evaluated,
        "final": final,
    }


def _frequencies(items: Sequence[QAItem]) -> torch.Tensor:
    missing = [it.item_id for it in items if it.frequency is None]
    if missing:
        raise DataError(
            f"forget item {missing[0]}: no frequency ({len(missing)} items lack one), but the method weighs items "
            "by it; give a frequency column or count the items first (frequnlearn count)"
        )
    return torch.tensor([float(it.frequency) for it in items])


@contextlib.contextmanager
def _capture(block: torch.nn.Module | None) -> Any:
    """Collect `block`'s output tensor during a forward pass (a list, empty when block is None)."""
    seen: list[torch.Tensor] = []
    if block is None:
        yield seen
        return

    def hook(module: Any, args: Any, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _token_mean(inp: LossInputs) -> float:
    """Mean log-prob of the counted tokens (a loss-free readout of how likely the targets still are)."""
    with torch.no_grad():
        return ((inp.token_logp * inp.mask).sum() / inp.mask.sum().clamp(min=1.0)).item()
