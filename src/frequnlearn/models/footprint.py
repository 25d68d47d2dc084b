"""What unlearning one model size costs on one GPU: peak memory and time, from its shape alone.

A study of a real model suite (Pythia 70M..12B, OLMo-2 1B..32B) is planned on a machine that holds none
of the models, so the plan states per size what it expects on one H200 before anything is loaded:

memory (bytes, everything in bf16, as `unlearn.dtype: bfloat16` trains)
    weights 2 N + gradients 2 N + AdamW's two moments 4 N (torch keeps them in the parameters' dtype),
    + a frozen copy 2 N for losses that compare logits or activations with the model before unlearning
      (KL, UNDIAL, RMU's activation term; NPO's reference log-probabilities are computed once, no copy),
    + activations kept for the backward pass: per layer s b h (34 + 5 a s / h) bytes for b sequences of
      s tokens, width h and a heads (Korthikanti et al. 2022, "Reducing Activation Recomputation in
      Large Transformer Models", 16-bit, no recomputation), b = the forget and the retain batch together,
    + the logits: b s V values, in bf16 and again as float32 with their float32 gradient (10 bytes each).
time
    training: 6 N FLOPs per token (forward and backward) at `mfu` of the GPU's dense bf16 peak, over
      the forget and retain tokens of every step;
    evaluation: a forward pass (2 N FLOPs per token) over every evaluated item's prompt with each of its
      candidate answers, per probe and evaluation point, at the same utilisation; generation: greedy
      decoding reads every weight once per new token, so it is bound by memory bandwidth (2 N bytes per
      token and batch of prompts).
Not counted: downloading and loading the weights, the lm-eval utility tasks, the report.

These are estimates to size a job, not measurements: a run's own records say what it took.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    bf16_flops: float  # dense peak, FLOP/s
    bandwidth: float  # HBM bytes/s


# NVIDIA H200 SXM: 141 GB of HBM3e (143,771 MiB, 140 GiB, as nvidia-smi reports it), 4.8 TB/s, 989 TFLOP/s dense bf16.
H200 = Gpu("H200", 143_771 * 2**20, 989e12, 4.8e12)
# Unlearning steps are small batches of short QA sequences: far from the 40-50% that long-sequence
# pretraining reaches. 0.3 is the utilisation assumed for the training and scoring passes.
DEFAULT_MFU = 0.3
# Tokens of one QA sequence: a question, its answer and a prompt format's markup.
QA_TOKENS = 64
BYTES = 2  # bf16


@dataclass(frozen=True)
class Architecture:
    """A decoder's shape, enough to count its parameters and its activations.

    family: gpt_neox (LayerNorm with biases, 4h GeLU MLP with biases, untied output),
    olmo2 (no biases, SwiGLU MLP, RMSNorm after attention and MLP and on queries and keys),
    olmo (OLMo 1: no biases, SwiGLU, LayerNorm without parameters),
    llama (no biases, SwiGLU, RMSNorm before attention and MLP), gpt2 (GPT-2 blocks, tied output).
    """

    family: str
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    vocab_size: int
    n_kv_head: int | None = None
    tied: bool = False
    n_positions: int = 0  # learned position table (gpt2 only)

    @property
    def kv_dim(self) -> int:
        return self.d_model // self.n_head * (self.n_kv_head or self.n_head)

    def n_params(self) -> int:
        d, f, kv, v = self.d_model, self.d_ff, self.kv_dim, self.vocab_size
        embed = v * d * (1 if self.tied else 2)
        if self.family in ("gpt_neox", "gpt2"):
            attn = 2 * d * d + 2 * d * kv + 2 * d + 2 * kv  # q, k, v, out with biases
            mlp = 2 * d * f + f + d
            norms = 4 * d
            return self.n_layer * (attn + mlp + norms) + embed + self.n_positions * d + 2 * d
        attn = 2 * d * d + 2 * d * kv  # no biases
        mlp = 3 * d * f  # gate, up, down
        # olmo2: two post-norms and q, k norms; llama: two pre-norms; olmo: parameter-free LayerNorm.
        norms = {"olmo2": 3 * d + kv, "llama": 2 * d}.get(self.family, 0)
        return self.n_layer * (attn + mlp + norms) + embed + (d if self.family != "olmo" else 0)


# Shapes of the suites' sizes, from each model's config.json on the hub; parameter counts match the
# published ones (Pythia's table: 70,426,624 ... 11,846,072,320).
def _neox(n_layer: int, d: int, heads: int, vocab: int = 50304) -> Architecture:
    return Architecture("gpt_neox", n_layer, d, heads, 4 * d, vocab)


def _olmo2(n_layer: int, d: int, heads: int, d_ff: int, kv: int | None = None) -> Architecture:
    return Architecture("olmo2", n_layer, d, heads, d_ff, 100352, n_kv_head=kv)


KNOWN: dict[str, Architecture] = {
    "eleutherai/pythia-70m": _neox(6, 512, 8),
    "eleutherai/pythia-160m": _neox(12, 768, 12),
    "eleutherai/pythia-410m": _neox(24, 1024, 16),
    "eleutherai/pythia-1b": _neox(16, 2048, 8),
    "eleutherai/pythia-1.4b": _neox(24, 2048, 16),
    "eleutherai/pythia-2.8b": _neox(32, 2560, 32),
    "eleutherai/pythia-6.9b": _neox(32, 4096, 32, vocab=50432),
    "eleutherai/pythia-12b": _neox(36, 5120, 40, vocab=50688),
    # The paper's model (configs/olmo.yaml) and its base.
    "allenai/olmo-7b-0724-sft-hf": Architecture("olmo", 32, 4096, 32, 11008, 50304),
    "allenai/olmo-7b-0724-hf": Architecture("olmo", 32, 4096, 32, 11008, 50304),
    "allenai/olmo-2-0425-1b": _olmo2(16, 2048, 16, 8192),
    "allenai/olmo-2-1124-7b": _olmo2(32, 4096, 32, 11008),
    "allenai/olmo-2-1124-13b": _olmo2(40, 5120, 40, 13824),
    "allenai/olmo-2-0325-32b": _olmo2(64, 5120, 40, 27648, kv=8),
}
# The deduplicated Pythia models have the shapes of the standard ones.
KNOWN.update({f"{k}-deduped": a for k, a in list(KNOWN.items()) if k.startswith("eleutherai/pythia")})


def from_hf_config(config: dict[str, Any]) -> Architecture | None:
    """The shape of a transformers config.json (as a dict); None for a model type not described here."""
    kind = config.get("model_type")
    get = config.get
    if kind == "gpt_neox":
        return Architecture(
            "gpt_neox",
            get("num_hidden_layers"),
            get("hidden_size"),
            get("num_attention_heads"),
            get("intermediate_size") or 4 * get("hidden_size"),
            get("vocab_size"),
            tied=bool(get("tie_word_embeddings", False)),
        )
    if kind in ("olmo2", "llama", "olmo"):
        return Architecture(
            kind,
            get("num_hidden_layers"),
            get("hidden_size"),
            get("num_attention_heads"),
            get("intermediate_size"),
            get("vocab_size"),
            n_kv_head=get("num_key_value_heads"),
            tied=bool(get("tie_word_embeddings", False)),
        )
    if kind == "gpt2":
        d = get("n_embd")
        return Architecture(
            "gpt2",
            get("n_layer"),
            d,
            get("n_head"),
            4 * d,
            get("vocab_size"),
            tied=True,
            n_positions=get("n_positions", 0),
        )
    return None


def architecture(model: str) -> Architecture | None:
    """The shape of `model`: a local directory's config.json, else the table of known hub ids; None
    when neither knows it (the plan then says so instead of guessing)."""
    local = Path(model).expanduser() / "config.json"
    if local.is_file():
        return from_hf_config(json.loads(local.read_text()))
    return KNOWN.get(model.lower().rstrip("/"))


@dataclass(frozen=True)
class Workload:
    """One size's unlearning runs, as the config sets them."""

    runs: int  # unlearning runs of this size (seeds x methods x selections x levels)
    steps: int  # optimizer steps per run
    batch_size: int  # forget sequences per step (a retain batch of the same size with a retain loss)
    retain: bool  # whether a retain batch is trained on too
    grad_accum: int = 1
    eval_points: int = 10  # evaluations per run, step 0 included
    eval_items: int = 160  # items scored at each evaluation (targets, controls, retain, utility)
    probes: int = 2
    candidates: int = 10  # answers scored per item: the true one and the wrong ones
    gen_tokens: int = 24  # greedy new tokens per item and probe
    eval_batch: int = 64
    frozen_copy: bool = False  # a frozen copy of the model for the loss (KL, UNDIAL, RMU)
    seq_len: int = QA_TOKENS


