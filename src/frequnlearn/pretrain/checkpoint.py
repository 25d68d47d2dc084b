"""What a pretraining directory holds between runs: the run key, checkpoints, logs and the done marker.

A run is identified by its key: the corpus's content hash and every setting that changes the trained
weights (`RUNTIME_FIELDS` do not). Checkpoints record that key, so a run resumes only its own
checkpoints; the finished run's `records` marker and its run.json record it too, so a finished run is
reused only for the same settings and corpus, and a different one is refused with the settings that
differ.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from frequnlearn.config.base import to_dict
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import ConfigError
from frequnlearn.records import (
    STAGE_FILE,
    append_jsonl,
    read_json,
    stage_done,
    stage_key,
    write_json,
    write_jsonl,
)

# Fields that change speed, bookkeeping or the knowledge check but not the trained weights: a resumed
# run may change them. (The thread count is not one: it orders the CPU's sums, so a model trained with
# another count is another model.)
RUNTIME_FIELDS = (
    "log_every",
    "save_every",
    "keep_checkpoints",
    "log_with",
    "eval_every",
    "eval_attributes",
    "eval_per_group",
    "eval_batch_size",
    "prompt_format",
)
CHECKPOINTS = "checkpoints"  # the folder of a run directory that holds them
STATE_FILE = "trainer_state.json"


def trained_settings(cfg: PretrainConfig) -> dict[str, Any]:
    """The settings that decide the trained weights; the thread count as torch will use it (a config
    that pins none trains with torch's default, the machine's cores)."""
    import torch

    settings = {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_FIELDS}
    settings["num_threads"] = cfg.num_threads or torch.get_num_threads()
    return settings


def run_key(cfg: PretrainConfig, data_sha256: str) -> str:
    """The run's identity: the study's key of a pretraining stage on the same corpus and settings."""
    return stage_key("pretrain", data_sha256, trained_settings(cfg))


def check_other_run(where: Path, record: dict[str, Any], cfg: PretrainConfig, data_sha256: str) -> None:
    """Refuse to continue or return the run `record` (a checkpoint's or run.json's) unless it is this one."""
    theirs = {k: v for k, v in (record.get("config") or {}).items() if k not in RUNTIME_FIELDS}
    theirs["num_threads"] = theirs.get("num_threads") or "torch's default"
    mine = trained_settings(cfg)
    changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if changed:
        raise ConfigError(
            f"--out {where}: holds a pretraining run with other settings ({', '.join(changed)}); "
            "use another --out, or remove it to start over"
        )
    if record.get("data_sha256") != data_sha256:
        raise ConfigError(
            f"--out {where}: holds a pretraining run on other data (its corpus.jsonl differs from "
            "--data's); use another --out, or remove it to start over"
        )


def finished(out_dir: Path, cfg: PretrainConfig, data_sha256: str) -> bool:
    """Whether `out_dir` holds this run, finished; a finished run of other settings or data is refused.

    A caller (the study) may rewrite the marker with a key of its own; run.json still names the run.
    A run.json without a key was written by an earlier version: that run is trained again.
    """
    key = run_key(cfg, data_sha256)
    if stage_done(out_dir, key):
        return True
    if not (out_dir / STAGE_FILE).is_file() or not (out_dir / "run.json").is_file():
        return False
    record = read_json(out_dir / "run.json")
    if "key" not in record:
        return False
    if record["key"] == key:
        return True
    check_other_run(out_dir, record, cfg, data_sha256)
    return False


# ---------------------------------------------------------------- checkpoints


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    found = []
    if ckpt_dir.is_dir():
        for p in ckpt_dir.iterdir():
            m = re.fullmatch(r"step-(\d+)", p.name)
            if m and (p / STATE_FILE).is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def resumable(ckpt_dir: Path, cfg: PretrainConfig, data_sha256: str, main: bool) -> Path | None:
    """The newest checkpoint of this run that can be read whole; say which one, and why newer ones
    were not. A checkpoint of another run is refused."""
    key = run_key(cfg, data_sha256)
    saved = checkpoints(ckpt_dir)
    for _, path in reversed(saved):
        why = unreadable(path)
        if why is None:
            record = json.loads((path / STATE_FILE).read_text())
            if "key" not in record:
                why = "written by an earlier version, which did not record its run"
            elif record["key"] != key:
                check_other_run(ckpt_dir.parent, record, cfg, data_sha256)
        if why is not None:
            if main:
                print(f"checkpoint {path.name} is unreadable ({why}); trying an older one", file=sys.stderr)
            continue
        if main:
            print(f"resuming from checkpoint {path.name}", file=sys.stderr)
        return path
    if saved and main:
        print("no checkpoint is readable; training from step 0", file=sys.stderr)
    return None


def unreadable(path: Path) -> str | None:
    """Why the checkpoint `path` cannot be resumed from (a file missing, cut short or corrupt), or None.

    Checked before `load_state`, which would otherwise fail half way with the model already changed.
    """
    import torch

    try:
        json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE}: {err}"
    files = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pkl", ".pt", ".safetensors"))
    if not any(p.name.startswith(("model", "pytorch_model")) for p in files):
        return "no model weights"
    for file in files:
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file

                load_file(file)
            else:
                torch.load(file, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any failure to read means: not this checkpoint
            return f"{file.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None


def remove_partial_saves(ckpt_dir: Path) -> None:
    """Remove the temporary directories of saves cut by a kill."""
    if ckpt_dir.is_dir():
        for partial in ckpt_dir.glob(".step-*.tmp"):
            shutil.rmtree(partial, ignore_errors=True)


def commit_checkpoint(tmp: Path, ckpt_dir: Path, step: int, record: dict[str, Any], keep: int) -> None:
    """Write the trainer state into the saved `tmp`, move it into place, keep the newest `keep`."""
    write_json(tmp / STATE_FILE, record)
    final = ckpt_dir / f"step-{step:08d}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- logs


def _read_rows(path: Path, max_step: int) -> list[dict[str, Any]]:
    """Rows of a JSONL log up to `max_step`; a line cut by a kill is dropped."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                row = json.loads(line)
                if row.get("step", 0) <= max_step:
                    rows.append(row)
    return rows


class JsonlLog:
    """Append-only log that, on resume, keeps only the rows of steps already checkpointed."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled:
            write_jsonl(path, _read_rows(path, resume_step))

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            append_jsonl(self.path, row)
