"""Loading any Hugging Face causal LM (local directory, hub id, or a GGUF file) with its tokenizer.

Nothing a model directory ships as Python runs: every load passes `trust_remote_code=False`, and a
local directory whose config names custom code (`auto_map`) is refused before transformers sees it.
A model argument that looks like a local path and does not exist fails at once, without the hub
retries a mistyped path would otherwise cost.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError


def pad_id_of(tokenizer: Any) -> int:
    """The id that pads a batch: the tokenizer's pad token, else end-of-text (GPT-2 has no pad token)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


def max_positions(model: Any) -> int | None:
    """The longest sequence the model's position table holds, when its config says (None: no limit known)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# Files any of which a saved tokenizer leaves in its directory.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")


def resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float32 if not torch.cuda.is_available() else "auto"
    found = getattr(torch, str(dtype), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise DataError(
            f"dtype: {dtype!r} is not a floating-point torch dtype, so it cannot hold model weights; "
            "use auto, float32, bfloat16 or float16"
        )
    return found


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """The device to load onto; one that this torch build or machine lacks is a one-line error."""
    import torch

    if device in (None, "auto"):
        return default_device()
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise DataError(f"device: {device!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device: {device} but this torch has no usable CUDA GPU; use device=cpu or auto")
    if kind == "cuda" and torch.device(device).index is not None:
        if torch.device(device).index >= torch.cuda.device_count():
            raise DataError(
                f"device: {device} but only {torch.cuda.device_count()} GPU(s) are visible; use cuda:0 or auto"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DataError(f"device: {device} but MPS is not available here; use device=cpu or auto")
    return device


# A hub id: NAME or OWNER/NAME of letters, digits, '_', '-' and '.'.
_HUB_ID = re.compile(r"[\w.-]{1,96}(/[\w.-]{1,96})?")


def looks_local(text: str) -> bool:
    """Whether a model argument names a local path rather than a hub id: it starts with '.', '/' or
    '~', holds a backslash or more than one '/', cannot be a hub id, or its folder part exists here
    (`runs/modell` beside an existing `runs/`)."""
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    if not _HUB_ID.fullmatch(text) or ".." in text or "--" in text:
        return True
    parent = Path(text).parent
    return str(parent) != "." and parent.is_dir()


def _check_local(name_or_path: str | Path) -> None:
    """A path-looking name that does not exist is a typo, not a hub id: say so before transformers
    spends its retries on the hub; a local directory that names custom code is refused."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    if not local.exists():
        if looks_local(text):
            raise DataError(f"--model {text}: no such directory; give a saved model directory or a hub id")
        return
    if local.is_dir():
        check_no_custom_code(local, text)


# The files of a model directory that may name Python code to import (`auto_map`).
CODE_NAMING_FILES = ("config.json", "tokenizer_config.json", "processor_config.json")


def check_no_custom_code(directory: Path, name: str | None = None) -> None:
    """Refuse a model directory whose config names its own Python code: loading it would run that
    code, which this tool never does on its own."""
    for file in CODE_NAMING_FILES:
        try:
            config = json.loads((directory / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = config.get("auto_map") if isinstance(config, dict) else None
        if not auto_map:
            continue
        refs = [
            v for value in dict(auto_map).values() for v in (value if isinstance(value, list) else [value])
        ]
        modules = sorted({str(r).split("--")[-1].rsplit(".", 1)[0] + ".py" for r in refs if r})
        raise DataError(
            f"--model {name or directory}: its {file} names custom code ({', '.join(modules)}) that loading "
            "would run; frequnlearn never runs a model's own code: read it, and if you trust it, load the "
            "model yourself with trust_remote_code=True and save it as a standard architecture"
        )


def _custom_code_error(name: Any, err: BaseException) -> DataError | None:
    """transformers' refusal of a hub repository's custom code, as one line (None: another error)."""
    text = str(err)
    if "custom code" not in text and "trust_remote_code" not in text:
        return None
    return DataError(
        f"--model {name}: the repository contains custom code that loading would run; frequnlearn never "
        "runs a model's own code: read it, and if you trust it, load the model yourself with "
        "trust_remote_code=True and save it as a standard architecture"
    )


def load_tokenizer(
    name_or_path: str | Path, gguf_file: str | None = None, revision: str | None = None
) -> Any:
    """Tokenizer with a pad token (the end-of-text token when the model has none); `revision` is a hub
    branch, tag or commit (e.g. a Pythia checkpoint's `step143000`)."""
    from transformers import AutoTokenizer

    _check_local(name_or_path)
    local = Path(str(name_or_path)).expanduser()
    if local.is_dir() and not gguf_file and not any((local / f).is_file() for f in TOKENIZER_FILES):
        raise DataError(
            f"--model {name_or_path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); save the "
            "tokenizer beside the weights (tokenizer.save_pretrained(DIR))"
        )
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    if revision:
        kwargs["revision"] = revision
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False, **kwargs)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise _custom_code_error(name_or_path, err) or DataError(
            f"--model {name_or_path}: cannot load a tokenizer ({_first_line(err)})"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
) -> Any:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    _check_local(name_or_path)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype), "trust_remote_code": False}
    target = resolve_device(device)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if revision:
        kwargs["revision"] = revision
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    except OSError as err:
        raise DataError(f"--model {name_or_path}: cannot load a causal LM ({_first_line(err)})") from None
    except (SafetensorError, RuntimeError, EOFError, ValueError) as err:
        custom = _custom_code_error(name_or_path, err)
        if custom is not None:
            raise custom from None
        # A truncated or corrupted weight file (a copy cut short, a save that was killed).
        raise DataError(
            f"--model {name_or_path}: the weight files are unreadable or incomplete ({_first_line(err)}); "
            "copy or save the model again"
        ) from None
    return model.to(target)


def load_model_and_tokenizer(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
) -> tuple[Any, Any]:
    tok = load_tokenizer(name_or_path, gguf_file=gguf_file, revision=revision)
    model = load_model(name_or_path, dtype=dtype, device=device, gguf_file=gguf_file, revision=revision)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok
