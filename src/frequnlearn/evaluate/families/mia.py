"""mia: membership inference scores of each answer (is this fact in what the model was trained on?).

Four reference-free scores of the answer tokens given the question, each oriented so that higher means
"more like a member" (seen in training):

  mia_loss   mean log pi(y_t | x, y_<t)                                   (Yeom et al. 2018)
  mia_zlib   mia_loss / zlib-compressed length of the answer in bytes     (Carlini et al. 2021)
  mia_mink   mean of the lowest k% of the token log-probs                 (Shi et al. 2024, Min-K%)
  mia_minkpp mean of the lowest k% of (log pi_t(y_t) - mu_t) / sigma_t    (Zhang et al. 2025, Min-K%++)

with mu_t and sigma_t^2 the mean and variance of log pi_t(v) for v drawn from the model's own
next-token distribution pi_t, and k = `evaluate.mia_k` (at least one token). A score alone says little;
`mia_auc` turns the scores of a set (e.g. forget items) against a set the model never saw (the
never-learned oracle's people) into an AUC: 0.5 when they cannot be told apart.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from frequnlearn.evaluate.families.base import Context, Family, Probe, check_lengths, register_family

SCORES = ("mia_loss", "mia_zlib", "mia_mink", "mia_minkpp")


@register_family(
    "mia",
    probes=("question", "paraphrase"),
    columns=dict.fromkeys(SCORES, float),
    help="membership inference scores of the answer: loss, zlib, Min-K%, Min-K%++ (higher: member)",
)
class MembershipInference(Family):
    def prepare(self, probes: Sequence[Probe], ctx: Context) -> None:
        lengths = {p.item.item_id: len(p.prompt_ids) + len(p.answer_ids) for p in probes}
        check_lengths(ctx, lengths, "scoring", "shorten the question or answer")

    def score(self, probes: Sequence[Probe], state: None, ctx: Context) -> list[dict[str, Any]]:
        from frequnlearn.evaluate.answer_stats import answer_stats

        pairs = [(p.prompt_ids, p.answer_ids) for p in probes]
        stats = answer_stats(ctx.model, pairs, ctx.pad_id, ctx.cfg.batch_size, ctx.budget)
        out: list[dict[str, Any]] = []
        for p, s in zip(probes, stats):
            if not s.finite:
                out.append({"finite": False})
                continue
            out.append(mia_scores(s.logp, s.mu, s.var, p.answer, ctx.cfg.mia_k))
        return out


def mia_scores(logp: np.ndarray, mu: np.ndarray, var: np.ndarray, text: str, k: float) -> dict[str, float]:
    """The four scores of one answer from its per-token log-probs and next-token moments."""
    logp = np.asarray(logp, dtype=np.float64)
    n_low = max(1, math.floor(len(logp) * k + 1e-9))
    mean_ll = float(logp.mean())
    # Min-K%++'s normalisation; a flat distribution (sigma 0) gives 0, not 0/0.
    z = (logp - mu) / np.sqrt(np.maximum(var, 1e-12))
    return {
        "mia_loss": mean_ll,
        "mia_zlib": mean_ll / len(zlib.compress(text.encode("utf-8"))),
        "mia_mink": float(np.sort(logp)[:n_low].mean()),
        "mia_minkpp": float(np.sort(z)[:n_low].mean()),
    }


def mia_auc(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """P(a member scores above a non-member) + P(tie)/2: the ROC AUC of the score as a membership test,
    via the Mann-Whitney U statistic (NaN scores dropped; NaN when either side is empty).

    1.0: every member scores above every non-member; 0.5: indistinguishable; below 0.5: the members look
    less familiar than facts never seen (an over-unlearned forget set stands out that way too).
    """
    from scipy.stats import mannwhitneyu

    x = np.asarray(members, dtype=np.float64)
    y = np.asarray(nonmembers, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return math.nan
    return float(mannwhitneyu(x, y, alternative="two-sided").statistic / (len(x) * len(y)))


def mia_aucs(members: Any, reference: Any, probe: str = "question") -> dict[str, float]:
    """`mia_auc` of every score, from two frames of evaluation rows (family "mia", one probe)."""

    def scores(frame: Any, col: str) -> Any:
        rows = frame[(frame["family"] == "mia") & (frame["probe"] == probe)]
        return rows[col].to_numpy()

    return {col: mia_auc(scores(members, col), scores(reference, col)) for col in SCORES}
