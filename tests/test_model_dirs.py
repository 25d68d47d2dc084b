"""Model directories that fit the Hugging Face ecosystem: a model card and the run record in every
pretrained and unlearned model/, a true `model_max_length`, LoRA unlearning through peft, trackers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from frequnlearn.config import from_dict
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.errors import ConfigError
from frequnlearn.evaluate import evaluate_items
from frequnlearn.models.card import read_card
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.pretrain import pretrain
from frequnlearn.records import QAItem, from_record, read_json, read_jsonl
from frequnlearn.unlearn import unlearn
from test_pretrain import make_data_dir, tiny_cfg


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    data = make_data_dir(root / "data")
    return data, pretrain(data, tiny_cfg(max_steps=4, eval_every=0, save_every=50), root / "model")


def _items(data):
    items = [from_record(QAItem, r) for r in read_jsonl(data / "qa.jsonl")]
    forget = [it for it in items if it.group == "forget_high"][:4]
    retain = [it for it in items if it.group == "retain"][:6]
    return forget, retain


def _eval_fn(forget, retain):
    cfg = from_dict(EvalConfig, {"metrics": ["prob", "gen"], "probes": ["question"], "max_new_tokens": 4})
    roles = {**{it.item_id: "retain" for it in retain}, **{it.item_id: "forget" for it in forget}}

    def fn(model, tok, step):
        frame = evaluate_items(model, tok, forget + retain, cfg, fmt=get_prompt_format("plain"), step=step)
        frame["role"] = frame["item_id"].map(roles)
        return frame

    return fn


def _unlearn_cfg(**kw) -> UnlearnConfig:
    base = {
        "method": "ga",
        "retain_loss": "gd",
        "lr": 5e-3,
        "batch_size": 2,
        "max_steps": 3,
        "eval_steps": [1],
    }
    return from_dict(UnlearnConfig, {**base, **kw})


def test_a_pretrained_model_dir_carries_its_card_its_record_and_its_true_length(pretrained):
    _, model_dir = pretrained
    card = read_card(model_dir)
    assert card["library_name"] == "frequnlearn" and "frequnlearn" in card["tags"]
    meta = card["frequnlearn"]
    assert meta["stage"] == "pretrain" and meta["preset"] == "tiny" and meta["steps"] == 4
    assert meta["stopping_point"] == "max_steps=4: 4 optimizer steps"
    assert set(meta["metrics"]) >= {"final_loss", "known_forget_high", "known_retain"}
    assert meta["version"] and meta["commit"]
    assert read_json(model_dir / "run.json")["summary"]["steps"] == 4
    config = json.loads((model_dir / "config.json").read_text())
    _, tok = load_model_and_tokenizer(model_dir)
    assert tok.model_max_length == config["n_positions"]


def test_an_unlearned_model_dir_carries_its_card_and_run_record(pretrained, tmp_path):
    data, model_dir = pretrained
    model, tok = load_model_and_tokenizer(model_dir)
    forget, retain = _items(data)
    info = {
        "inputs": {"model": str(model_dir), "forget": "qa.jsonl?group=forget_high"},
        "run": {"run_id": "u"},
    }
    result = unlearn(
        model,
        tok,
        forget,
        retain,
        _unlearn_cfg(),
        tmp_path / "u",
        eval_fn=_eval_fn(forget, retain),
        info=info,
    )
    card = read_card(result.model_dir)
    assert card["base_model"] == str(model_dir) and card["library_name"] == "frequnlearn"
    assert {"unlearning", "ga", "gd"} <= set(card["tags"])
    meta = card["frequnlearn"]
    assert meta["stage"] == "unlearn" and meta["method"] == "ga+gd" and meta["steps"] == 3
    assert meta["forget_set"] == {"n_items": 4, "source": "qa.jsonl?group=forget_high"}
    assert meta["stopping_point"] == "max_steps=3: 3 optimizer steps" and meta["learning_rate"] == 5e-3
    assert set(meta["metrics"]["forget_known"]) == {"start", "end"} and "forget_loss" in meta["metrics"]
    assert meta["version"] and meta["commit"]
    assert read_json(result.model_dir / "run.json") == read_json(tmp_path / "u" / "run.json")
    assert load_model_and_tokenizer(result.model_dir)[1].model_max_length == model.config.n_positions


# peft's own loader (used here to read the adapter back) reads a property transformers deprecated.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_unlearning_changes_only_the_adapter_and_the_merged_model_matches_it(pretrained, tmp_path):
    data, model_dir = pretrained
    model, tok = load_model_and_tokenizer(model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget, retain = _items(data)
    cfg = _unlearn_cfg(lora={"r": 4, "alpha": 8}, lora_merge=True, lr=0.05)
    result = unlearn(model, tok, forget, retain, cfg, tmp_path / "u", eval_fn=_eval_fn(forget, retain))
    out = tmp_path / "u"
    # adapter/: LoRA weights only, changed from their zero start; the base under them as it was.
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k)
    from peft import AutoPeftModelForCausalLM

    adapted = AutoPeftModelForCausalLM.from_pretrained(out / "adapter").eval()
    base = {
        k.removeprefix("base_model.model."): v for k, v in adapted.state_dict().items() if "lora_" not in k
    }
    base = {k.replace(".base_layer.", "."): v for k, v in base.items()}
    assert set(base) == set(before)
    assert all(torch.equal(base[k], before[k]) for k in before)
    # model/: the adapter merged in, a plain model with the same logits.
    merged, _ = load_model_and_tokenizer(out / "model")
    assert not (out / "model" / "adapter_config.json").exists()
    ids = torch.tensor([tok("Who employs Ada? Google")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, _logits_of(model_dir, ids), atol=1e-4)
    assert read_card(out / "adapter")["frequnlearn"]["adapter"] is True
    assert read_card(out / "model")["frequnlearn"]["lora"]["r"] == 4
    assert result.steps == 3


def _logits_of(path, ids):
    model, _ = load_model_and_tokenizer(path)
    return model.eval()(ids).logits


def test_a_lora_adapter_alone_loads_as_a_model(pretrained, tmp_path):
    """Without lora_merge, model/ is the adapter, and the tool's own loader reads it (base named inside)."""
    data, model_dir = pretrained
    model, tok = load_model_and_tokenizer(model_dir)
    forget, retain = _items(data)
    unlearn(model, tok, forget, retain, _unlearn_cfg(lora={"r": 2}, max_steps=1), tmp_path / "u")
    adapter = tmp_path / "u" / "model"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model_dir.resolve()) and config["r"] == 2
    loaded, _ = load_model_and_tokenizer(adapter)
    ids = torch.tensor([tok("Who employs Ada?")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids).logits, model.eval()(ids).logits, rtol=1e-4, atol=1e-5)


