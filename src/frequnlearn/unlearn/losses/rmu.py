"""RMU: representation misdirection at one block, steering forget activations to a random direction."""

from __future__ import annotations

import torch

from frequnlearn.unlearn.losses.base import LossInputs, LossParams, register, require, token_mean


@register("rmu", "forget", needs=("hidden",))
def rmu(inp: LossInputs, p: LossParams) -> torch.Tensor:
    """L = mean over answer tokens of (1/H) ||h_l(x)_t - c u||^2.

    Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning"
    (arXiv 2403.03218): h_l is the output of block l (`rmu_layer`), u a random unit vector
    drawn once per run (uniform in [0, 1)^H, normalised), c the steering coefficient (`rmu_coeff`).
    Its retain term keeps h_l on retain inputs where the frozen model had it (`retain_loss: act`).
    As published, only the MLP weights of blocks l-2..l are trained (`rmu_params: mlp`).
    """
    require(inp, "rmu", "hidden", "steer")
    sq = (inp.hidden.float() - inp.steer.float()) ** 2
    return token_mean(sq.mean(-1), inp.mask)


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of transformer blocks (GPT-2 `transformer.h`, Llama `model.layers`, ...):
    the first ModuleList as long as the config's layer count."""
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"found no list of {n} transformer blocks in {type(model).__name__}")


def rmu_layer(model: torch.nn.Module, layer: int | None) -> int:
    """`layer`, checked against the model's depth; None picks the middle block."""
    from frequnlearn.errors import ConfigError

    n = len(decoder_blocks(model))
    if layer is None:
        return n // 2
    if not 0 <= layer < n:
        raise ConfigError(f"rmu_layer: {layer}, but the model has {n} blocks; choose 0..{n - 1}")
    return layer


def mlp_parameter_names(model: torch.nn.Module, layer: int) -> list[str]:
    """Parameters of the MLP sub-module (`mlp`) of blocks layer-2..layer: what RMU trains. WMDP trains
    only each MLP's output projection; its name differs per architecture, so the whole MLP is taken."""
    blocks = decoder_blocks(model)
    wanted = {id(p) for i in range(max(0, layer - 2), layer + 1) for p in blocks[i].mlp.parameters()}
    return [name for name, p in model.named_parameters() if id(p) in wanted]


def steering_vector(dim: int, coeff: float, seed: int) -> torch.Tensor:
    """c u with u uniform in [0, 1)^dim, normalised, drawn from `seed` alone (WMDP's control vector)."""
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    return u / u.norm() * coeff
