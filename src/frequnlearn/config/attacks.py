"""Config of the robustness stages (`attacks:` in a study file): does unlearned knowledge come back?

Everything is off by default, so a study file without this section runs as before. `oracle` pretrains
a never-learned reference per model (the same recipe and seed on the corpus without the studied
levels' biographies); `relearn` fine-tunes each unlearned model on related data for `relearn_steps`
steps; `quantize` evaluates each unlearned model with its weights rounded to fewer bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from frequnlearn.config.base import check

RELEARN_KINDS = ("targeted", "benign", "bio")
QUANT_SCHEMES = ("int8", "int4", "nf4")


@dataclass
class AttacksConfig:
    # Pretrain and score a never-learned reference model for every pretrained model (synthetic setting).
    oracle: bool = False
    # targeted: half of the forget items' QA, the other half measured; benign: QA of people who were
    # never unlearned; bio: one-sentence biographies of another attribute (`relearn_attribute`) of
    # the forget people.
    relearn: list[Literal["targeted", "benign", "bio"]] = field(default_factory=list)
    # Measured after each of these numbers of fine-tuning steps (one run up to the largest).
    relearn_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    # Learning rate of the relearning fine-tune.
    relearn_lr: float = 1e-4
    # Examples per relearning step.
    relearn_batch_size: int = 8
    # The bio attack's attribute; null: the first generated attribute other than the studied one.
    relearn_attribute: str | None = None
    # int8 / int4: weight-only round-to-nearest on the CPU (torchao, `pip install frequnlearn[quant]`);
    # nf4: bitsandbytes 4-bit NormalFloat, on a GPU only.
    quantize: list[Literal["int8", "int4", "nf4"]] = field(default_factory=list)
    # Weights per int4 scale (int8 has one scale per output channel).
    group_size: int = 32
    # Which selections of unlearning runs are attacked (attacks measure items known before unlearning).
    selections: list[Literal["known", "all"]] = field(default_factory=lambda: ["known"])

    @property
    def active(self) -> bool:
        """Whether any attack runs on the unlearned models (the oracle alone attacks nothing)."""
        return bool(self.relearn or self.quantize)

    def validate(self) -> None:
        check(len(set(self.relearn)) == len(self.relearn), "relearn", "list each attack once")
        check(len(set(self.quantize)) == len(self.quantize), "quantize", "list each scheme once")
        check(bool(self.relearn_steps), "relearn_steps", "give at least one step count, e.g. [1, 2, 4, 8]")
        check(all(k >= 1 for k in self.relearn_steps), "relearn_steps", "step counts must be >= 1")
        check(self.relearn_lr > 0, "relearn_lr", "must be > 0")
        check(self.relearn_batch_size >= 1, "relearn_batch_size", "must be >= 1")
        check(self.group_size >= 1, "group_size", "must be >= 1, e.g. 32")
        check(bool(self.selections), "selections", "give known, all or both")


def check_against_study(cfg: Any) -> None:
    """Cross-section checks of a `StudyConfig`: what the attacks need from the study and its data."""
    attacks, setting, attribute = cfg.attacks, cfg.study.setting, cfg.study.attribute
    attributes = list(cfg.generate.attributes)
    if attacks.oracle:
        check(
            setting == "synthetic", "attacks.oracle", "needs setting: synthetic (it pretrains from scratch)"
        )
    if attacks.oracle or attacks.active:
        check(
            {"prob", "gen"} <= set(cfg.evaluate.metrics),
            "attacks",
            "recovery is judged by the prob and gen families; add both to evaluate.metrics",
        )
    if "bio" in attacks.relearn:
        check(
            setting == "synthetic", "attacks.relearn", "bio needs setting: synthetic (generated biographies)"
        )
        other = bio_attribute(attacks, attribute, attributes)
        check(
            other is not None and other in attributes and other != attribute,
            "attacks.relearn_attribute",
            f"must be a generated attribute other than the studied {attribute!r}: one of "
            f"{[a for a in attributes if a != attribute]}",
        )


def bio_attribute(attacks: AttacksConfig, attribute: str | None, attributes: list[str]) -> str | None:
    """The attribute whose biography sentences the bio attack trains on."""
    if attacks.relearn_attribute is not None:
        return attacks.relearn_attribute
    return next((a for a in attributes if a != attribute), None)
