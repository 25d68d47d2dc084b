"""What a pretraining directory holds between runs: the run key, checkpoints, logs and the done marker.

A run is identified by its key: the corpus's content hash and every setting that changes the trained
weights (`RUNTIME_FIELDS` do not). Checkpoints record that key, so a run resumes only its own
checkpoints; the finished run's `records` marker and its run.json record it too, so a finished run is
reused only for the same settings and corpus, and a different one is refused with the settings that
differ.

A checkpoint is read without running code from it: the weights are safetensors, the optimizer, schedule
and random states are tensors and plain containers read with `torch.load(weights_only=True)`, and the
trainer state (JSON) records the run key and each file's size and sha256, which are checked before
anything heavy is read. A checkpoint of an earlier format (accelerate's pickles) is never opened.
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
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.records import (
    DiskFull,
    append_jsonl,
    check_free_space,
    file_digest,
    guard,
    is_disk_full,
    outputs_changed,
    read_json,
    say_once,
    share,
    stage_key,
    stage_record,
    write_bytes,
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
# Switches that change the trained weights only when on: they enter a run's key only then, so a run
# trained without them keeps the key it had before they existed (and stays reused).
KEYED_WHEN_ON = ("compile", "ensemble", "stop_known")
CHECKPOINTS = "checkpoints"  # the folder of a run directory that holds them
STATE_FILE = "trainer_state.json"
# The files of a checkpoint (format 2); the random states are one file per process.
CHECKPOINT_FORMAT = 2
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
REQUIRED_FILES = (MODEL_FILE, OPTIMIZER_FILE, SCHEDULER_FILE)


def rng_file(process_index: int) -> str:
    return f"rng-{process_index}.pt"


def trained_settings(cfg: PretrainConfig) -> dict[str, Any]:
    """The settings that decide the trained weights; the thread count as torch will use it (a config
    that pins none trains with torch's default, the machine's cores)."""
    import torch

    settings = _weight_settings(to_dict(cfg))
    settings["num_threads"] = cfg.num_threads or torch.get_num_threads()
    return settings


# The knowledge check's settings: runtime fields, except that with a knowledge target (`stop_known`)
# the check decides the step at which training ends, and so the weights.
CHECK_FIELDS = ("eval_every", "eval_attributes", "eval_per_group", "prompt_format")


def _weight_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A config's fields that decide the weights (`KEYED_WHEN_ON` switches only when on; the knowledge
    check's settings only under a knowledge target)."""
    decided_by_check = set(CHECK_FIELDS) if config.get("stop_known") else set()
    return {
        k: v
        for k, v in config.items()
        if (k not in RUNTIME_FIELDS or k in decided_by_check) and not (k in KEYED_WHEN_ON and not v)
    }


def run_key(cfg: PretrainConfig, data_sha256: str) -> str:
    """The run's identity: the study's key of a pretraining stage on the same corpus and settings."""
    return stage_key("pretrain", data_sha256, trained_settings(cfg))


def check_other_run(where: Path, record: dict[str, Any], cfg: PretrainConfig, data_sha256: str) -> None:
    """Refuse to continue or return the run `record` (a checkpoint's or run.json's) unless it is this one."""
    theirs = _weight_settings(record.get("config") or {})
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
    marker = stage_record(out_dir)
    if not marker:
        return False
    if marker.get("key") != key or marker.get("in_progress"):
        try:
            record = read_json(out_dir / "run.json") if (out_dir / "run.json").is_file() else {}
        except (DataError, ValueError):
            return False  # cut or damaged: the run is finished again from its checkpoints
        if not isinstance(record, dict) or "key" not in record:
            return False
        if record["key"] != key:
            check_other_run(out_dir, record, cfg, data_sha256)
            return False
    # This run, finished: trusted once the files its marker (its own or the study's) recorded match.
    why = outputs_changed(out_dir, marker)
    if why is not None:
        say_once(f"{out_dir}: {why}; training it again from its checkpoints")
    return why is None


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
    """The newest checkpoint of this run whose files are as it saved them, and say why newer ones were
    not (`load_state` says which one it resumed). A checkpoint of another run is refused. Nothing but
    JSON is read to decide."""
    key = run_key(cfg, data_sha256)
    saved = checkpoints(ckpt_dir)
    for _, path in reversed(saved):
        why = not_resumable(path, key)
        if why == "other run":
            check_other_run(ckpt_dir.parent, json.loads((path / STATE_FILE).read_text()), cfg, data_sha256)
            why = "saved under another run key"
        if why is not None:
            if main:
                print(
                    f"checkpoint {path.name} is not resumable ({why}); trying an older one", file=sys.stderr
                )
            continue
        return path
    if saved and main:
        print("no checkpoint is resumable; training from step 0", file=sys.stderr)
    return None


