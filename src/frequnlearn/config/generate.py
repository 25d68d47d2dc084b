"""Config of the `generate` stage: who the fictitious people are and how often each is seen."""

from __future__ import annotations

from dataclasses import dataclass, field

from frequnlearn.config.base import check, check_seed
from frequnlearn.records import ATTRIBUTES, FORGET_GROUPS, GROUPS, PRONOUNS


def group_sizes(n_people: int, fractions: dict[str, float]) -> dict[str, int]:
    """People per group: the largest-remainder rounding of `n_people * fraction`."""
    total = sum(fractions[g] for g in GROUPS)
    exact = {g: round(n_people * fractions[g] / total, 9) for g in GROUPS}
    sizes = {g: int(exact[g]) for g in GROUPS}
    left = n_people - sum(sizes.values())
    by_remainder = sorted(GROUPS, key=lambda g: (sizes[g] - exact[g], GROUPS.index(g)))
    for g in by_remainder[:left]:
        sizes[g] += 1
    return sizes


# Copies of one biography at most: a corpus of exposure x people documents must fit a disk and the
# memory that shuffles it (`data.generate.estimate` checks the product before any work).
MAX_EXPOSURE = 1_000_000


# What one document of corpus.jsonl takes: a biography line (about 340 bytes at six attributes) and a
# retain QA line, with room; one entry of the shuffled list of documents generation holds in memory.
BIO_BYTES, QA_BYTES, SLOT_BYTES = 400, 160, 40


def corpus_estimate(cfg: GenerateConfig) -> dict[str, int]:
    """Documents, corpus bytes and memory bytes a config makes, from the config alone: people x
    exposure biographies plus the retain people's QA. Memory: generation holds one entry per
    document, pretraining the whole corpus text."""
    sizes = group_sizes(cfg.n_people, cfg.group_fractions)
    n_forget = sum(sizes[g] for g in FORGET_GROUPS)
    if cfg.exposure_levels is None:
        bios = sizes["forget_high"] * cfg.high_exposure + cfg.n_people - sizes["forget_high"]
    else:
        mean = sum(cfg.exposure_levels) / len(cfg.exposure_levels)
        bios = int(n_forget * mean) + cfg.n_people - n_forget
    qa = sizes["retain"] * len(cfg.attributes)
    share = len(cfg.attributes) / len(ATTRIBUTES)
    corpus = int(bios * BIO_BYTES * share) + qa * QA_BYTES
    return {
        "documents": bios + qa,
        "corpus_bytes": corpus,
        "memory_bytes": max(corpus, (bios + qa) * SLOT_BYTES),
    }


def memory_limit() -> int:
    """Bytes of memory available to this process now (MemAvailable), else the machine's physical memory."""
    import os

    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def _default_fractions() -> dict[str, float]:
    return {"retain": 0.5, "forget_high": 1 / 6, "forget_low": 1 / 6, "utility": 1 / 6}


