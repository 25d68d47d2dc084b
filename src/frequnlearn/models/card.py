"""Model cards: the README.md of every model directory the tool writes, in the Hugging Face format.

A card is YAML front matter (huggingface_hub's `ModelCardData`: base model, library, tags, and under
`frequnlearn` the stage, method, forget set, steps, stopping point, key metrics, version and commit)
followed by a short text. The full run record, run.json, sits beside it in the same directory, so a
model copied or uploaded alone still says how it was made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CARD = "README.md"


def write_card(model_dir: str | Path, meta: dict[str, Any], body: str, tags: list[str]) -> Path:
    """README.md in `model_dir`: front matter (`meta` under `frequnlearn`, plus the standard fields
    `base_model`, `library_name`, `pipeline_tag`, `tags`), then `body`."""
    from huggingface_hub import ModelCard, ModelCardData

    from frequnlearn import __version__
    from frequnlearn.records import atomic_open, code_commit

    meta = {**meta, "version": __version__, "commit": code_commit()}
    data = ModelCardData(
        base_model=meta.get("base_model"),
        library_name="frequnlearn",
        pipeline_tag="text-generation",
        tags=["frequnlearn", *tags],
        frequnlearn=_plain({k: v for k, v in meta.items() if k != "base_model"}),
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")
    path = Path(model_dir) / CARD
    with atomic_open(path) as fh:
        fh.write(str(card))
    return path


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The front matter of the card in `model_dir`, as a dict."""
    from huggingface_hub import ModelCard

    return ModelCard.load(Path(model_dir) / CARD).data.to_dict()


def write_pretrained_card(files: str | Path, run_dir: str | Path | None = None) -> Path:
    """The card of a finished pretraining run, in `files` (the directory holding its weights, tokenizer
    and run.json: the run directory, or a scratch directory about to become it), and the saved
    tokenizer's `model_max_length` set to the model's positions. `run_dir` (default: `files`) holds
    the run's metrics.jsonl and names the model."""
    from frequnlearn.models.tokenizer import fix_saved_max_length
    from frequnlearn.records import read_json, read_jsonl

    files = Path(files)
    run_dir = Path(run_dir) if run_dir is not None else files
    fix_saved_max_length(files)
    record = read_json(files / "run.json")
    metrics_file = run_dir / "metrics.jsonl"
    cfg, summary = record.get("config") or {}, record.get("summary") or {}
    rows = read_jsonl(metrics_file) if metrics_file.is_file() else []
    knowledge = (summary.get("knowledge") or {}).get("by_group", {})
    metrics: dict[str, Any] = {f"known_{g}": _round(v.get("accuracy")) for g, v in knowledge.items()}
    if rows:
        metrics["final_loss"] = _round(rows[-1].get("loss"))
    stop = f"max_steps={cfg['max_steps']}" if cfg.get("max_steps") else f"epochs={cfg.get('epochs')}"
    meta = {
        "stage": "pretrain",
        "method": "causal language modelling from scratch",
        "preset": cfg.get("preset"),
        "n_params": summary.get("n_params"),
        "training_data": "synthetic biographies (frequnlearn generate), each person seen a recorded number of times",
        "steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "tokens_seen": summary.get("tokens_seen"),
        "stopping_point": f"{stop}: {summary.get('steps')} optimizer steps",
        "seed": record.get("seed"),
        "metrics": metrics,
    }
    known = ", ".join(f"{g} {v['accuracy']:.0%}" for g, v in knowledge.items() if _finite(v.get("accuracy")))
    body = f"""
# {run_dir.name}

A GPT-2 (`{cfg.get("preset")}` preset, {summary.get("n_params")} parameters) pretrained from scratch by frequnlearn on synthetic biographies whose exposure per person is recorded, for {summary.get("steps")} optimizer steps ({summary.get("epochs")} epochs, {summary.get("tokens_seen")} tokens).

Greedy answers known after pretraining, per group: {known or "not checked"}.

Load it with `transformers.AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`. `run.json` beside this card is the full run record (config, seed, library versions, hardware, data hashes).
"""
    return write_card(files, meta, body, ["pretraining", "synthetic-data"])


def write_unlearned_card(
    model_dir: str | Path,
    record: dict[str, Any],
    trajectory: str | Path | None,
    *,
    adapter: bool,
    title: str | None = None,
) -> Path:
    """The card of an unlearned model (a LoRA adapter with `adapter`) from its run record and, where it
    exists, its trajectory (share of items known and ranked first, per role, before and after);
    `title` names the directory (default: its name)."""
    cfg, summary = record.get("config") or {}, record.get("summary") or {}
    ident, inputs = record.get("run") or {}, record.get("inputs") or {}
    method = ident.get("method") or (
        cfg.get("method")
        if cfg.get("retain_loss") in (None, "none")
        else f"{cfg['method']}+{cfg['retain_loss']}"
    )
    base = inputs.get("model") or ident.get("model")
    forget_set = {
        "n_items": summary.get("n_forget"),
        "source": inputs.get("forget"),
        "level": ident.get("level"),
        "selection": ident.get("selection"),
    }
    stop = f"max_steps={cfg['max_steps']}" if cfg.get("max_steps") else f"epochs={cfg.get('epochs')}"
    metrics = {
        k: _round(v) for k, v in (summary.get("final") or {}).items() if k.endswith(("_loss", "_logp"))
    }
    metrics.update(trajectory_metrics(trajectory))
    meta = {
        "base_model": str(base) if base is not None else None,
        "stage": "unlearn",
        "method": method,
        "lora": cfg.get("lora"),
        "adapter": adapter if cfg.get("lora") else None,
        "forget_set": {k: v for k, v in forget_set.items() if v is not None},
        "n_retain": summary.get("n_retain"),
        "steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "stopping_point": f"{stop}: {summary.get('steps')} optimizer steps",
        "learning_rate": cfg.get("lr"),
        "seed": record.get("seed"),
        "metrics": metrics,
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    loading = (
        "It is a LoRA adapter: load it with `peft.AutoPeftModelForCausalLM.from_pretrained(DIR)` (or "
        "`transformers.AutoModelForCausalLM` with peft installed); its base model is named in "
        "adapter_config.json."
        if adapter
        else "Load it with `transformers.AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer`."
    )
    changes = [
        f"{role}: known {v['start']:.0%} -> {v['end']:.0%}"
        for key, v in metrics.items()
        if isinstance(v, dict) and key.endswith("_known") and (role := key.removesuffix("_known"))
    ]
    lora = (
        " through LoRA adapters" + (" (merged into the weights)" if not adapter else "")
        if cfg.get("lora")
        else ""
    )
    body = f"""
# {ident.get("run_id") or "unlearned"} ({title or Path(model_dir).name})

`{base}` after unlearning {forget_set["n_items"]} question-answer items with {method}{lora} (frequnlearn), {summary.get("steps")} optimizer steps ({stop}). {"; ".join(changes) + "." if changes else ""}

{loading} `run.json` beside this card is the full run record (config, seed, item sets, library versions, hardware); the run directory one level up also holds the per-step trajectory.
"""
    tags = ["unlearning", *(str(method).split("+")), *(["peft", "lora"] if adapter else [])]
    return write_card(model_dir, meta, body, tags)


def trajectory_metrics(path: str | Path | None) -> dict[str, dict[str, float]]:
    """Per role, the share of items known (greedy answer) and ranked first (likelihood) on the trained
    question, at the first and the last evaluated step: {"forget_known": {"start": .., "end": ..}, ...}."""
    if path is None or not Path(path).is_file():
        return {}
    import pandas as pd

    df = pd.read_parquet(path)
    if not {"role", "probe", "family", "step"} <= set(df.columns):
        return {}
    q = df[df["probe"] == "question"]
    first, last = q["step"].min(), q["step"].max()
    out: dict[str, dict[str, float]] = {}
    for family, column, label in (("gen", "known", "known"), ("prob", "rank_correct", "rank1")):
        rows = q[(q["family"] == family)]
        if column not in rows.columns:
            continue
        for role, sub in rows.groupby("role", sort=True):
            start = sub.loc[sub["step"] == first, column].dropna()
            end = sub.loc[sub["step"] == last, column].dropna()
            if len(start) and len(end):
                out[f"{role}_{label}"] = {"start": _round(start.mean()), "end": _round(end.mean())}
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _round(value: Any) -> Any:
    return round(float(value), 4) if _finite(value) else None


def _plain(value: Any) -> Any:
    """JSON-plain values (numpy numbers and tuples become numbers and lists) for the YAML writer."""
    return json.loads(json.dumps(value, default=str))
