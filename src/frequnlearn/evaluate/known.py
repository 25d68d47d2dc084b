"""The one definition of knowing an answer, shared by pretraining's knowledge check, the study's
baseline "known" selection, generation accuracy in trajectories and the misalignment verdicts.

Default (`exact`): the normalised greedy continuation, cut at the first newline or end-of-text,
starts with the whole normalised answer (case, punctuation, whitespace and a leading article
normalised). ROUGE-L recall is kept as a reported metric only: for "City, ST" answers a wrong city
in the right state already scores 0.5. `rouge` (recall >= a threshold) stays selectable so that
older results can be reproduced, and every report names the rule it used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from frequnlearn import names
from frequnlearn.errors import ConfigError
from frequnlearn.text import normalize, normalize_value

KnownRule = Callable[[str, str, float], bool]


class _Tokenizer:
    """Word tokenizer for rouge_score: its default one drops every non-ASCII letter ("Zürich" -> "z rich")."""

    def tokenize(self, text: str) -> list[str]:
        return normalize(text).split()


_SCORER: Any = None


def _rouge() -> Any:
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return _SCORER


def rouge_recall(continuation: str, answer: str) -> float:
    """ROUGE-L recall of the answer's words in the continuation (a metric, not the verdict)."""
    return float(_rouge().score(answer, continuation)["rougeL"].recall)


def _exact_rule(continuation: str, answer: str, threshold: float) -> bool:
    cont, ans = normalize_value(continuation), normalize_value(answer)
    return bool(ans) and (cont == ans or cont.startswith(ans + " "))


def _contains_rule(continuation: str, answer: str, threshold: float) -> bool:
    """The whole normalised answer appears as whole words anywhere in the continuation: for chat models
    that answer in a sentence ("The capital of Chile is Santiago."). A wrong city in the right state
    still fails, because the whole value must appear."""
    cont, ans = f" {normalize(continuation)} ", normalize_value(answer)
    return bool(ans) and f" {ans} " in cont


def _rouge_rule(continuation: str, answer: str, threshold: float) -> bool:
    return rouge_recall(continuation, answer) >= threshold


# The registry is the only list of rule names (`evaluate.known` is validated against it).
KNOWN_RULES: dict[str, KnownRule] = names.table(names.KNOWN_RULE)
KNOWN_RULES.update({"exact": _exact_rule, "contains": _contains_rule, "rouge": _rouge_rule})


def check_rule(rule: str) -> None:
    """Stop with one line naming the choices unless `rule` is a registered rule."""
    if rule not in KNOWN_RULES:
        raise ConfigError(f"known: unknown rule {rule!r}; choose from {', '.join(KNOWN_RULES)}")


def is_known(continuation: str, answer: str, rule: str = "exact", threshold: float = 0.5) -> bool:
    """Whether a generated continuation (already cut at newline/end-of-text) gives `answer`.

    `threshold` is read by the `rouge` rule only (`evaluate.gen_threshold`).
    """
    return KNOWN_RULES[rule](continuation, answer, threshold)
