"""Quantization attack: evaluate an unlearned model with its weights rounded to 8 or 4 bits.

Unlearning usually moves weights by less than a quantization step, so rounding can undo it. On a CPU
the rounding is torchao's weight-only quantization (`IntxWeightOnlyConfig`: round to nearest,
asymmetric min-max scale and zero point, per output channel for int8, per group of `group_size`
input weights for int4); on a GPU, bitsandbytes' 4-bit NormalFloat (NF4) as well. The linear maps of
the transformer blocks are quantized; embeddings (and GPT-2's output layer, tied to them) stay in
full precision, as weight-only schemes usually leave them.

GPT-2 in transformers implements its linear maps as `Conv1D` (weight stored as [in, out]); they are
turned into `nn.Linear` first, which computes the same function, because quantizers act on
`nn.Linear` only.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

from frequnlearn.errors import ConfigError


class QuantizationUnavailable(ConfigError):
    """The scheme needs a package or a device this machine lacks (the attack is skipped, not failed)."""


def describe(scheme: str, group_size: int) -> str:
    """The scheme in words, recorded beside every quantized score."""
    if scheme == "int8":
        return "int8 weight-only, asymmetric min-max, per output channel (torchao IntxWeightOnlyConfig)"
    if scheme == "int4":
        return (
            f"int4 weight-only, asymmetric min-max, groups of {group_size} input weights "
            "(torchao IntxWeightOnlyConfig)"
        )
    if scheme == "nf4":
        return "nf4 weight-only, blocks of 64 (bitsandbytes 4-bit NormalFloat, GPU)"
    raise ConfigError(f"attacks.quantize: unknown scheme {scheme!r}; choose int8, int4 or nf4")


def check_available(scheme: str) -> None:
    """Raise `QuantizationUnavailable` with the fix when `scheme` cannot run here."""
    if scheme in ("int8", "int4") and importlib.util.find_spec("torchao") is None:
        raise QuantizationUnavailable(
            f"attacks.quantize: {scheme} needs torchao; run `pip install 'frequnlearn[quant]'`"
        )
    if scheme == "nf4":
        import torch

        if not torch.cuda.is_available():
            raise QuantizationUnavailable("attacks.quantize: nf4 needs a CUDA GPU (bitsandbytes)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise QuantizationUnavailable(
                "attacks.quantize: nf4 needs bitsandbytes; run `pip install 'frequnlearn[quant-gpu]'`"
            )


def conv1d_to_linear(model: Any) -> Any:
    """Replace every transformers `Conv1D` in `model` (in place) by an `nn.Linear` with the same map."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = torch.nn.Linear(n_in, n_out, bias=child.bias is not None)
                linear.to(device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


def _block_filter(module: Any, fqn: str) -> bool:
    """Linear maps inside the transformer blocks; not the output layer (tied to the embedding)."""
    import torch

    return isinstance(module, torch.nn.Linear) and "lm_head" not in fqn


def quantize_model(model: Any, scheme: str, group_size: int = 32, model_dir: str | Path | None = None) -> Any:
    """A quantized copy of `model` (the original is left untouched).

    int8/int4 copy the model in memory; nf4 reloads it from `model_dir` (bitsandbytes quantizes while
    loading, on the GPU).
    """
    describe(scheme, group_size)  # raises for an unknown scheme
    check_available(scheme)
    if scheme == "nf4":
        return _load_nf4(model_dir)
    import torch
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_primitives import MappingType

    q = conv1d_to_linear(copy.deepcopy(model)).float().eval()
    if scheme == "int4":
        widths = {m.in_features for n, m in q.named_modules() if _block_filter(m, n)}
        bad = sorted(w for w in widths if w % group_size)
        if bad:
            raise ConfigError(
                f"attacks.group_size: {group_size} does not divide the input width {bad[0]} of a linear "
                "layer; choose a divisor (e.g. 32)"
            )
        config = IntxWeightOnlyConfig(
            weight_dtype=torch.int4, granularity=PerGroup(group_size), mapping_type=MappingType.ASYMMETRIC
        )
    else:
        config = IntxWeightOnlyConfig(
            weight_dtype=torch.int8, granularity=PerAxis(0), mapping_type=MappingType.ASYMMETRIC
        )
    quantize_(q, config, filter_fn=_block_filter)
    return q


def _load_nf4(model_dir: str | Path | None) -> Any:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if model_dir is None:
        raise ValueError("nf4 reloads the model from its directory; give model_dir")
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype="float32")
    return AutoModelForCausalLM.from_pretrained(
        str(model_dir), quantization_config=bnb, device_map="cuda", trust_remote_code=False
    ).eval()
