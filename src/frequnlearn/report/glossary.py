"""The report's terms, each defined once: the page lists those its text uses, and captions and notes
use the terms without defining them again."""

from __future__ import annotations

import re
from typing import Any

from frequnlearn.report.estimands import CALIPER_SD, LOGPROB_MARGIN, READ_LEVELS

KNOWN_RULES = {
    "exact": "the model's greedy answer starts with the whole answer (case and punctuation normalised)",
    "contains": "the model's greedy answer contains the whole answer (after normalising)",
    "rouge": "the ROUGE-L recall of the model's greedy answer against the answer is at least {threshold}",
}


def terms(evaluate: dict[str, Any]) -> list[tuple[str, str]]:
    """(term, definition) in reading order; `evaluate` is the study's evaluate config (the known rule)."""
    rule = KNOWN_RULES.get(str(evaluate.get("known", "exact")), KNOWN_RULES["exact"])
    rule = rule.format(threshold=evaluate.get("gen_threshold", 0.5))
    return [
        (
            "known",
            f"an item is known when {rule}. The `known` selection unlearns only items known before "
            "unlearning; `all` unlearns every item of the level and is descriptive.",
        ),
        (
            "level",
            "a group of people by how often their biographies appear in the pre-training corpus "
            "(forget_high: many copies, forget_low: one), or a point of an exposure grid.",
        ),
        (
            "target / control items",
            "each level's known items are split in two halves: the target half is "
            "unlearned, the control half of the same level never is; it measures what unlearning removes "
            "from facts it was not aimed at.",
        ),
        (
            "normalised accuracy",
            "the share of the items known at the first evaluated step that are still "
            "generated, so a level that starts lower does not look forgotten sooner.",
        ),
        (
            "normalised AUC",
            "the area under an item's or arm's normalised accuracy over the unlearning steps "
            "divided by the step budget: its mean level, 1 when nothing was forgotten.",
        ),
        ("net drop", "1 - normalised AUC of a level's target items, minus the same for its control items."),
        (
            "control-subtracted",
            "target minus control: what the untargeted items of the same level lost (or "
            "their share) is taken off, so drift that unlearning causes everywhere does not count.",
        ),
        (
            "frequency effect",
            "net drop of the high level minus net drop of the low level; below 0: "
            "frequent facts lost less, so they are harder to unlearn.",
        ),
        (
            "dose-response",
            "net drop against the level's pre-training frequency on a log axis, with its "
            "least-squares slope.",
        ),
        (
            "per e-fold",
            "a slope per e-fold changes by that much when the frequency (or the parameter count) "
            "is multiplied by e = 2.72: the least-squares slope against the natural logarithm.",
        ),
        (
            "matched on baseline margin",
            "high and low items paired one to one on their margin before "
            "unlearning (the true answer's log-probability per token minus the best wrong candidate's), "
            f"nearest pairs first, pairs more than {CALIPER_SD} pooled standard deviations apart dropped: the "
            "effect among items the model was equally sure of.",
        ),
        (
            "level of forgetting",
            "the target items' normalised generation accuracy, from 1 to 0; misalignment is read at the "
            f"first evaluated step at which it is {READ_LEVELS[0]} (and {READ_LEVELS[1]}) or less, never at a "
            "fixed step count, and a run that never gets there is censored (no estimate).",
        ),
        (
            "misalignment",
            "among items known at the start and no longer generated at a level of forgetting, "
            "the share the model still prefers by likelihood (the raw share; a control arm only where "
            "some control items were lost, and 0/0 is no estimate), in three views: still ranked first "
            f"among the candidates, truth ratio < 1, log-prob within {LOGPROB_MARGIN} nats per token of its "
            "start.",
        ),
        (
            "truth ratio",
            "the mean over wrong candidates of their length-normalised probability divided by "
            "the true answer's; below 1 the model prefers the truth.",
        ),
        (
            "95% CI",
            "the 95% interval over what varies: a hierarchical bootstrap that resamples generated "
            "worlds, pretraining seeds within a world, people within their world and level, and each "
            "person's items, one level at a time, and adds the levels' variances; a level with one "
            "unit (one seed, one world) is held fixed, as the n beside it says.",
        ),
        (
            "seed interval",
            "a 95% t-interval over the per-seed estimates (pretraining seeds), shown when "
            "there are two or more seeds.",
        ),
        ("supported", "the 95% interval lies on the side the paper predicts."),
        ("opposite", "the 95% interval lies on the other side."),
        ("not supported", "the interval lies on the other side, or nothing moved at all."),
        ("inconclusive", "the 95% interval covers zero."),
        ("no estimate", "the comparison point was not reached, nothing moved, or too few items to resample."),
        ("descriptive", "no verdict: an `all` selection, no control arm, or too few items per arm."),
        (
            "probe",
            "the wording an item is asked in: question (the trained wording), paraphrase (another "
            "wording), bio (completing a biography).",
        ),
        (
            "never-learned model",
            "the oracle: the same recipe and seed pretrained on the corpus without the "
            "studied levels' biographies; what it knows is what a model gets without having seen them.",
        ),
        (
            "lost / recovered",
            "an item is lost when it was known before unlearning and not right after; "
            "recovered when it is lost and known again after an attack.",
        ),
        (
            "forget quality",
            "the p-value of a two-sample Kolmogorov-Smirnov test between the forget items' "
            "truth ratios under the unlearned and the never-learned model (as in TOFU); high: they cannot "
            "be told apart.",
        ),
    ]


def _pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(w.strip()) for w in term.split("/")]
    return re.compile(r"(?<![\w-])(" + "|".join(words) + r")(?![\w-])", re.IGNORECASE)


def used(entries: list[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    """The entries whose term (or one of its `/` variants) occurs in `text`."""
    return [(t, d) for t, d in entries if _pattern(t).search(text)]