@dataclass(frozen=True)
class Footprint:
    n_params: int
    memory: dict[str, int]  # bytes per part (weights, gradients, adamw, frozen_copy, activations, logits)
    gpu: Gpu
    seconds_per_run: float
    runs: int
    mfu: float

    @property
    def peak_bytes(self) -> int:
        return sum(self.memory.values())

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.gpu.memory_bytes

    @property
    def gpus_needed(self) -> int:
        """GPUs whose memory holds the peak when weights, gradients, moments and the frozen copy are
        sharded over them (FSDP) and each keeps its own activations and logits."""
        own = self.memory["activations"] + self.memory["logits"]
        shared = self.peak_bytes - own
        room = self.gpu.memory_bytes - own
        return max(1, math.ceil(shared / room)) if room > 0 else 0

    @property
    def seconds(self) -> float:
        return self.seconds_per_run * self.runs

    def line(self) -> str:
        gib, cap = self.peak_bytes / 2**30, self.gpu.memory_bytes / 2**30
        where = (
            f"fits one {self.gpu.name} ({cap:.0f} GiB)"
            if self.fits
            else f"does NOT fit one {self.gpu.name} ({cap:.0f} GiB): "
            + (f"needs {self.gpus_needed} sharded (FSDP), " if self.gpus_needed else "")
            + "LoRA or an 8-bit optimizer"
        )
        return (
            f"{self.n_params / 1e6:,.1f}M parameters; peak {gib:,.1f} GiB ({where}); "
            f"{_duration(self.seconds_per_run)} per run, {_duration(self.seconds)} for its {self.runs} runs"
        )


