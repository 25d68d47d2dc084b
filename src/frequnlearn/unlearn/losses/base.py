"""The loss contract: what a loss sees (`LossInputs`), its settings (`LossParams`) and the registry.

A loss is a pure function of tensors the loop prepares. It declares what it needs beyond the
policy's own token log-probabilities, so the loop prepares only that:

  ref_logp    log ref(y|x) of each forget row, precomputed once before training (NPO, DPO)
  ref_logits  the frozen model's logits on the loss's own rows (KL, UNDIAL)
  hidden      activations of block `rmu_layer` on the loss's rows, through a forward hook (RMU)
  ref_hidden  the frozen model's activations of that block (activation-matching retain term)
  refusal     the forget rows again, answered with the refusal text (IDK, DPO)
  alternate   the forget rows again, answered with an alternate answer sampled from the model
              before training (AltPO; see `altpo.alternate_answers`)
  frequency   each forget item's recorded frequency (the frequency-aware method)

Every call of one run also gets the same `state` dict, empty at the run's start: a loss that keeps
values across steps (PDU's dual variable) keeps them there, and its numbers are logged with each step.

Methods brought from outside register with the same decorator: `load_plugins` imports a file or module
that the user names (`frequnlearn unlearn --plugin`, `study.plugins`), and nothing else.

Conventions (x = prompt, y = answer, |y| = its masked length, B = examples in the batch):
log pi(y|x) is the sum of the masked token log-probs of one example.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from frequnlearn.errors import ConfigError

Need = Literal["ref_logp", "ref_logits", "hidden", "ref_hidden", "refusal", "alternate", "frequency"]
Kind = Literal["forget", "retain"]


@dataclass
class LossInputs:
    token_logp: torch.Tensor  # [B, L] log-prob of each target token
    mask: torch.Tensor  # [B, L] 1.0 where the loss counts
    targets: torch.Tensor | None = None  # [B, L] target token ids, aligned with token_logp
    logits: torch.Tensor | None = None  # [B, L, V] model logits aligned with token_logp
    ref_logp: torch.Tensor | None = None  # [B] reference log pi(y|x) over the same mask
    ref_logits: torch.Tensor | None = None  # [B, L, V] reference logits, same alignment
    hidden: torch.Tensor | None = None  # [B, L, H] activations at the target tokens' positions
    ref_hidden: torch.Tensor | None = None  # [B, L, H] the frozen model's, same positions
    steer: torch.Tensor | None = None  # [H] RMU's scaled random direction
    frequency: torch.Tensor | None = None  # [B] recorded frequency of each item
    refusal: LossInputs | None = None  # the same items answered with the refusal
    alternate: LossInputs | None = None  # the same items answered with their alternate answers
    state: dict[str, Any] | None = None  # one dict per run, shared by every call (kept across steps)


@dataclass(frozen=True)
class LossParams:
    """Every method's settings (the fields of `UnlearnConfig` with the same names)."""

    beta: float = 0.1
    gamma: float = 0.0
    wga_beta: float = 1.0
    satimp_beta1: float = 5.0
    satimp_beta2: float = 1.0
    undial_strength: float = 10.0
    freq_scale: float = 1.0
    freq_stop: bool = True
    dual_tol: float = 0.1
    dual_lr: float = 1.0
    dual_warmup: int = 0
    mpu_delta: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> LossParams:
        import dataclasses

        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


