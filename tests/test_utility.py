from __future__ import annotations

import json

import pytest

from frequnlearn.errors import ConfigError
from frequnlearn.evaluate.utility import TASKS_DIR, run_utility, write_qa_task
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import QAItem

pytest.importorskip("lm_eval")


@pytest.fixture
def offline(monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if hasattr(datasets.config, name):
            monkeypatch.setattr(datasets.config, name, True)


def test_shipped_task_files():
    rows = [json.loads(line) for line in (TASKS_DIR / "capitals.jsonl").read_text().splitlines()]
    assert len(rows) >= 50
    assert all(0 <= r["label"] < len(r["choices"]) == 4 for r in rows)
    assert (TASKS_DIR / "frequnlearn_capitals.yaml").is_file()


def test_local_tasks_run_offline(tiny_gpt2_dir, tmp_path, offline):
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    model.train()
    items = [
        QAItem(
            item_id=f"u{i}", question=f"Who employs Ada {i}?", answer="Google", candidates=["Apple", "Paris"]
        )
        for i in range(4)
    ]
    name = write_qa_task(items, tmp_path, "frequnlearn_utility_qa", get_prompt_format("plain"), tok)
    data = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    assert data[0]["prompt"].startswith(tok.bos_token + "Question: Who employs Ada 0?")
    assert sorted(data[0]["choices"]) == [" Apple", " Google", " Paris"]
    assert data[0]["choices"][data[0]["label"]] == " Google"

    out = run_utility(
        model, tok, ["frequnlearn_capitals", name], batch_size=8, limit=6, include_paths=[tmp_path]
    )
    assert set(out) == {"frequnlearn_capitals", name}
    for metrics in out.values():
        assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["acc_norm"] <= 1.0
    assert model.training


def test_unknown_task(tiny_gpt2_dir, monkeypatch):
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    with pytest.raises(ConfigError, match="utility_tasks"):
        run_utility(model, tok, ["no_such_task_anywhere"])