def not_resumable(path: Path, key: str) -> str | None:
    """Why the checkpoint `path` cannot be resumed from, or None; "other run" when it is another run's.

    Decided from the trainer state (JSON) alone: its run key first, then the size and sha256 it recorded
    for each file. A file that was cut, replaced (a planted pickle) or lost fails here, before
    anything is loaded, so a failed resume never leaves the model half changed.
    """
    try:
        record = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE}: {err}"
    if not isinstance(record, dict) or "key" not in record:
        return "written by an earlier version, which did not record its run"
    if record["key"] != key:
        return "other run"
    files = record.get("files")
    if record.get("format") != CHECKPOINT_FORMAT or not isinstance(files, dict):
        return "written by an earlier version as pickles, which are never loaded"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"{name} is not recorded"
    for name, want in sorted(files.items()):
        file = path / str(name)
        if "/" in str(name) or str(name).startswith(".") or not isinstance(want, dict):
            return f"it names {name!r}, which is not one of its files"
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != want.get("size"):
            return f"{name} holds {file.stat().st_size} bytes, {want.get('size')} when saved (cut short?)"
        if file_digest(file) != want.get("sha256"):
            return f"{name} changed since it was saved (its sha256 differs)"
    return None


def checkpoint_bytes(n_params: int) -> int:
    """About what one checkpoint takes on disk: float32 weights and AdamW's two moments."""
    return 3 * 4 * n_params


def check_space(out_dir: Path, n_params: int) -> None:
    """Refuse, before training, a disk without room for a new checkpoint beside the last and the model."""
    check_free_space(
        out_dir, 2 * checkpoint_bytes(n_params) + 4 * n_params, "pretraining (checkpoints and model)"
    )


def save_state(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, tmp: Path) -> None:
    """Write one process's part of a checkpoint into `tmp`: the main process the weights (safetensors),
    the optimizer, schedule and gradient scaler; every process its random states. Only tensors and
    plain containers are written, so `weights_only=True` reads them back."""
    import io

    import torch
    from safetensors.torch import save_model

    def put(obj: Any, name: str) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        write_bytes(tmp / name, buf.getvalue())

    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            try:
                save_model(unwrapped, str(guard(tmp / MODEL_FILE, follow=False)))
            except Exception as err:
                if is_disk_full(err):
                    raise DiskFull(tmp, 4 * sum(p.numel() for p in unwrapped.parameters())) from None
                raise
            put(optimizer.state_dict(), OPTIMIZER_FILE)
            put(scheduler.state_dict(), SCHEDULER_FILE)
            if accelerator.scaler is not None:
                put(accelerator.scaler.state_dict(), SCALER_FILE)
        put(_rng_state(), rng_file(accelerator.process_index))
    except DiskFull as err:
        # Named as the checkpoint it was to become; the earlier checkpoints are untouched.
        needed = err.needed + _size(tmp)
        if accelerator.is_main_process:
            _remove(tmp)
        raise DiskFull(tmp.with_name(tmp.name[1:].removesuffix(".tmp")), needed) from None


def load_state(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, path: Path) -> None:
    """Restore what `save_state` wrote. Every file is read (`weights_only=True`, safetensors) before any
    state changes; one that cannot be read that way although its hash matched was replaced on purpose:
    that is an error, never code run."""
    import torch
    from safetensors.torch import load_model

    def get(name: str) -> Any:
        return torch.load(path / name, map_location="cpu", weights_only=True)

    try:
        opt, sched = get(OPTIMIZER_FILE), get(SCHEDULER_FILE)
        scaler = get(SCALER_FILE) if (path / SCALER_FILE).is_file() else None
        rng_path = path / rng_file(accelerator.process_index)
        rng = get(rng_path.name) if rng_path.is_file() else None
    except Exception as err:  # noqa: BLE001 - an unpickling refusal, a cut file: any means not loadable
        raise DataError(
            f"checkpoint {path}: holds more than tensors and plain containers ({type(err).__name__}) "
            "although its hashes match, so it was replaced on purpose and is not loaded; remove it to "
            "start over"
        ) from None
    load_model(accelerator.unwrap_model(model), str(path / MODEL_FILE), device=str(accelerator.device))
    optimizer.load_state_dict(opt)
    scheduler.load_state_dict(sched)
    if scaler is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(scaler)
    if rng is not None:
        _set_rng_state(rng)
    if accelerator.is_main_process:
        print(f"resuming from checkpoint {path.name}", file=sys.stderr)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's (and CUDA's) random states as tensors, lists and numbers."""
    import random

    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove_partial_saves(ckpt_dir: Path) -> None:
    """Remove the temporary directories of saves cut by a kill."""
    if ckpt_dir.is_dir():
        for partial in ckpt_dir.glob(".step-*.tmp"):
            _remove(partial)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(guard(path, action="remove"), ignore_errors=True)


def commit_checkpoint(tmp: Path, ckpt_dir: Path, step: int, record: dict[str, Any], keep: int) -> None:
    """Write the trainer state, with the size and sha256 of every file saved, into `tmp`, move it into
    place, keep the newest `keep`."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(tmp.iterdir())
        if p.is_file() and p.name != STATE_FILE
    }
    write_json(tmp / STATE_FILE, {**record, "format": CHECKPOINT_FORMAT, "files": files})
    share(tmp)
    final = ckpt_dir / f"step-{step:08d}"
    _remove(final)
    os.replace(tmp, final)
    for _, old in checkpoints(ckpt_dir)[:-keep]:
        _remove(old)


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
