"""The columns of per-item evaluation rows: the contract every later stage reads (no heavy imports)."""

from __future__ import annotations

IDENTITY = [
    "model",
    "run_id",
    "step",
    "item_id",
    "person_id",
    "group",
    "attribute",
    "frequency",
    "bucket",
    "probe",
    "family",
    # False when a logit the row's metrics read was not finite; its metrics are then NaN (rank too).
    "finite",
]
PROB_METRICS = [
    "logprob",
    "logprob_per_token",
    "p_norm",
    "n_answer_tokens",
    "rank",
    "rank_correct",
    "truth_ratio",
    # Per-token log-prob of the true answer minus the best wrong candidate's (> 0: truth preferred).
    "margin",
]
# `known`: the one verdict of `evaluate.known` (1.0/0.0); rougeL_recall, exact, contains are metrics.
GEN_METRICS = ["generation", "known", "rougeL_recall", "exact", "contains"]
TF_METRICS = ["p_true", "p_false", "tf_correct"]
COLUMNS = IDENTITY + PROB_METRICS + GEN_METRICS + TF_METRICS
# Every numeric metric column (all but `generation`).
NUMERIC_METRICS = [c for c in PROB_METRICS + GEN_METRICS + TF_METRICS if c != "generation"]
