"""Seeds trained together: K GPT-2s of one architecture that differ only by seed, trained as one
batched model, one optimizer step updating all of them.

The small presets are overhead-bound on a CPU (a d96 model's matmuls are too small to keep the cores
busy), so stacking K models' weights on a leading axis and running their forward and backward as
batched matmuls trains K models in much less than K times one model's time. Each model still sees
exactly what its solo run sees: its own seed's initial weights (built by the same `build_model`
call), its own seed's batch order (its own `BatchStream`), its own gradient-norm clip, its own AdamW
moments and its own learning-rate schedule (the schedule of its own step count: seeds pack their
epochs into slightly different numbers of sequences). The batched sums run in another order than a
single model's, so a model equals its solo run within float tolerance, not bit for bit; that is why
`ensemble` is part of the model's key.

What it writes is, per model, what a solo run writes: the same directory layout (weights, tokenizer,
card, run.json, metrics.jsonl, knowledge.jsonl, checkpoints/), so an ensemble's model is read like any
other. A model whose own step count is reached is saved at once (the others train on); the done
markers are written only when every model of the ensemble is saved. Checkpoints are per model and at
the same steps; a killed ensemble resumes from the newest step every unsaved model has a readable
checkpoint of, and a model saved before the kill is not trained again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from frequnlearn import progress
from frequnlearn.config.base import to_dict
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError, TrainingError
from frequnlearn.models.card import write_pretrained_card
from frequnlearn.pretrain.checkpoint import (
    CHECKPOINTS,
    MODEL_FILE,
    OPTIMIZER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    JsonlLog,
    _rng_state,
    check_other_run,
    check_space,
    checkpoints,
    commit_checkpoint,
    finished,
    not_resumable,
    remove_partial_saves,
    rng_file,
    run_key,
)
from frequnlearn.pretrain.data import IGNORE_INDEX, BatchStream, PackedCorpus, corpus_sha256
from frequnlearn.pretrain.settings import ADAM_EPS, BETAS, build_scheduler, mixed_precision_name, run_summary
from frequnlearn.records import (
    claim_output_dir,
    mark_done,
    output_set,
    read_json,
    run_info,
    write_bytes,
    write_json,
)

# ---------------------------------------------------------------- the batched model


def stack_params(models: list[Any]) -> dict[str, Any]:
    """Each parameter of `models` (one architecture) stacked on a new leading axis, as trainable leaf
    tensors; tied weights appear once (GPT-2's output layer is its input embedding)."""
    import torch

    names = [name for name, _ in models[0].named_parameters()]
    with torch.no_grad():
        return {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_(
                True
            )
            for name in names
        }


def _layer_norm(x: Any, params: dict[str, Any], name: str, eps: float) -> Any:
    import torch.nn.functional as F

    w, b = params[f"{name}.weight"], params[f"{name}.bias"]
    return F.layer_norm(x, x.shape[-1:], eps=eps) * w.unsqueeze(1) + b.unsqueeze(1)


def _linear(x: Any, params: dict[str, Any], name: str) -> Any:
    """GPT-2's Conv1D (x @ W + b, W stored [in, out]) for every model at once."""
    import torch

    return torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), x, params[f"{name}.weight"])


def _gelu_new(x: Any) -> Any:
    """GPT-2's activation (tanh-approximated GELU) as one fused kernel; transformers' NewGELUActivation
    writes the same formula out in seven elementwise ops (equal within float rounding)."""
    import torch.nn.functional as F

    return F.gelu(x, approximate="tanh")


def ensemble_losses(
    params: dict[str, Any], ids: Any, labels: Any, n_layer: int, n_head: int, eps: float
) -> Any:
    """Each model's mean next-token loss on its own batch: `ids`, `labels` are [K, B, T], the result [K].

    GPT-2's forward (pre-norm blocks, causal attention, tied output layer) with every weight carrying
    the models' axis. Only causal masking: padding fills each packed sequence's tail, so no real token
    attends to it, and padded positions are not targets; the solo model's padding mask changes nothing
    a loss sees.
    """
    import torch
    import torch.nn.functional as F

    K, B, T = ids.shape
    wte = params["transformer.wte.weight"]
    V, d = wte.shape[1], wte.shape[2]
    offsets = (torch.arange(K, device=ids.device) * V).view(K, 1, 1)
    x = F.embedding(ids + offsets, wte.reshape(K * V, d))  # [K, B, T, d]
    x = (x + params["transformer.wpe.weight"][:, :T].unsqueeze(1)).reshape(K, B * T, d)
    hd = d // n_head
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        h = _linear(_layer_norm(x, params, f"{p}.ln_1", eps), params, f"{p}.attn.c_attn")
        q, k, v = (t.reshape(K * B, T, n_head, hd).transpose(1, 2) for t in h.split(d, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + _linear(a.transpose(1, 2).reshape(K, B * T, d), params, f"{p}.attn.c_proj")
        h = _gelu_new(_linear(_layer_norm(x, params, f"{p}.ln_2", eps), params, f"{p}.mlp.c_fc"))
        x = x + _linear(h, params, f"{p}.mlp.c_proj")
    x = _layer_norm(x, params, "transformer.ln_f", eps)
    logits = torch.bmm(x, wte.transpose(1, 2)).float().reshape(K, B, T, V)[:, :, :-1]
    targets = labels[:, :, 1:]
    nll = F.cross_entropy(
        logits.reshape(-1, V), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).reshape(K, -1)
    return nll.sum(dim=1) / (targets != IGNORE_INDEX).reshape(K, -1).sum(dim=1)


def clip_grad_norms(params: dict[str, Any], max_norm: float) -> Any:
    """Clip each model's gradient to `max_norm` over all of its parameters (torch's clip_grad_norm_,
    one model per slice of the leading axis); returns each model's norm before clipping."""
    import torch

    grads = [p.grad for p in params.values() if p.grad is not None]
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), 2, dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, 2, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(K, *([1] * (g.dim() - 1))))
    return total


class StackedAdamW:
    """torch.optim.AdamW's update (betas 0.9, 0.95, decoupled weight decay on matrices and embeddings
    only, as `settings.build_optimizer` groups them) over stacked parameters, with one learning rate per
    model: the models' schedules differ when their step counts do."""

    def __init__(self, params: dict[str, Any], weight_decay: float) -> None:
        import torch

        self.params, self.weight_decay, self.steps = params, weight_decay, 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    def step(self, lrs: Any) -> None:
        """One update with learning rates `lrs` ([K])."""
        import torch

        self.steps += 1
        beta1, beta2 = BETAS
        bias1, bias2_sqrt = 1 - beta1**self.steps, (1 - beta2**self.steps) ** 0.5
        with torch.no_grad():
            for name, p in self.params.items():
                g = p.grad
                # Per-model factors computed in double and rounded once, as torch's scalar lr is.
                lr = lrs.view(-1, *([1] * (p.dim() - 1)))
                if p.dim() - 1 >= 2:  # a matrix or embedding of one model: decayed
                    p.mul_((1 - lr * self.weight_decay).to(p.dtype))
                m, v = self.exp_avg[name], self.exp_avg_sq[name]
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v.sqrt() / bias2_sqrt).add_(ADAM_EPS)
                p.sub_(m / denom * (lr / bias1).to(p.dtype))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def model_state(self, k: int) -> dict[str, Any]:
        """Model k's optimizer state (its moments and the step count), as plain tensors."""
        return {
            "steps": self.steps,
            "exp_avg": {n: t[k].clone() for n, t in self.exp_avg.items()},
            "exp_avg_sq": {n: t[k].clone() for n, t in self.exp_avg_sq.items()},
        }

    def load_model_state(self, k: int, state: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for n in self.params:
                self.exp_avg[n][k].copy_(state["exp_avg"][n])
                self.exp_avg_sq[n][k].copy_(state["exp_avg_sq"][n])
        self.steps = int(state["steps"])


# ---------------------------------------------------------------- one member of the ensemble


@dataclass
class Member:
    """One model of the ensemble: its run's settings, directory, data and logs, and its own step count."""

    cfg: PretrainConfig
    out_dir: Path
    key: str
    corpus: PackedCorpus
    stream: BatchStream
    total_steps: int
    model: Any  # a GPT2LMHeadModel that receives this member's slice to check or save it
    saved: bool = False  # its model, run.json and card are in place (its done marker comes last)
    metrics: Any = None
    knowledge: Any = None
    schedule: Any = None  # its learning-rate multiplier by step (the solo run's LambdaLR function)

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / CHECKPOINTS


def pretrain_ensemble(
    data_dir: str | Path, cfgs: list[PretrainConfig], out_dirs: list[str | Path]
) -> list[Path]:
    """Train the models `cfgs` (equal but for the seed, `ensemble: true`) together into `out_dirs`;
    resume a cut ensemble, skip models finished there, and return the directories."""
    import torch

    data_dir, dirs = Path(data_dir), [Path(d) for d in out_dirs]
    check_members(cfgs, dirs)
    cfg = cfgs[0]
    data_sha256 = corpus_sha256(data_dir)
    todo = [(c, d) for c, d in zip(cfgs, dirs) if not finished(d, c, data_sha256)]
    if not todo:
        return dirs
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = mixed_precision_name(cfg.mixed_precision)  # "no" or "bf16" (fp16 was refused)
    preset = cfg.model_preset()
    for _, d in todo:
        claim_output_dir(d, "model")
        check_space(d, preset.n_params())
        remove_partial_saves(d / CHECKPOINTS)
    tok = _tokenizer(data_dir, preset, [d for _, d in todo])
    bios, qas = _documents(data_dir, tok)
    everyone = [_member(c, d, data_sha256, tok, bios, qas, preset) for c, d in todo]
    members = [m for m in everyone if not m.saved]  # a model saved before a kill is not trained again
    if members:
        _train(members, cfg, preset, tok, data_dir, data_sha256, device, precision)
    # Every model of the ensemble is saved: only now are they marked done.
    for m in everyone:
        mark_done(m.out_dir, m.key, {"steps": m.total_steps})
    return dirs


def _train(
    members: list[Member],
    cfg: PretrainConfig,
    preset: Any,
    tok: Any,
    data_dir: Path,
    data_sha256: str,
    device: Any,
    precision: str,
) -> None:
    """The ensemble's loop: one batched step for all members until the last one's step count; each
    member is logged, checked and saved at its own steps."""
    import torch

    from frequnlearn.models.prompts import get_prompt_format
    from frequnlearn.pretrain.knowledge import load_eval_items

    autocast = _autocast(device, precision)
    for m in members:
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        m.schedule = build_scheduler(dummy, m.cfg, m.total_steps).lr_lambdas[0]
    params = stack_params([m.model for m in members])
    params = {n: p.detach().to(device).requires_grad_(True) for n, p in params.items()}
    optimizer = StackedAdamW(params, cfg.weight_decay)
    step = _resume(members, params, optimizer, data_sha256)
    for m in members:
        m.metrics = JsonlLog(m.out_dir / "metrics.jsonl", step, True)
        m.knowledge = JsonlLog(m.out_dir / "knowledge.jsonl", step, True)
    window = torch.zeros(len(members), device=device)
    window_steps = 0
    if step:
        window, window_steps = _window(members, step, device)
    items = load_eval_items(data_dir, cfg)
    fmt = get_prompt_format(cfg.prompt_format)
    losses_fn = ensemble_losses
    if cfg.compile:
        losses_fn = torch.compile(ensemble_losses, dynamic=False)
    n_layer, n_head, eps = preset.n_layer, preset.n_head, 1e-5
    last = max(m.total_steps for m in members)
    meter_steps, meter_seconds = 0, 0.0
    rows = cfg.batch_size // cfg.grad_accum
    with progress.bar(last, f"pretrain x{len(members)}", unit="step", initial=step) as bar:
        while step < last:
            t0 = time.perf_counter()
            batches = [m.stream.batch(step) for m in members]
            ids = torch.stack([b[0] for b in batches]).to(device)
            labels = torch.stack([b[1] for b in batches]).to(device)
            for k in range(cfg.grad_accum):
                part = slice(k * rows, (k + 1) * rows)
                with autocast:
                    losses = (
                        losses_fn(params, ids[:, part], labels[:, part], n_layer, n_head, eps)
                        / cfg.grad_accum
                    )
                losses.sum().backward()
                window += losses.detach()
            if cfg.max_grad_norm > 0:
                clip_grad_norms(params, cfg.max_grad_norm)
            lrs = torch.tensor(
                [cfg.lr * m.schedule(step) for m in members], device=device, dtype=torch.float64
            )
            optimizer.step(lrs)
            optimizer.zero_grad()
            step += 1
            window_steps += 1
            meter_steps += 1
            meter_seconds += time.perf_counter() - t0
            bar.update(1)
            for i, m in enumerate(members):
                if m.saved:
                    continue
                end = step == m.total_steps
                if step % m.cfg.log_every == 0 or end:
                    # This model's own tokens per second of the ensemble's training time.
                    tokens_per_s = meter_steps * cfg.batch_size * cfg.seq_len / max(meter_seconds, 1e-9)
                    _log(m, step, window[i].item() / window_steps, tokens_per_s)
                if m.cfg.eval_every and step % m.cfg.eval_every == 0 and not end:
                    _check(m, params, i, items, fmt, tok, step, autocast)
                if end:
                    _finish(m, params, i, items, fmt, tok, autocast, data_sha256, len(members), precision)
            if step % cfg.log_every == 0:
                window.zero_()
                window_steps, meter_steps, meter_seconds = 0, 0, 0.0
            if step % cfg.save_every == 0 and step < last:
                for i, m in enumerate(members):
                    if step < m.total_steps:
                        _save_checkpoint(
                            m, params, optimizer, i, step, window[i].item(), window_steps, data_sha256
                        )


def check_members(cfgs: list[PretrainConfig], dirs: list[Path]) -> None:
    """Refuse an ensemble whose models differ in more than the seed, or one launched on several processes."""
    if not cfgs or len(cfgs) != len(dirs):
        raise ConfigError("ensemble: give one output directory per config")
    if len({str(d.resolve()) for d in dirs}) != len(dirs):
        raise ConfigError("ensemble: each model needs its own output directory")
    if not all(c.ensemble for c in cfgs):
        raise ConfigError(
            "ensemble: every config of an ensemble must say ensemble: true (it is part of the model key)"
        )
    base = to_dict(dataclasses.replace(cfgs[0], seed=0))
    for c in cfgs[1:]:
        other = to_dict(dataclasses.replace(c, seed=0))
        changed = sorted(k for k in base if base[k] != other[k])
        if changed:
            raise ConfigError(
                f"ensemble: its models may differ only by seed; they differ in {', '.join(changed)}"
            )
    if len({c.seed for c in cfgs}) != len(cfgs):
        raise ConfigError(
            "ensemble: two models with one seed would be the same model; give each its own seed"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "ensemble: trains in one process; launch it without torchrun/accelerate launch or set ensemble: false"
        )
    if cfgs[0].mixed_precision == "fp16":
        raise ConfigError(
            "mixed_precision: fp16 needs a loss scaler, which an ensemble does not have; use bf16 or fp32"
        )


def _autocast(device: Any, precision: str) -> Any:
    """bf16 autocast where the config asks for it (on a CPU only where the CPU has it), else nothing."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _tokenizer(data_dir: Path, preset: Any, dirs: list[Path]) -> Any:
    """The preset's tokenizer, built once and saved in each model's directory (as a solo run saves it)."""
    from frequnlearn.pretrain.data import prepare_tokenizer

    solo = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)
    tok = prepare_tokenizer(solo, data_dir, preset, dirs[0])
    for d in dirs[1:]:
        if not (d / "tokenizer_config.json").is_file():
            tok.save_pretrained(d)
    return tok


def _documents(data_dir: Path, tok: Any) -> tuple[list[list[int]], list[list[int]]]:
    from frequnlearn.pretrain.data import encode_documents, load_documents

    bios, qas = load_documents(data_dir)
    return encode_documents(tok, bios), encode_documents(tok, qas)


def _member(
    cfg: PretrainConfig, out_dir: Path, data_sha256: str, tok: Any, bios: Any, qas: Any, preset: Any
) -> Member:
    """One model's data, step count and seeded initial weights, as its solo run builds them."""
    from frequnlearn.models.loading import pad_id_of
    from frequnlearn.models.presets import build_model

    corpus = PackedCorpus(bios, qas, cfg.seq_len, cfg.qa_ratio, cfg.seed, pad_id_of(tok))
    stream = BatchStream(corpus, cfg.batch_size)
    total = cfg.max_steps or stream.steps_for(cfg.epochs)
    if total < 1:
        raise ConfigError(
            f"epochs: {cfg.epochs} epochs hold fewer sequences than one batch ({cfg.batch_size})"
        )
    model = build_model(preset, tok, seed=cfg.seed)
    model.generation_config.pad_token_id = tok.pad_token_id
    key = run_key(cfg, data_sha256)
    return Member(cfg, out_dir, key, corpus, stream, total, model, saved=_saved(out_dir, key))


def _saved(out_dir: Path, key: str) -> bool:
    """Whether this model was saved by an ensemble cut before its done markers (run.json comes last)."""
    try:
        record = read_json(out_dir / "run.json") if (out_dir / "run.json").is_file() else {}
    except Exception:  # noqa: BLE001 - a cut or unreadable record means not saved
        return False
    return isinstance(record, dict) and record.get("key") == key and (out_dir / "model.safetensors").is_file()


def _sync(m: Member, params: dict[str, Any], i: int) -> Any:
    """Model i's slice copied into its own GPT2LMHeadModel (on the CPU), which is returned."""
    import torch

    own = dict(m.model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            own[name].copy_(p[i].detach().to(own[name].device, own[name].dtype))
    return m.model


# ---------------------------------------------------------------- checkpoints, logs, the saved model


def _save_checkpoint(
    m: Member,
    params: dict[str, Any],
    opt: StackedAdamW,
    i: int,
    step: int,
    window_loss: float,
    window_steps: int,
    data_sha256: str,
) -> None:
    """Member i's part of the ensemble's state at `step`, as one checkpoint in its own directory (the
    format and checks of a solo run's: moved into place whole, every file's size and sha256 recorded)."""
    import torch
    from safetensors.torch import save_model

    def put(obj: Any, name: str) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        write_bytes(tmp / name, buf.getvalue())

    tmp = m.ckpt_dir / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(_sync(m, params, i), str(tmp / MODEL_FILE))
    put(opt.model_state(i), OPTIMIZER_FILE)
    put({"last_epoch": step}, SCHEDULER_FILE)
    put(_rng_state(), rng_file(0))
    record = {
        "step": step,
        "tokens_seen": step * m.cfg.batch_size * m.cfg.seq_len,
        "window_loss": window_loss,
        "window_steps": window_steps,
        "key": m.key,
        "data_sha256": data_sha256,
        "config": to_dict(m.cfg),
    }
    commit_checkpoint(tmp, m.ckpt_dir, step, record, m.cfg.keep_checkpoints)


def _resume(members: list[Member], params: dict[str, Any], opt: StackedAdamW, data_sha256: str) -> int:
    """Restore the newest step every member has a readable checkpoint of, at or before its own last
    step (0 if none)."""
    import torch
    from safetensors.torch import load_model

    common: set[int] | None = None
    for m in members:
        ok = set()
        for s, path in checkpoints(m.ckpt_dir):
            why = not_resumable(path, m.key)
            if why == "other run":
                check_other_run(m.out_dir, json.loads((path / STATE_FILE).read_text()), m.cfg, data_sha256)
            elif why is None and s <= m.total_steps:
                ok.add(s)
        common = ok if common is None else common & ok
    if not common:
        return 0
    step = max(common)
    for i, m in enumerate(members):
        path = m.ckpt_dir / f"step-{step:08d}"
        state = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        load_model(m.model, str(path / MODEL_FILE))
        own = dict(m.model.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                p[i].copy_(own[name].to(p.device))
        opt.load_model_state(i, state)
    print(f"resuming the ensemble from checkpoint step-{step:08d}", flush=True)
    return step


def _window(members: list[Member], step: int, device: Any) -> tuple[Any, int]:
    """The logging window a checkpoint cut: each member's summed loss and the window's steps."""
    import torch

    losses, steps = [], 0
    for m in members:
        path = m.ckpt_dir / f"step-{step:08d}" / STATE_FILE
        record = json.loads(path.read_text()) if path.is_file() else {"window_loss": 0.0, "window_steps": 0}
        losses.append(record["window_loss"])
        steps = max(steps, record["window_steps"])
    return torch.tensor(losses, device=device), steps


def _log(m: Member, step: int, mean_loss: float, tokens_per_s: float) -> None:
    """One metrics row of member m (tokens/s: its own, so the ensemble's is the members' sum); a
    non-finite loss stops it."""
    if not math.isfinite(mean_loss):
        raise TrainingError(
            f"loss of seed {m.cfg.seed} became {mean_loss} at step {step}; lower lr (now {m.cfg.lr}) or check "
            "the data (the last checkpoint is kept)"
        )
    m.metrics.write(
        {
            "step": step,
            "epoch": round(m.stream.epoch_at(step), 4),
            "loss": round(mean_loss, 6),
            "lr": m.cfg.lr * m.schedule(step),
            "tokens_seen": step * m.cfg.batch_size * m.cfg.seq_len,
            "tokens_per_s": round(tokens_per_s, 1),
        }
    )


def _check(
    m: Member, params: dict[str, Any], i: int, items: Any, fmt: Any, tok: Any, step: int, autocast: Any
) -> dict[str, Any]:
    from frequnlearn.pretrain.knowledge import knowledge_check

    model = _sync(m, params, i)
    model.eval()
    with autocast:
        result = knowledge_check(model, tok, items, fmt=fmt, batch_size=m.cfg.eval_batch_size)
    m.knowledge.write({"step": step, "epoch": round(m.stream.epoch_at(step), 4), **result})
    return result


def _finish(
    m: Member,
    params: dict[str, Any],
    i: int,
    items: Any,
    fmt: Any,
    tok: Any,
    autocast: Any,
    data_sha256: str,
    size: int,
    precision: str,
) -> None:
    """Member i at its last step: the last knowledge check, then its model, tokenizer, run.json and card
    as one set (run.json last). Its done marker waits for the whole ensemble."""
    final = _check(m, params, i, items, fmt, tok, m.total_steps, autocast)
    model = m.model
    record = {**run_info(m.cfg, m.cfg.seed), "key": m.key, "data_sha256": data_sha256}
    summary = run_summary(
        m.cfg,
        m.corpus,
        m.stream,
        m.total_steps,
        m.total_steps * m.cfg.batch_size * m.cfg.seq_len,
        tok,
        model,
        final,
        num_processes=1,
        mixed_precision=precision,
        ensemble_size=size,
    )
    with output_set(m.out_dir, None, "run.json") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "run.json", {**record, "summary": summary})
        write_pretrained_card(tmp, m.out_dir)
    m.saved = True
