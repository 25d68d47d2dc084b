"""One training loop for every unlearning method, evaluated as it goes so each run is a trajectory.

Each optimizer step sees `batch_size` forget examples (in a seeded shuffled order), each paired with
a randomly drawn retain example, in one forward pass. Evaluation runs at step 0 (before any update),
at `eval_steps`, every `eval_every` steps, after each epoch and at the end; the trajectory file is
rewritten atomically after every evaluation and each step's losses are appended to the log as soon as
the step is done, so a run that is killed or stopped by a NaN loss keeps everything measured so far.
The loss and the gradient norm are checked before every `optimizer.step()`, so a non-finite update is
never applied; an evaluation whose rows are not finite (an update that overflowed) stops the run
before it is written, so no score of a broken model reaches the trajectory.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
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
from frequnlearn.errors import DataError, TrainingError
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
from frequnlearn.unlearn.losses import LossInputs, LossParams, get_loss
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
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    started = time.perf_counter()
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    device = accelerator.device
    fmt = get_prompt_format(cfg.prompt_format)
    pad_id = pad_id_of(tokenizer)
    forget_ex = encode_items(tokenizer, fmt, forget)
    refusal_ex = (
        encode_items(tokenizer, fmt, forget, answer=cfg.refusal) if "refusal" in forget_loss.needs else None
    )
    retain_ex = encode_items(tokenizer, fmt, retain) if use_retain else None
    _check_lengths(
        model,
        {
            "forget": (forget, forget_ex),
            **({"refusal": (forget, refusal_ex)} if refusal_ex else {}),
            **({"retain": (retain, retain_ex)} if retain_ex else {}),
        },
    )
    needs = forget_loss.needs | (retain_loss.needs if use_retain else frozenset())
    frequency = _frequencies(forget) if "frequency" in needs else None

    model.to(device)
    ref_logp = ref_logp_refusal = None
    if "ref_logp" in forget_loss.needs:
        ref_logp = reference_logps(model, forget_ex, pad_id, cfg.batch_size, device)
        if refusal_ex is not None:
            ref_logp_refusal = reference_logps(model, refusal_ex, pad_id, cfg.batch_size, device)
    ref_model = None
    if needs & {"ref_logits", "ref_hidden"}:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    layer = steer = None
    if needs & {"hidden", "ref_hidden"}:
        layer = rmu_layer(model, cfg.rmu_layer)
        steer = steering_vector(model.config.hidden_size, cfg.rmu_coeff, cfg.seed).to(device)
    frozen: list[torch.nn.Parameter] = []
    if cfg.method == "rmu" and cfg.rmu_params == "mlp":
        # As published, RMU trains a few MLPs below the steered block and nothing else.
        scope = set(mlp_parameter_names(model, layer))
        frozen = [p for name, p in model.named_parameters() if p.requires_grad and name not in scope]
        for p in frozen:
            p.requires_grad_(False)
    block = decoder_blocks(model)[layer] if layer is not None else None
    ref_block = decoder_blocks(ref_model)[layer] if layer is not None and ref_model is not None else None

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    collate_fn = make_collate(forget_ex, retain_ex, pad_id, cfg.retain_on, refusal=refusal_ex)

    def loader_for(epoch: int) -> Any:
        pairs = pair_indices(len(forget_ex), len(retain_ex or ()), cfg.seed, epoch)
        dl = torch.utils.data.DataLoader(
            pairs, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_fn
        )
        return accelerator.prepare_data_loader(dl)

    micro_per_epoch = len(loader_for(0))
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    scheduler = get_scheduler(
        _SCHEDULERS[cfg.scheduler],
        optimizer,
        num_warmup_steps=round(cfg.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_params = LossParams.from_config(cfg)

    meta = run_info(cfg, cfg.seed)
    log_path, traj_path = out_dir / "log.jsonl", out_dir / "trajectory.parquet"
    log: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    evaluated: set[int] = set()
    points = _eval_points(cfg, total)

    def evaluate(step: int) -> None:
        if eval_fn is None or step in evaluated:
            return
        evaluated.add(step)
        if accelerator.is_main_process:
            inner = accelerator.unwrap_model(model)
            inner.eval()
            # Evaluation must not shift the training's random stream (dropout), whatever it draws.
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                frame = eval_fn(inner, tokenizer, step)
            inner.train()
            if "finite" in frame.columns and not frame["finite"].all():
                # Finite weights can still give NaN/inf logits (an update that overflowed): such a
                # model is broken, and its scores (NaN ranks) must not enter the trajectory.
                bar.close()
                n_bad = int((~frame["finite"].astype(bool)).sum())
                raise TrainingError(
                    f"step {step}: the logits are not finite after this update ({n_bad} of "
                    f"{len(frame)} evaluation rows); lower lr (now {cfg.lr:g}) or set max_grad_norm; "
                    f"what was evaluated before is kept in {out_dir}"
                )
            frame = frame.copy()
            if "epoch" not in frame.columns:
                frame["epoch"] = step / steps_per_epoch
            frames.append(frame)
            write_parquet(pd.concat(frames, ignore_index=True), traj_path, meta)
        accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        write_jsonl(log_path, [])

    def write_log(row: dict[str, Any]) -> None:
        """Append one step's row: O(1) per step, and a killed run keeps every finished step."""
        if accelerator.is_main_process:
            append_jsonl(log_path, row)

    def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
        if accelerator.num_processes == 1:
            return values
        t = accelerator.reduce(
            torch.tensor(list(values.values()), device=device, dtype=torch.float64), "mean"
        )
        return dict(zip(values, t.tolist()))

    def reference(rows: slice, want: frozenset[str], batch: dict[str, Any]) -> dict[str, Any]:
        """The frozen model's logits and/or block activations on `rows` of the batch."""
        if not want & {"ref_logits", "ref_hidden"}:
            return {}
        with torch.no_grad(), _capture(ref_block if "ref_hidden" in want else None) as seen:
            out = ref_model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows])
        return {
            "ref_logits": out.logits[:, :-1] if "ref_logits" in want else None,
            "ref_hidden": seen[0][:, 1:] if seen else None,
        }

    def step_on(batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        n_f = batch["forget_index"].shape[0]
        index = batch["forget_index"].cpu()
        with _capture(block) as seen:
            logits, token_logp = token_logprobs(model, batch)
        mask = batch["loss_mask"]
        targets = batch["input_ids"][:, 1:]
        # Block outputs at the target tokens' positions, aligned with the loss mask.
        hidden = seen[0][:, 1:] if seen else None

        def rows(part: slice, **extra: Any) -> LossInputs:
            return LossInputs(
                token_logp[part],
                mask[part],
                targets=targets[part],
                logits=logits[part],
                hidden=hidden[part] if hidden is not None else None,
                steer=steer,
                **extra,
            )

        def at(values: torch.Tensor | None) -> torch.Tensor | None:
            return values[index].to(device) if values is not None else None

        forget_rows = slice(0, n_f)
        f_in = rows(
            forget_rows,
            ref_logp=at(ref_logp),
            frequency=at(frequency),
            **reference(forget_rows, forget_loss.needs, batch),
        )
        if refusal_ex is not None:
            f_in.refusal = rows(slice(n_f, 2 * n_f), ref_logp=at(ref_logp_refusal))
        f_loss = forget_loss.fn(f_in, loss_params)
        terms = {"forget_loss": f_loss.item(), "forget_token_logp": _token_mean(f_in)}
        loss = cfg.forget_weight * f_loss
        if use_retain:
            retain_rows = slice(n_f * (2 if refusal_ex is not None else 1), None)
            r_in = rows(retain_rows, **reference(retain_rows, retain_loss.needs, batch))
            r_loss = retain_loss.fn(r_in, loss_params)
            terms.update(retain_loss=r_loss.item(), retain_token_logp=_token_mean(r_in))
            loss = loss + cfg.retain_weight * r_loss
        terms["loss"] = loss.item()
        return loss, terms

    bar = progress.bar(
        total,
        f"unlearn {cfg.method}" + (f"+{cfg.retain_loss}" if use_retain else ""),
        unit="step",
        enabled=accelerator.is_main_process,
    )
    evaluate(0)
    step, epoch = 0, 0
    while step < total:
        micro: list[dict[str, Any]] = []
        batches = iter(loader_for(epoch))
        while step < total:
            micro = [b for _, b in zip(range(cfg.grad_accum), batches)]
            if not micro:
                break
            sums: dict[str, float] = {}
            for i, batch in enumerate(micro):
                sync = i == len(micro) - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    loss, terms = step_on(batch)
                    finite = torch.tensor(float(math.isfinite(terms["loss"])), device=device)
                    if accelerator.num_processes > 1:
                        finite = accelerator.gather(finite.reshape(1)).min()
                    if not finite.item():
                        bar.close()
                        shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
                        raise TrainingError(
                            f"step {step + 1}: the loss is not finite ({shown}); lower lr (now {cfg.lr:g}) or set "
                            f"max_grad_norm; what was evaluated so far is kept in {out_dir}"
                        )
                    accelerator.backward(loss / len(micro))
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v / len(micro)
            grad_norm = accelerator.clip_grad_norm_(
                params, cfg.max_grad_norm if cfg.max_grad_norm else math.inf
            )
            # A finite loss can still give an inf/NaN gradient; one such update makes every weight NaN.
            if grad_norm is not None and not math.isfinite(float(grad_norm)):
                bar.close()
                raise TrainingError(
                    f"step {step + 1}: the gradient norm is not finite ({float(grad_norm):.4g}), so the update "
                    f"was not applied; lower lr (now {cfg.lr:g}) or set max_grad_norm; what was evaluated "
                    f"so far is kept in {out_dir}"
                )
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            row = {"step": step, "epoch": epoch + 1, "lr": lr, **mean_over_processes(sums)}
            row["grad_norm"] = float(grad_norm) if grad_norm is not None else None
            log.append(row)
            write_log(row)
            bar.set(forget=f"{row['forget_loss']:.4g}")
            if use_retain:
                bar.set(retain=f"{row['retain_loss']:.4g}")
            bar.update(1)
            if step in points:
                evaluate(step)
        epoch += 1
        evaluate(step)
    bar.close()

    accelerator.wait_for_everyone()
    inner = accelerator.unwrap_model(model)
    model_dir = out_dir / "model"
    final = log[-1] if log else {}
    if accelerator.is_main_process:
        with atomic_dir(model_dir) as tmp:
            inner.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        summary = {
            "steps": step,
            "epochs": epoch,
            "steps_per_epoch": steps_per_epoch,
            "n_forget": len(forget),
            "n_retain": len(retain),
            "num_processes": accelerator.num_processes,
            "evaluated_steps": sorted(evaluated),
            "final": final,
        }
        write_json(out_dir / "run.json", {**meta, **(info or {}), "summary": summary})
    accelerator.wait_for_everyone()
    trajectory = pd.concat(frames, ignore_index=True) if frames else None
    for p in frozen:
        p.requires_grad_(True)
    accelerator.free_memory()
    return UnlearnResult(
        out_dir=out_dir,
        model_dir=model_dir,
        steps=step,
        epochs=epoch,
        log=log,
        trajectory=trajectory,
        final=final,
        seconds=time.perf_counter() - started,
    )


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
