"""What a metric family is, the decorator that registers one by name, and the registry's lookups.

A family declares what it needs (`needs`), which probes it writes rows for (`probes`) and the metric
columns its rows carry (`columns`, each `float` or `str`); `evaluate_items` hands it the probes of the
run and writes one row per probe it scores. No heavy imports here or in a family's module: a family
imports torch inside its methods, so the column contract and the config check stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from frequnlearn import names
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.models.prompts import PromptFormat, encode_completion, encode_prompt
from frequnlearn.records import BioPrompt, QAItem

if TYPE_CHECKING:
    from frequnlearn.config.evaluate import EvalConfig

# What a family may need, with the words `frequnlearn evaluate --help` shows for it.
NEEDS = {
    "candidates": "wrong candidates per item",
    "bio_prompts": "--bio biography prompts",
    "verdict_tokens": "a tokenizer whose ' True' and ' False' differ in their first token",
    "lm_eval": "the lm-eval package",
}


@dataclass
class Probe:
    """One way of asking for one item's answer: a prompt, the true completion and wrong ones."""

    item: QAItem
    probe: str
    text: str
    answer: str
    prompt_ids: list[int]
    answer_ids: list[int]
    candidate_ids: list[list[int]] = field(default_factory=list)
    person_id: Any = None
    group: str | None = None
    attribute: str | None = None
    frequency: float | None = None


class Encoder:
    """Token ids of prompts and completions, each distinct text encoded once per call (candidates
    repeat across items and probes; the True/False prefix across all queries)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._prompts: dict[str, list[int]] = {}
        self._completions: dict[str, list[int]] = {}

    def prompt(self, text: str) -> list[int]:
        if text not in self._prompts:
            self._prompts[text] = encode_prompt(self.tokenizer, text)
        return self._prompts[text]

    def completion(self, text: str, item_id: str, what: str) -> list[int]:
        if text not in self._completions:
            self._completions[text] = encode_completion(self.tokenizer, text)
        ids = self._completions[text]
        if not ids:
            raise DataError(f"item {item_id}: {what} {text!r} encodes to no tokens; fix or drop the item")
        return ids


@dataclass
class Context:
    """What every family may read: the model and its tokenizer, the run's settings and inputs."""

    model: Any
    tokenizer: Any
    cfg: EvalConfig
    fmt: PromptFormat
    items: list[QAItem]
    bio_prompts: list[BioPrompt]
    enc: Encoder
    pad_id: int
    # Tokens per forward pass when `cfg.batch_size` is "auto"; the model's position limit (None: none).
    budget: int
    max_positions: int | None


def check_lengths(ctx: Context, seqs: dict[str, int], what: str, fix: str) -> None:
    """Stop before the model sees a sequence longer than its position table (an index error deep in torch)."""
    if ctx.max_positions is None or not seqs:
        return
    item_id, length = max(seqs.items(), key=lambda kv: kv[1])
    if length > ctx.max_positions:
        raise DataError(
            f"item {item_id}: {what} needs {length} positions but the model has {ctx.max_positions}; {fix}"
        )


class Family:
    """A metric family. The class attributes are set by `register_family`.

    A family that scores rows overrides `prepare` (encode, check lengths: before the model runs) and
    `score` (one metrics dict per probe, in order; the model is in eval mode). A family that adds
    probes for others to score (bio) overrides `add_probes`. A family with no columns writes no rows.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]]
    probes: ClassVar[tuple[str, ...]]
    columns: ClassVar[dict[str, type]]
    help: ClassVar[str]

    def add_probes(self, ctx: Context) -> list[Probe]:
        return []

    def prepare(self, probes: Sequence[Probe], ctx: Context) -> Any:
        return None

    def score(self, probes: Sequence[Probe], state: Any, ctx: Context) -> list[dict[str, Any]]:
        return []


FAMILIES: dict[str, type[Family]] = names.table(names.METRIC_FAMILY)


def register_family(
    name: str,
    *,
    needs: Sequence[str] = (),
    probes: Sequence[str] = (),
    columns: dict[str, type] | None = None,
    help: str,
) -> Callable[[type[Family]], type[Family]]:
    """Register a `Family` subclass under `name` (a value of `evaluate.metrics`).

    `needs`: keys of `NEEDS`; `probes`: the probe kinds it writes rows for (question, paraphrase,
    and kinds other families add, e.g. bio); `columns`: metric column -> float or str.
    """

    def deco(cls: type[Family]) -> type[Family]:
        for need in needs:
            if need not in NEEDS:
                raise TypeError(f"family {name}: unknown need {need!r}; known: {', '.join(NEEDS)}")
        for col, kind in (columns or {}).items():
            if kind not in (float, str):
                raise TypeError(f"family {name}: column {col} must be float or str, not {kind}")
        cls.name, cls.needs, cls.probes = name, tuple(needs), tuple(probes)
        cls.columns, cls.help = dict(columns or {}), help
        FAMILIES[name] = cls
        return cls

    return deco


def family_names() -> list[str]:
    """Registered family names in registration order: the only list of `evaluate.metrics` values."""
    return list(FAMILIES)


def check_metrics(names: Sequence[str]) -> None:
    """Stop with one line naming the choices unless every name is a registered family."""
    for name in names:
        if name not in FAMILIES:
            choices = ", ".join(family_names())
            raise ConfigError(f"metrics: unknown metric family {name!r}; choose from {choices}")


def metric_columns() -> dict[str, type]:
    """Every registered family's metric columns, in registration order (a column may be shared)."""
    out: dict[str, type] = {}
    for cls in FAMILIES.values():
        for col, kind in cls.columns.items():
            if out.setdefault(col, kind) is not kind:
                raise TypeError(
                    f"family {cls.name}: column {col} is {kind.__name__} here and {out[col].__name__} elsewhere"
                )
    return out
