"""Config of the `unlearn` stage: which loss, how hard, for how long, and when to evaluate.

Defaults follow the papers (NPO/SimNPO beta 0.1, gamma 0, both weights 1, AdamW lr 1e-5 for real
models; each method's own settings as its paper or open-unlearning sets them); tiny CPU models need
a larger `lr` (the study config sets one). Method names are checked against the loss registry
(`frequnlearn.unlearn.losses`), the only list of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frequnlearn import names
from frequnlearn.config.base import MAX_EPOCHS, MAX_STEPS, check, check_range, check_seed
from frequnlearn.models.prompts import get_prompt_format


def method_names() -> tuple[list[str], list[str]] | None:
    """(forget methods, retain terms) as the loss registry holds them, sorted; None when it was not
    imported (`frequnlearn.unlearn.losses`, which needs torch): the unlearning stage checks them then."""
    forget, retain = names.registered(names.FORGET_LOSS), names.registered(names.RETAIN_LOSS)
    return None if forget is None or retain is None else (sorted(forget), sorted(retain))


@dataclass
class LoraSettings:
    """LoRA adapters (through peft) trained instead of every weight."""

    # Rank of each adapter's low-rank update.
    r: int = 8
    # Scale of the update: it is multiplied by alpha / r.
    alpha: float = 16.0
    # Dropout on the adapters' input.
    dropout: float = 0.0
    # Names of the modules adapted (null: peft's choice for the architecture, e.g. c_attn for GPT-2,
    # q_proj and v_proj for Llama).
    target_modules: list[str] | None = None

    def validate(self) -> None:
        check(self.r >= 1, "r", "must be >= 1")
        check(self.alpha > 0, "alpha", "must be > 0")
        check(0.0 <= self.dropout < 1.0, "dropout", "must be within [0, 1)")
        check(
            self.target_modules is None or len(self.target_modules) >= 1,
            "target_modules",
            "name a module or use null",
        )


@dataclass
class UnlearnConfig:
    # Forget term: ga (gradient ascent), npo, simnpo, idk (train towards `refusal`), dpo (IdkDPO:
    # prefer `refusal` over the answer), altpo (prefer an alternate answer sampled from the model),
    # ceu, pdu, rmu, undial, wga, satimp, fga (frequency-aware GA), mpu (margin-paced), or a
    # plugin's (--plugin, study.plugins); docs/methods.md gives each formula.
    method: str = "ga"
    # Retain term: none, gd (NLL on retain pairs), kl (KL to the model before unlearning), act
    # (RMU's: block `rmu_layer`'s activations on retain inputs stay where they were) or dual (PDU's:
    # NLL held under a bound by a dual variable).
    retain_loss: str = "none"
    # Tokens the retain term covers: the answer only, or question and answer (GradDiff's choice).
    retain_on: Literal["answer", "full"] = "full"
    # Weight of the forget term in the total loss.
    forget_weight: float = 1.0
    # Weight of the retain term in the total loss.
    retain_weight: float = 1.0
    # NPO, SimNPO and DPO: inverse temperature; SimNPO's margin.
    beta: float = 0.1
    # SimNPO's margin (0: none).
    gamma: float = 0.0
    # IDK's target and DPO's preferred answer.
    refusal: str = "I don't know."
    # WGA: token weight pi^wga_beta. SatImp: pi^satimp_beta1 * (1 - pi)^satimp_beta2.
    wga_beta: float = 1.0
    satimp_beta1: float = 5.0
    satimp_beta2: float = 1.0
    # UNDIAL: how far the answer token's logit is lowered in the distillation target.
    undial_strength: float = 10.0
    # RMU: the block whose output is steered (null: the middle block), the steering coefficient
    # (the target's norm) and what is trained: mlp (the MLPs of blocks layer-2..layer, as
    # published) or all. The `act` retain term reads the same block.
    rmu_layer: int | None = None
    # RMU's steering coefficient: the norm of the target activation.
    rmu_coeff: float = 6.5
    # What RMU trains: mlp (the MLPs of blocks layer-2..layer, as published) or all.
    rmu_params: Literal["mlp", "all"] = "mlp"
    # FGA: weight 1 + freq_scale * ln(frequency) per item; freq_stop drops an item from the loss
    # while greedy decoding no longer produces its answer.
    freq_scale: float = 1.0
    freq_stop: bool = True
    # dual (PDU's retain constraint): retain NLL <= (1 + dual_tol) x its value at the first step; the
    # dual variable's step size; steps before it first moves (a warm start at 1).
    dual_tol: float = 0.1
    # PDU: the dual variable's step size.
    dual_lr: float = 1.0
    # PDU: steps before the dual variable first moves (a warm start at 1).
    dual_warmup: int = 0
    # MPU: each item is pushed until its weakest answer token trails its best rival by mpu_delta logits.
    mpu_delta: float = 1.0
    # plain, olmo, chat (the tokenizer's template) or a string with {question} and {answer}.
    prompt_format: str = "plain"

    # AdamW learning rate (0: a null run that changes nothing).
    lr: float = 1e-5
    # AdamW weight decay.
    weight_decay: float = 0.01
    # Learning-rate schedule after the warmup.
    scheduler: Literal["constant", "linear", "cosine"] = "constant"
    # Share of all optimizer steps spent warming the learning rate up from 0.
    warmup_ratio: float = 0.0
    # Gradient-norm clip; null leaves gradients as they are (their norm is still logged).
    max_grad_norm: float | None = 1.0
    # Forget examples per micro-batch (each is paired with one randomly drawn retain example).
    batch_size: int = 8
    # Micro-batches per optimizer step.
    grad_accum: int = 1
    # Passes over the forget set, unless max_steps is set.
    epochs: int = 5
    # When set, training stops after this many optimizer steps (S_max of the stopping rule), running
    # as many epochs as needed.
    max_steps: int | None = None

    # The stopping rule, checked at every evaluation: a run ends at the first evaluated step where its
    # target (forget) items' normalised generation accuracy on `stop_probe` (the share of the items
    # generated at step 0 that are still generated) is <= stop_forget_level (L), or where the
    # evaluated retain items' generation accuracy has dropped by more than stop_retain_drop (T) from
    # step 0, or after max_steps (or epochs) steps. null turns a criterion off. A run is then read at
    # the level of forgetting it reached, not at a step count that would favour the models that
    # forget fastest; run.json's summary.stop says which criterion ended it and whether L was reached.
    stop_forget_level: float | None = None
    stop_retain_drop: float | None = None
    # With stop_retain_drop: when the retain drop ends a run, the trainable weights of the last
    # evaluated step whose drop was within T are put back, and that step is the run's stopping point
    # (the model saved, the trajectory kept up to it; summary.stop.restored says from where). A run
    # then never ends past its retain budget, however steep the step that crossed it. It keeps a copy
    # of the trainable weights in CPU memory (the adapter only, with LoRA).
    stop_restore: bool = False
    # With stop_restore: the first `stop_backtrack` times the retain drop crosses T, the run is put
    # back (weights, optimizer and schedule state) to its last evaluated step within T, its rate is
    # multiplied by stop_backtrack_factor, and it goes on, evaluated at every step from there; the
    # next crossing after those ends it (put back). A step that jumps past T then does not end the
    # run far below it: the run closes in on its budget with smaller steps, as a backtracking line
    # search does. The batches go on from where they were (the crossing batch is not retaken).
    stop_backtrack: int = 0
    stop_backtrack_factor: float = 0.5  # the share of the rate kept after each backtrack, in (0, 1)
    # The probe whose generation accuracy the stopping rule reads.
    stop_probe: Literal["question", "paraphrase", "bio"] = "question"

    # Evaluation happens at step 0, at these steps, every `eval_every` steps (0: never), at the end
    # and, with eval_each_epoch, after each epoch. Early steps are where frequency levels differ;
    # `eval_every` keeps the late steps, where a run stops, as densely sampled as the early ones.
    eval_steps: list[int] = field(default_factory=lambda: [2, 4, 6, 8, 10, 15, 20, 30])
    eval_every: int = 0
    eval_each_epoch: bool = False

    # Seed of the batch order, the retain pairing and the held-out retain sample.
    seed: int = 0
    # Weights' dtype when the command loads the model (auto: float32 on CPU, the checkpoint's on GPU).
    dtype: str = "auto"
    # Column names in user QA tables (--forget/--retain/--eval-items).
    question_column: str = "question"
    # Column of the answers in user QA tables.
    answer_column: str = "answer"
    # Column of the item ids in user QA tables.
    id_column: str = "item_id"
    # LoRA instead of full fine-tuning, e.g. {r: 8, alpha: 16, dropout: 0.0, target_modules: null}; only
    # the adapters train and model/ holds the adapter (null: every weight trains).
    lora: LoraSettings | None = None
    # With lora: model/ holds the weights with the adapter merged in (a plain model) and adapter/ the adapter.
    lora_merge: bool = False
    # accelerate trackers that also get each step's loss terms, e.g. [tensorboard] (empty: log.jsonl only).
    log_with: list[str] = field(default_factory=list)

    def validate(self) -> None:
        check(self.forget_weight >= 0, "forget_weight", "must be >= 0")
        check(self.retain_weight >= 0, "retain_weight", "must be >= 0")
        check(
            self.forget_weight > 0 or self.retain_loss != "none", "forget_weight", "both loss terms are off"
        )
        forget_methods, retain_losses = method_names() or ([self.method], [self.retain_loss])
        check(
            self.method in forget_methods,
            "method",
            f"unknown method {self.method!r}; choose from {', '.join(forget_methods)}",
        )
        check(
            self.retain_loss in retain_losses,
            "retain_loss",
            f"unknown retain term {self.retain_loss!r}; choose from {', '.join(retain_losses)}",
        )
        check(self.beta > 0, "beta", "must be > 0 (NPO, SimNPO, DPO and AltPO divide by it)")
        check(
            bool(self.refusal.strip()) or self.method not in ("idk", "dpo"),
            "refusal",
            f"{self.method} needs a refusal text",
        )
        for key in (
            "wga_beta",
            "satimp_beta1",
            "satimp_beta2",
            "undial_strength",
            "freq_scale",
            "dual_tol",
            "dual_lr",
            "dual_warmup",
            "mpu_delta",
        ):
            check(getattr(self, key) >= 0, key, "must be >= 0")
        check(self.rmu_coeff > 0, "rmu_coeff", "must be > 0 (the steering target's norm)")
        check(self.rmu_layer is None or self.rmu_layer >= 0, "rmu_layer", "must be >= 0 or null")
        get_prompt_format(self.prompt_format)
        check(
            self.lr >= 0,
            "lr",
            "must be >= 0 (0 changes nothing: a null run, which the report calls 'no estimate')",
        )
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be within [0, 1)")
        check(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "must be > 0 or null")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        check_seed(self.seed, "seed")
        check(self.epochs >= 1, "epochs", "must be >= 1")
        check_range(self.epochs, "epochs", 1, MAX_EPOCHS)
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be >= 1 or null")
        check_range(self.max_steps, "max_steps", 1, MAX_STEPS, " or null")
        check(all(s >= 0 for s in self.eval_steps), "eval_steps", "steps must be >= 0")
        check(
            all(s <= MAX_STEPS for s in self.eval_steps),
            "eval_steps",
            f"steps must be <= {MAX_STEPS}, got {self.eval_steps}",
        )
        check(
            self.stop_forget_level is None or 0.0 <= self.stop_forget_level < 1.0,
            "stop_forget_level",
            "must be within [0, 1) (a share of the step-0 accuracy) or null",
        )
        check(
            self.stop_retain_drop is None or 0.0 <= self.stop_retain_drop < 1.0,
            "stop_retain_drop",
            "must be within [0, 1) (a drop in accuracy) or null",
        )
        check(
            not self.stop_restore or self.stop_retain_drop is not None,
            "stop_restore",
            "restores the weights of the last step within stop_retain_drop; set stop_retain_drop or drop it",
        )
        check(self.stop_backtrack >= 0, "stop_backtrack", "must be >= 0 (0: the first crossing ends the run)")
        check(
            self.stop_backtrack == 0 or self.stop_restore,
            "stop_backtrack",
            "puts a run back to its last step within stop_retain_drop; set stop_restore: true or drop it",
        )
        check(
            0.0 < self.stop_backtrack_factor < 1.0,
            "stop_backtrack_factor",
            "must be within (0, 1): the share of the rate kept after each crossing",
        )
        check(self.eval_every >= 0, "eval_every", "must be >= 0 (0 turns it off)")
        check_range(self.eval_every, "eval_every", 0, MAX_STEPS, " (0 turns it off)")
        check(
            self.lora is None or self.method != "rmu",
            "lora",
            "rmu picks what it trains (rmu_params); use lora: null",
        )
        check(
            not self.lora_merge or self.lora is not None,
            "lora_merge",
            "needs lora settings; set lora or drop lora_merge",
        )
        from frequnlearn.config.pretrain import TRACKERS

        for tracker in self.log_with:
            check(
                tracker in TRACKERS,
                "log_with",
                f"unknown tracker {tracker!r}; use some of {', '.join(TRACKERS)}",
            )
        for key in ("question_column", "answer_column", "id_column"):
            check(bool(getattr(self, key).strip()), key, "must name a column")
