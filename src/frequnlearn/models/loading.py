"""Loading any Hugging Face causal LM (local directory, hub id, or a GGUF file) with its tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float32 if not torch.cuda.is_available() else "auto"
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise DataError(
            f"dtype: unknown torch dtype {dtype!r}; use auto, float32, bfloat16 or float16"
        ) from None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_local(name_or_path: str | Path) -> None:
    """A path-looking name that does not exist is a typo, not a hub id: say so before transformers does."""
    text = str(name_or_path)
    if text.startswith((".", "/", "~")) and not Path(text).expanduser().exists():
        raise DataError(f"--model {text}: no such directory")


def load_tokenizer(name_or_path: str | Path, gguf_file: str | None = None) -> Any:
    """Tokenizer with a pad token (the end-of-text token when the model has none)."""
    from transformers import AutoTokenizer

    _check_local(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
    except OSError as err:
        raise DataError(f"--model {name_or_path}: cannot load a tokenizer ({_first_line(err)})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str | None = None,
    gguf_file: str | None = None,
) -> Any:
    from transformers import AutoModelForCausalLM

    _check_local(name_or_path)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    except OSError as err:
        raise DataError(f"--model {name_or_path}: cannot load a causal LM ({_first_line(err)})") from None
    return model.to(device or default_device())


def load_model_and_tokenizer(
    name_or_path: str | Path, dtype: str = "auto", device: str | None = None, gguf_file: str | None = None
) -> tuple[Any, Any]:
    tok = load_tokenizer(name_or_path, gguf_file=gguf_file)
    model = load_model(name_or_path, dtype=dtype, device=device, gguf_file=gguf_file)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok
