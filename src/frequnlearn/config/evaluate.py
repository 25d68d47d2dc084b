"""Config of the `evaluate` stage: which metric families run on which probes, and how fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frequnlearn.config.base import check

QA_PROBES = ("question", "paraphrase")


@dataclass
class EvalConfig:
    """Per-item evaluation settings, read from the `evaluate:` section of a study file.

    `metrics` picks families registered in `evaluate.families` (`frequnlearn evaluate --help` lists
    them with what each needs).
    """

    # Metric families: prob (likelihood, rank, truth ratio), gen (greedy answer), tf (True/False probe), bio
    # (biography completion), utility (lm-eval tasks).
    metrics: list[str] = field(default_factory=lambda: ["prob", "gen", "tf", "bio"])
    # QA probes run for prob, gen and tf; items without a paraphrase skip that probe.
    probes: list[str] = field(default_factory=lambda: ["question", "paraphrase"])
    # How a question is written: plain, olmo, chat (the tokenizer's template) or a string with {question} and
    # {answer}.
    prompt_format: str = "plain"
    # Rows per forward pass, or "auto" (a token budget chosen from the device and its free memory).
    batch_size: int | Literal["auto"] = "auto"
    # Tokens generated greedily per answer.
    max_new_tokens: int = 24
    # Solved examples before each True/False query (alternating true and false statements).
    tf_shots: int = 3
    # Seed of the True/False shots, the bootstrap and the utility tasks.
    seed: int = 0
    # Bootstrap resamples over items for the summary's confidence intervals.
    n_boot: int = 1000
    # Confidence level of those intervals.
    ci: float = 0.95
    # What "known" means for a greedy answer (the one verdict everywhere): exact (the normalised
    # continuation starts with the whole normalised answer), contains (the whole answer appears in it:
    # chat models answer in a sentence) or rouge (ROUGE-L recall >= gen_threshold).
    known: str = "exact"
    # ROUGE-L recall threshold of the `rouge` rule (unused by `exact`).
    gen_threshold: float = 0.5
    # mia: share of an answer's tokens (the least likely ones, at least one) Min-K% and Min-K%++ average.
    mia_k: float = 0.2
    # extract: samples at temperature 1 a user draws (P(n samples give the answer)).
    extraction_samples: int = 10
    # lm-eval tasks of the utility family (local ones are in frequnlearn/evaluate/tasks/).
    utility_tasks: list[str] = field(default_factory=lambda: ["frequnlearn_capitals"])
    # Documents per utility task (None: all of them).
    utility_limit: int | None = None
    # Weights' dtype when the command loads the model (auto: float32 on CPU, the checkpoint's on GPU).
    dtype: str = "auto"
    # Device to evaluate on (null or auto: a GPU when there is one, else cpu).
    device: str | None = None

    def validate(self) -> None:
        from frequnlearn.evaluate.families import check_metrics

        check_metrics(self.metrics)
        check(len(self.metrics) > 0, "metrics", "name at least one metric family")
        for p in self.probes:
            check(p in QA_PROBES, "probes", f"unknown probe {p!r}; choose from {', '.join(QA_PROBES)}")
        check(self.batch_size == "auto" or self.batch_size >= 1, "batch_size", "must be >= 1 or 'auto'")
        check(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        check(self.tf_shots >= 0, "tf_shots", "must be >= 0")
        check(self.n_boot >= 0, "n_boot", "must be >= 0 (0 skips the confidence intervals)")
        check(0.0 < self.ci < 1.0, "ci", "must be between 0 and 1, e.g. 0.95")
        from frequnlearn.evaluate.known import KNOWN_RULES

        check(
            self.known in KNOWN_RULES,
            "known",
            f"unknown rule {self.known!r}; choose from {', '.join(KNOWN_RULES)}",
        )
        check(0.0 <= self.gen_threshold <= 1.0, "gen_threshold", "must be between 0 and 1")
        check(0.0 < self.mia_k <= 1.0, "mia_k", "must be in (0, 1], e.g. 0.2")
        check(self.extraction_samples >= 1, "extraction_samples", "must be >= 1")
        check(self.utility_limit is None or self.utility_limit >= 1, "utility_limit", "must be >= 1 or null")