LossFn = Callable[[LossInputs, LossParams], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    name: str
    kind: Kind
    fn: LossFn
    needs: frozenset[str]


FORGET_LOSSES: dict[str, Loss] = {}
RETAIN_LOSSES: dict[str, Loss] = {}


def register(name: str, kind: Kind, needs: tuple[Need, ...] = ()) -> Callable[[LossFn], LossFn]:
    """Register `fn(LossInputs, LossParams) -> scalar` as the forget or retain term `name`.

    A name is registered once: a second function under a taken name (a plugin reusing `ga`) is refused,
    so no method is ever silently replaced. `needs` names what the loop prepares (see above).
    """
    if kind not in get_args(Kind):
        raise ValueError(f"loss {name!r}: kind must be forget or retain, not {kind!r}")
    unknown = [n for n in needs if n not in get_args(Need)]
    if unknown:
        raise ValueError(f"loss {name!r}: unknown need {unknown[0]!r}; known: {', '.join(get_args(Need))}")

    def deco(fn: LossFn) -> LossFn:
        table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
        old = table.get(name)
        if old is not None and _origin(old.fn) != _origin(fn):
            raise ConfigError(
                f"loss {name!r} ({kind}) is registered already by {old.fn.__module__}; choose another name"
            )
        table[name] = Loss(name, kind, fn, frozenset(needs))
        return fn

    return deco


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    return fn.__module__, fn.__qualname__


def loss_names(kind: Kind) -> list[str]:
    """The registered names: the only list of methods (config validation and CLI choices use it)."""
    return sorted(FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES)


def get_loss(name: str, kind: Kind) -> Loss:
    table = FORGET_LOSSES if kind == "forget" else RETAIN_LOSSES
    if name not in table:
        key = "method" if kind == "forget" else "retain_loss"
        raise ConfigError(f"{key}: unknown loss {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def sequence_logp(inp: LossInputs) -> torch.Tensor:
    """log pi(y|x) per example: the sum over masked tokens."""
    return (inp.token_logp * inp.mask).sum(-1)


def token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over every masked token of the batch (a causal LM's loss averages this way)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def require(inp: LossInputs, name: str, *fields: str) -> None:
    missing = [f for f in fields if getattr(inp, f) is None]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)}")


# ---------------------------------------------------------------- methods brought from outside

# spec -> what was imported for it: {"spec", "module", "path", "sha256", "losses"}
_PLUGINS: dict[str, dict[str, Any]] = {}


def load_plugins(specs: Sequence[str], key: str = "plugins") -> list[dict[str, Any]]:
    """Import each plugin once and return their records; `key` names the setting in error messages.

    A spec is a path to a Python file (it ends in .py or names an existing file) or the name of an
    importable module. Only what is named is imported: nothing is looked for in data or model
    directories. The plugin must register at least one loss with `register`; an import that fails
    stops with one line naming the plugin and the error.
    """
    out = []
    for spec in specs:
        if spec not in _PLUGINS:
            _PLUGINS[spec] = _import_plugin(spec, key)
        out.append(_PLUGINS[spec])
    return out


def plugin_records() -> list[dict[str, Any]]:
    """Every plugin imported by this process (spec, module, file and its sha256, losses), for run records."""
    return list(_PLUGINS.values())


def _import_plugin(spec: str, key: str) -> dict[str, Any]:
    path = Path(spec).expanduser()
    is_file = spec.endswith(".py") or path.is_file()
    name = _file_module_name(path.resolve()) if is_file else spec
    try:
        if is_file:
            if not path.is_file():
                raise ConfigError(
                    f"{key}: {spec}: no such file; give a .py file or an importable module name"
                )
            module = _import_file(path.resolve())
        else:
            module = importlib.import_module(spec)
    except Exception as err:  # a plugin is user code: any failure is one line, not a traceback
        # What it registered before failing goes too: a half-imported plugin offers no method.
        for table in (FORGET_LOSSES, RETAIN_LOSSES):
            for loss_name in [n for n, loss in table.items() if _within(loss.fn.__module__, name)]:
                del table[loss_name]
        msg = str(err)
        if isinstance(err, ConfigError):
            raise ConfigError(msg if msg.startswith(f"{key}: ") else f"{key}: {spec}: {msg}") from None
        raise ConfigError(f"{key}: {spec}: importing it failed: {type(err).__name__}: {msg}") from None
    name = module.__name__
    losses = sorted(
        f"{loss.name} ({loss.kind})"
        for table in (FORGET_LOSSES, RETAIN_LOSSES)
        for loss in table.values()
        if _within(loss.fn.__module__, name)
    )
    if not losses:
        raise ConfigError(
            f"{key}: {spec}: registered no loss; decorate its loss function with "
            "frequnlearn.unlearn.losses.base.register"
        )
    file = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file and Path(file).is_file() else None
    return {"spec": spec, "module": name, "path": file, "sha256": digest, "losses": losses}


def _within(module: str, package: str) -> bool:
    """`module` is `package` or one of its submodules (a plugin package may register in a submodule)."""
    return module == package or module.startswith(package + ".")


def _file_module_name(path: Path) -> str:
    return "frequnlearn_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _import_file(path: Path) -> Any:
    """Import a .py file under a module name derived from its resolved path (once per process)."""
    name = _file_module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{path}: not importable as Python source")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