def footprint(arch: Architecture, work: Workload, gpu: Gpu = H200, mfu: float = DEFAULT_MFU) -> Footprint:
    """Expected peak memory and time of `work` on `gpu` (the estimate the module docstring derives)."""
    n = arch.n_params()
    s, h, a, v = work.seq_len, arch.d_model, arch.n_head, arch.vocab_size
    rows = work.batch_size * (2 if work.retain else 1) // max(1, work.grad_accum)
    memory = {
        "weights": BYTES * n,
        "gradients": BYTES * n,
        "adamw": 2 * BYTES * n,
        "frozen_copy": BYTES * n if work.frozen_copy else 0,
        "activations": int(arch.n_layer * s * rows * h * (34 + 5 * a * s / h)),
        "logits": rows * s * v * (BYTES + 4 + 4),
    }
    flops = mfu * gpu.bf16_flops
    train_tokens = work.steps * work.batch_size * (2 if work.retain else 1) * s
    scored_tokens = work.eval_points * work.eval_items * work.probes * work.candidates * s
    decode_steps = (
        work.eval_points * math.ceil(work.eval_items * work.probes / work.eval_batch) * work.gen_tokens
    )
    seconds = (
        6 * n * train_tokens + 2 * n * scored_tokens
    ) / flops + decode_steps * BYTES * n / gpu.bandwidth
    return Footprint(n, memory, gpu, seconds, work.runs, mfu)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
