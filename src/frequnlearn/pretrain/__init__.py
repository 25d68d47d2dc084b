"""Pretraining a GPT-2 from scratch on a generated corpus: `data` (tokenizer, packing, batches),
`knowledge` (what the model answers), `checkpoint` (run key, checkpoints, logs, done marker), `loop`
(setup, `train_step`, the loop) and `cli`.

`pretrain` is imported on first use, so `frequnlearn --help` (which imports `pretrain.cli`) does not
pay for torch.
"""

from __future__ import annotations

from typing import Any

from frequnlearn.pretrain.checkpoint import RUNTIME_FIELDS, run_key

__all__ = ["RUNTIME_FIELDS", "pretrain", "run_key"]


def __getattr__(name: str) -> Any:
    if name == "pretrain":
        from frequnlearn.pretrain.loop import pretrain

        return pretrain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
