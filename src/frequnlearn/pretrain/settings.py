"""What the solo pretraining loop and the batched ensemble share: the optimizer and schedule, the
precision setting, and the summary a run records.

Both loops import from here rather than from each other, so that neither module depends on the other
(the solo loop still hands `ensemble: true` configs to the ensemble).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frequnlearn.config.base import to_dict
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError
from frequnlearn.pretrain.data import BatchStream, PackedCorpus

# AdamW's betas and eps, for the solo loop's torch optimizer and the ensemble's stacked one alike.
BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16); elsewhere bf16 autocast is
    emulated, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mixed_precision_name(setting: str) -> str:
    """accelerate's name for the setting ("no" is spelt fp32 in configs: YAML reads `no` as false)."""
    import torch

    if setting == "fp32":
        return "no"
    if setting != "auto":
        if not torch.cuda.is_available():
            if setting == "bf16":
                if cpu_bf16_supported():
                    return setting
                raise ConfigError(
                    "mixed_precision: bf16 on this CPU would be emulated (it has neither avx512_bf16 nor "
                    "amx_bf16) and slower than fp32; use auto or fp32"
                )
            raise ConfigError(f"mixed_precision: {setting} needs a GPU; use auto or fp32 on CPU")
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def build_optimizer(model: Any, cfg: PretrainConfig) -> Any:
    """AdamW with weight decay on matrices and embeddings only (not biases or layer norms)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=BETAS, eps=ADAM_EPS)


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


def run_summary(
    cfg: PretrainConfig,
    corpus: PackedCorpus,
    stream: BatchStream,
    total_steps: int,
    tokens_seen: int,
    tokenizer: Any,
    model: Any,
    knowledge: dict[str, Any] | None,
    *,
    num_processes: int,
    mixed_precision: str,
    ensemble_size: int | None = None,
    planned_steps: int | None = None,
) -> dict[str, Any]:
    """The summary of a solo run or of one model of an ensemble (`ensemble_size` models trained
    together); how it was trained (compiled, precision, whether this CPU has bf16) is recorded too.
    `total_steps` are the steps trained; `planned_steps` the most the config allowed (they differ when
    `stop_known` ended the run at a knowledge target)."""
    plan = corpus.plan(0)
    planned = total_steps if planned_steps is None else planned_steps
    return {
        "steps": total_steps,
        "planned_steps": planned,
        "stopped_by_knowledge_target": total_steps < planned,
        "epochs": round(stream.epoch_at(total_steps), 4),
        "tokens_seen": tokens_seen,
        "n_params": sum(p.numel() for p in model.parameters()),
        "preset": to_dict(cfg.model_preset()),
        "vocab_size": len(tokenizer),
        "num_processes": num_processes,
        "mixed_precision": mixed_precision,
        "compile": cfg.compile,
        "ensemble_size": ensemble_size,
        "cpu_bf16_supported": cpu_bf16_supported(),
        "data": {
            "bio_documents": len(corpus.bio_docs),
            "qa_documents": len(corpus.qa_docs),
            "bio_sequences_per_epoch": plan.bio_seqs,
            "qa_sequences_per_epoch": plan.qa_seqs,
            "qa_repeats_per_epoch": round(plan.qa_docs_used / max(1, len(corpus.qa_docs)), 4),
            "pad_fraction": round(plan.pad_fraction, 4),
            "longest_document": max((len(d) for d in corpus.bio_docs + corpus.qa_docs), default=0),
        },
        "knowledge": knowledge,
    }
