"""Loading any Hugging Face causal LM (local directory, hub id, or a GGUF file) with its tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError


def resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float32 if not torch.cuda.is_available() else "auto"
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise DataError(f"dtype: unknown torch dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(name_or_path: str | Path, gguf_file: str | None = None) -> Any:
    """Tokenizer with a pad token (the end-of-text token when the model has none)."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
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

    path = Path(str(name_or_path))
    if str(name_or_path).startswith((".", "/")) and not path.exists():
        raise DataError(f"--model {name_or_path}: no such directory")
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"--model {name_or_path}: cannot load a causal LM ({first})") from None
    return model.to(device or default_device())


def load_model_and_tokenizer(
    name_or_path: str | Path, dtype: str = "auto", device: str | None = None, gguf_file: str | None = None
) -> tuple[Any, Any]:
    tok = load_tokenizer(name_or_path, gguf_file=gguf_file)
    model = load_model(name_or_path, dtype=dtype, device=device, gguf_file=gguf_file)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok
