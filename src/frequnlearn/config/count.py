"""Config of the `count` stage: how often each QA item's subject and answer occur in a corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from frequnlearn.config.base import check

CASE_VARIANTS = ("original", "lower", "upper", "title", "first_upper")


@dataclass
class CountConfig:
    """Counting settings, read from the `count:` section of a study file.

    `measure` picks what becomes an item's `frequency`:
      window   occurrences of subject and answer within `max_diff_tokens` of each other in one
               document (infini-gram's `A AND B`, as the paper counted), summed over case variants;
               the window is in tokens on a token index and in bytes on a byte-level one;
      document documents that contain both (any case variant of each);
      subject / object  occurrences of the subject or of the answer alone.
    The ground-truth backend ignores `measure`: it reads the exposure the generator recorded.
    """

    # A name registered in `frequency.registry` (`frequnlearn count --help` lists them).
    backend: str = "ground-truth"
    # What becomes an item's frequency: window, document, subject or object (as above).
    measure: Literal["window", "document", "subject", "object"] = "window"
    # JSONL corpus with a `text` field (infinigram-local and scan backends).
    corpus: str | None = None
    # Count only documents whose `kind` is listed; empty: every document. A generated corpus also
    # holds retain-group QA documents that name person and answer, so [bio] counts biographies only.
    kinds: list[str] = field(default_factory=list)
    # Window of the `window` measure, in the index's unit: tokens of a token index (infinigram-api,
    # infinigram-local with a tokenizer), UTF-8 bytes of a byte-level one (infinigram-local without a
    # tokenizer, scan). null: 100 tokens (infini-gram's and the paper's window) or 1000 bytes (a
    # whole generated biography: its farthest value starts about 350 bytes after the name).
    max_diff_tokens: int | None = None
    # Spellings summed over: original, lower, upper, title ("Ada Mae Lovelace"), first_upper.
    case_variants: list[str] = field(default_factory=lambda: ["original"])

    # infinigram-local: a byte-level index when no tokenizer is named, else one over its tokens.
    tokenizer: str | None = None
    # Where built indexes and API answers are kept; reused whenever corpus and options match.
    cache_dir: str = "~/.cache/frequnlearn"
    # Index build resources (None: every core); tiny corpora are always indexed with one core.
    cpus: int | None = None
    # Memory for an index build, in GB.
    mem_gb: int = 4

    # infinigram-api
    api_url: str = "https://api.infini-gram.io/"
    # The index the API counts in.
    api_index: str = "v4_dolma-v1_7_llama"
    # The API samples a clause that occurs more often than this (its count is then approximate).
    max_clause_freq: int = 50000
    # Most requests per second sent to the API.
    requests_per_second: float = 2.0
    # Retries of a failed API request.
    max_retries: int = 5
    # Seconds before the first retry, doubled for every next one.
    backoff_s: float = 1.0
    # Seconds one API request may take.
    timeout_s: float = 30.0

    # ground-truth: people.jsonl of the generated data (default: beside the QA table).
    people: str | None = None

    # Buckets written to each item's `bucket`: quantiles of the counts (tertiles for three names)
    # or explicit thresholds, each the inclusive upper bound of a bucket but the last.
    bucket_method: Literal["quantile", "thresholds"] = "quantile"
    # Bucket names, from the rarest to the most frequent.
    buckets: list[str] = field(default_factory=lambda: ["low", "medium", "high"])
    # The thresholds of bucket_method: thresholds, one fewer than the buckets, ascending.
    thresholds: list[float] = field(default_factory=list)

    def validate(self) -> None:
        from frequnlearn.frequency.registry import check_backend

        check_backend(self.backend)
        check(
            self.max_diff_tokens is None or self.max_diff_tokens >= 1,
            "max_diff_tokens",
            "must be >= 1 or null",
        )
        check(len(self.case_variants) >= 1, "case_variants", "name at least one, e.g. [original]")
        for v in self.case_variants:
            check(
                v in CASE_VARIANTS,
                "case_variants",
                f"unknown variant {v!r}; choose from {', '.join(CASE_VARIANTS)}",
            )
        check(self.cpus is None or self.cpus >= 1, "cpus", "must be >= 1 or null (every core)")
        check(self.mem_gb >= 1, "mem_gb", "must be >= 1")
        check(self.max_clause_freq >= 1, "max_clause_freq", "must be >= 1")
        check(self.requests_per_second > 0, "requests_per_second", "must be > 0")
        check(self.max_retries >= 0, "max_retries", "must be >= 0")
        check(self.backoff_s >= 0, "backoff_s", "must be >= 0")
        check(self.timeout_s > 0, "timeout_s", "must be > 0")
        check(len(self.buckets) >= 1, "buckets", "name at least one bucket, e.g. [low, medium, high]")
        check(len(set(self.buckets)) == len(self.buckets), "buckets", "bucket names must be distinct")
        if self.bucket_method == "thresholds":
            check(
                len(self.thresholds) == len(self.buckets) - 1,
                "thresholds",
                f"{len(self.buckets)} buckets need {len(self.buckets) - 1} thresholds, got {len(self.thresholds)}",
            )
            check(
                all(a < b for a, b in zip(self.thresholds, self.thresholds[1:])),
                "thresholds",
                "must be strictly increasing",
            )
        else:
            check(
                not self.thresholds,
                "thresholds",
                "only used with bucket_method: thresholds; remove it or set bucket_method",
            )
        if self.backend == "infinigram-api":
            check(
                self.measure != "document",
                "measure",
                "the infini-gram API counts windows, not documents; use window, subject or object, "
                "or backend infinigram-local",
            )
            check(not self.kinds, "kinds", "the API index has no document kinds; remove kinds")