def test_lora_settings_are_checked():
    with pytest.raises(ConfigError, match="lora.r: must be >= 1"):
        _unlearn_cfg(lora={"r": 0})
    with pytest.raises(ConfigError, match="lora_merge: needs lora settings"):
        _unlearn_cfg(lora_merge=True)
    with pytest.raises(ConfigError, match="lora: rmu picks what it trains"):
        _unlearn_cfg(method="rmu", retain_loss="act", lora={})


def test_unlearning_logs_to_the_trackers_of_log_with(pretrained, tmp_path, monkeypatch):
    """log_with is accepted as pretraining accepts it, and each step's losses reach the tracker."""
    import accelerate.tracking as tracking
    from accelerate.tracking import GeneralTracker, LoggerType

    seen: dict[str, list] = {"config": [], "log": []}

    class Recorder(GeneralTracker):
        name = "tensorboard"
        requires_logging_directory = True

        def __init__(self, run_name, logging_dir, **kwargs):
            super().__init__()
            self.run_name, self.logging_dir = run_name, logging_dir

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            seen["config"].append(values)

        def log(self, values, step=None, **kwargs):
            seen["log"].append((step, dict(values)))

    monkeypatch.setitem(tracking.LOGGER_TYPE_TO_CLASS, "tensorboard", Recorder)
    monkeypatch.setattr(tracking, "_available_trackers", [LoggerType.TENSORBOARD])
    data, model_dir = pretrained
    model, tok = load_model_and_tokenizer(model_dir)
    forget, retain = _items(data)
    unlearn(model, tok, forget, retain, _unlearn_cfg(log_with=["tensorboard"], max_steps=2), tmp_path / "u")
    assert seen["config"][0]["method"] == "ga" and seen["config"][0]["log_with"] == ["tensorboard"]
    assert [step for step, _ in seen["log"]] == [1, 2]
    assert {"forget_loss", "retain_loss", "lr", "grad_norm"} <= set(seen["log"][0][1])


def test_an_unknown_or_missing_tracker_is_one_clear_error(pretrained, tmp_path):
    with pytest.raises(ConfigError, match="log_with: unknown tracker 'tensorbord'"):
        _unlearn_cfg(log_with=["tensorbord"])
    data, model_dir = pretrained
    model, tok = load_model_and_tokenizer(model_dir)
    forget, retain = _items(data)
    with pytest.raises(ConfigError, match="log_with: wandb is not installed"):
        unlearn(model, tok, forget, retain, _unlearn_cfg(log_with=["wandb"]), tmp_path / "u")


def test_the_study_passes_lora_to_every_unlearning_run(tmp_path):
    from pathlib import Path

    from frequnlearn.config import load_config
    from frequnlearn.study import Study

    tiny = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"
    cfg = load_config(tiny, ["unlearn.lora={r: 4}", "unlearn.lora_merge=true"])
    params = {"method": "simnpo+gd", "seed": 0}
    run_cfg = Study(cfg, tmp_path / "run").unlearn_cfg(params)
    assert run_cfg.lora.r == 4 and run_cfg.lora_merge and run_cfg.method == "simnpo"
    with pytest.raises(ConfigError, match="unlearn.lora_merge: the attacks start from the unlearned weights"):
        load_config(tiny, ["unlearn.lora={r: 4}", "attacks.quantize=[int8]"])
