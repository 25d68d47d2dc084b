"""The unlearning stage as `frequnlearn unlearn` and the study run it: one run from its item sets.

A run reads a loaded model and its sets (forget and retain for the losses, and the evaluated sets,
each with the role it carries in the trajectory) and writes, as one set into its output directory:
model/ (unless not kept), trajectory.parquet, log.jsonl, sets.json, utility.json (when the evaluation
asks for utility), run.json (the run record, whose `run` names the run's identity) and, for the study,
the done marker. Everything is built in a scratch directory beside it and moved in when the run ends
(also when the loss stops it: what it measured is kept), so an earlier run is never mixed in.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.errors import TrainingError
from frequnlearn.records import (
    STAGE_FILE,
    BioPrompt,
    QAItem,
    is_main_process,
    mark_done,
    output_set,
    write_json,
)

# What one run writes in its directory; replaced together, the done marker (or run.json) last. adapter/
# is LoRA's adapter beside its merged model/; frequnlearn-unlearn/ holds the trackers' logs (log_with).
RUN_FILES = (
    "model",
    "adapter",
    "frequnlearn-unlearn",
    "trajectory.parquet",
    "log.jsonl",
    "sets.json",
    "utility.json",
    "run.json",
    STAGE_FILE,
)


@dataclass
class UnlearnInputs:
    """What one unlearning run reads.

    `evaluated` lists (role, items) in evaluation order; an item in two lists keeps its first role.
    `identity` (run_id, model, size, n_params, seed, method, level, selection: what the run is)
    goes into run.json under `run`, where the report reads it; `info` adds other run-record fields.
    """

    model: Any
    tokenizer: Any
    forget: list[QAItem]
    retain: list[QAItem]
    evaluated: list[tuple[str, list[QAItem]]]
    identity: dict[str, Any]
    bios: Mapping[str, BioPrompt] = field(default_factory=dict)
    sets: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def run_unlearn(
    cfg: UnlearnConfig,
    ecfg: EvalConfig,
    inputs: UnlearnInputs,
    out_dir: str | Path,
    *,
    key: str | None = None,
    keep_model: bool = True,
) -> Any:
    """Unlearn `inputs.forget` and write the run into `out_dir` as one set; returns the loop's result.

    With `key` (the study's stage key) the done marker naming it is written, and moved in last.
    """
    from frequnlearn.evaluate.stage import role_evaluator
    from frequnlearn.evaluate.utility import write_utility
    from frequnlearn.unlearn import unlearn

    out_dir = Path(out_dir)
    ident = inputs.identity
    eval_fn = role_evaluator(
        inputs.evaluated, ecfg, cfg.prompt_format, inputs.bios, str(ident["model"]), str(ident["run_id"])
    )
    info = {**inputs.info, "run": ident, "sets": inputs.sets}
    last = STAGE_FILE if key is not None else "run.json"
    failure = None
    with output_set(out_dir, RUN_FILES, last, kind="unlearn", commit=is_main_process()) as scratch:
        write_json(scratch / "sets.json", inputs.sets)
        try:
            result = unlearn(
                inputs.model,
                inputs.tokenizer,
                inputs.forget,
                inputs.retain,
                cfg,
                scratch,
                eval_fn=eval_fn,
                info=info,
            )
        except TrainingError as err:
            failure = TrainingError(str(err).replace(str(scratch), str(out_dir)))
        if failure is None:
            write_utility(inputs.model, inputs.tokenizer, ecfg, scratch)
            if not keep_model:
                for weights in ("model", "adapter"):
                    shutil.rmtree(scratch / weights, ignore_errors=True)
            if key is not None:
                mark_done(scratch, key, ident)
    if failure is not None:
        raise failure
    return result