@dataclass
class GenerateConfig:
    """Setting A of the protocol: people, their groups, and the exposure count of each biography.

    Fields:
      seed: drives every random choice; same config and seed give byte-identical files.
      n_people: number of fictitious people (the paper used 10,000).
      group_fractions: share of people per group (retain, forget_high, forget_low, utility);
        must sum to 1 and give every group at least one person.
      high_exposure: K, the number of biography copies of each forget_high person; everyone else
        has one copy. Used when `exposure_levels` is not set.
      exposure_levels: an exposure grid (e.g. [1, 2, 4, 8, 16, 32]) instead of the two levels: the
        forget groups' people are spread evenly over the levels, forget_low taking the lower and
        forget_high the upper ones; retain and utility keep one copy.
      n_candidates: wrong answers per question for ranking-based evaluation, each stated in the
        corpus within a factor of 2 as often as the true answer (preferably other people's answers of
        the same exposure); an item whose attribute has too few such values gets fewer, and the
        manifest counts those items under `candidates_short`.
      attributes: which attributes the biographies state and the questions ask about.
      n_templates: use only the first n sentence templates of each attribute (null: all); fewer
        templates make biographies easier to learn for tiny models.
      paraphrase: which paraphrased question (index into each attribute's list) fills `paraphrase`.
      pronoun_weights: relative frequency of each pronoun among the people.
    """

    seed: int = 0
    n_people: int = 300
    group_fractions: dict[str, float] = field(default_factory=_default_fractions)
    high_exposure: int = 10
    exposure_levels: list[int] | None = None
    n_candidates: int = 9
    attributes: list[str] = field(default_factory=lambda: list(ATTRIBUTES))
    n_templates: int | None = None
    paraphrase: int = 0
    pronoun_weights: dict[str, float] = field(default_factory=lambda: {"he": 0.45, "she": 0.45, "they": 0.1})

    def validate(self) -> None:
        from frequnlearn.data.pools import load_pools
        from frequnlearn.data.templates import min_templates, n_paraphrases

        check_seed(self.seed, "seed")
        check(self.n_people >= len(GROUPS), "n_people", f"must be at least {len(GROUPS)} (one per group)")
        pools = load_pools()
        limit = pools.name_capacity // 10
        check(self.n_people <= limit, "n_people", f"the name pools allow at most {limit} people")

        fractions = self.group_fractions
        missing = [g for g in GROUPS if g not in fractions]
        unknown = [g for g in fractions if g not in GROUPS]
        check(not unknown, "group_fractions", f"unknown group {unknown}; groups are {', '.join(GROUPS)}")
        check(
            not missing,
            "group_fractions",
            f"missing {missing}; give a fraction for each of {', '.join(GROUPS)}",
        )
        check(all(f > 0 for f in fractions.values()), "group_fractions", "every fraction must be > 0")
        total = sum(fractions.values())
        check(abs(total - 1) <= 1e-3, "group_fractions", f"fractions must sum to 1, they sum to {total:.4g}")
        sizes = group_sizes(self.n_people, fractions)
        empty = [g for g, n in sizes.items() if n == 0]
        check(
            not empty,
            "n_people",
            f"{self.n_people} people leave group {empty[0] if empty else ''} empty; raise n_people",
        )

        check(self.high_exposure >= 1, "high_exposure", "must be >= 1 (copies of each biography)")
        check(
            self.high_exposure <= MAX_EXPOSURE,
            "high_exposure",
            f"must be <= {MAX_EXPOSURE} (copies of each biography), got {self.high_exposure}",
        )
        if self.exposure_levels is not None:
            levels = self.exposure_levels
            check(len(levels) > 0, "exposure_levels", "must list at least one level, or be null")
            check(all(x >= 1 for x in levels), "exposure_levels", "every exposure must be >= 1")
            check(
                all(x <= MAX_EXPOSURE for x in levels),
                "exposure_levels",
                f"every exposure must be <= {MAX_EXPOSURE} (copies of each biography), got {levels}",
            )
            check(len(set(levels)) == len(levels), "exposure_levels", "levels must be distinct")
            n_forget = sum(sizes[g] for g in FORGET_GROUPS)
            check(
                n_forget >= len(levels),
                "exposure_levels",
                f"{len(levels)} levels but only {n_forget} forget-group people; raise n_people or use fewer levels",
            )

        check(len(self.attributes) > 0, "attributes", f"name at least one of {', '.join(ATTRIBUTES)}")
        estimate, limit = corpus_estimate(self), memory_limit()
        if estimate["memory_bytes"] > limit:
            from frequnlearn.records import human_bytes

            key = "high_exposure" if self.exposure_levels is None else "exposure_levels"
            check(
                False,
                key,
                f"{self.n_people} people at these exposures make about {estimate['documents']:,} documents, "
                f"a corpus of about {human_bytes(estimate['corpus_bytes'])} that needs about "
                f"{human_bytes(estimate['memory_bytes'])} of memory, above the {human_bytes(limit)} available; "
                "lower it or n_people",
            )
        bad = [a for a in self.attributes if a not in ATTRIBUTES]
        check(not bad, "attributes", f"unknown attribute {bad}; allowed: {', '.join(ATTRIBUTES)}")
        check(len(set(self.attributes)) == len(self.attributes), "attributes", "an attribute is listed twice")

        check(self.n_candidates >= 1, "n_candidates", "must be >= 1")
        for attr in self.attributes:
            if attr == "birth_date":
                continue
            most = len(pools.values(attr)) - 1
            check(
                self.n_candidates <= most,
                "n_candidates",
                f"{attr} has only {most + 1} distinct values, so at most {most} wrong answers",
            )

        most = min_templates(self.attributes)
        if self.n_templates is not None:
            check(1 <= self.n_templates <= most, "n_templates", f"must be between 1 and {most}, or null")
        n_para = n_paraphrases(self.attributes)
        check(0 <= self.paraphrase < n_para, "paraphrase", f"must be an index from 0 to {n_para - 1}")

        unknown = [p for p in self.pronoun_weights if p not in PRONOUNS]
        check(not unknown, "pronoun_weights", f"unknown pronoun {unknown}; allowed: {', '.join(PRONOUNS)}")
        weights = self.pronoun_weights.values()
        check(
            all(w >= 0 for w in weights) and sum(weights) > 0,
            "pronoun_weights",
            "weights must be >= 0, not all 0",
        )
