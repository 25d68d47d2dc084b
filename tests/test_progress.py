"""Progress bars: one line at a time on a terminal, nothing elsewhere; and runs free of library warnings."""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings

import pytest

from frequnlearn import progress
from frequnlearn.config import from_dict
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.evaluate import evaluate_items
from frequnlearn.evaluate.batching import plan_batches
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.presets import build_model, get_preset
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.pretrain import pretrain
from frequnlearn.records import QAItem, from_record, read_jsonl
from frequnlearn.unlearn import unlearn
from test_pretrain import make_data_dir, tiny_cfg


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch) -> Terminal:
    """stderr replaced by a terminal; in the test's body (pytest sets its own stderr before each test)."""
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress, "REDRAW_S", 0.0)  # every update drawn, so the test sees it
    return term


def open_bars() -> int:
    from tqdm import tqdm

    return sum(1 for t in list(tqdm._instances) if not t.disable)


def test_nothing_when_stderr_is_not_a_terminal(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress.bar(10, "pretrain", unit="step") as b:
        b.update(3)
        b.set(loss="1.000")
        assert not b.active
    assert log.getvalue() == ""


def test_a_bar_on_a_terminal_and_none_when_quiet(monkeypatch):
    terminal = on_terminal(monkeypatch)
    with progress.bar(10, "pretrain", unit="step") as b:
        b.set(loss="1.234")
        b.update(4)
        assert b.active and open_bars() == 1
    assert "pretrain" in terminal.getvalue() and "4/10" in terminal.getvalue()
    assert "loss=1.234" in terminal.getvalue()
    assert open_bars() == 0
    terminal.seek(0)
    terminal.truncate()
    with progress.quiet(), progress.bar(10, "pretrain") as b:
        b.update(5)
        with progress.quiet(False):  # an inner "not quiet" does not undo the outer quiet
            assert not progress.bar(3, "inner").active
    assert terminal.getvalue() == ""


def test_a_bar_opened_inside_another_shows_in_its_line(monkeypatch):
    terminal = on_terminal(monkeypatch)
    with progress.bar(5, "unlearn ga", unit="step") as outer:
        with progress.bar(40, "scoring", unit="seq") as inner:
            inner.update(40)
            assert open_bars() == 1  # still one line
            assert "unlearn ga | scoring 40/40 seq" in terminal.getvalue()
        outer.update(1)
    lines = re.split(r"[\r\n]", terminal.getvalue())
    assert any(line.startswith("unlearn ga:") and "1/5" in line for line in lines)  # its own name back


def test_a_bar_left_open_by_an_error_does_not_capture_later_bars(monkeypatch):
    on_terminal(monkeypatch)

    def failing() -> None:
        b = progress.bar(10, "pretrain")
        b.update(1)
        raise RuntimeError("loss is nan")

    with pytest.raises(RuntimeError):
        failing()
    with progress.bar(3, "evaluate") as b:
        assert b._tqdm is not None and open_bars() == 1


def test_plan_batches_counts_sequences(monkeypatch):
    terminal = on_terminal(monkeypatch)
    batches = list(plan_batches([5, 3, 4, 2, 6], 2, 10_000, desc="scoring"))
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert "scoring" in terminal.getvalue() and "5/5" in terminal.getvalue()


def test_built_models_name_their_loss():
    from transformers.loss.loss_utils import LOSS_MAPPING

    model = build_model(get_preset("tiny", n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert model.loss_type in LOSS_MAPPING
    assert "loss_type" not in model.config.to_dict()  # nothing of it is saved with the weights


def test_pretrain_unlearn_evaluate_show_progress_and_no_library_warnings(monkeypatch, tmp_path):
    """The bars show what each stage promises, and transformers has nothing to warn about."""
    terminal = on_terminal(monkeypatch)
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # warnings transformers gives once per process
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    hf_root = logging.getLogger("transformers")
    hf_root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = make_data_dir(tmp_path / "data")
            model_dir = pretrain(data, tiny_cfg(max_steps=6, eval_every=0), tmp_path / "model")
            pretrained = terminal.getvalue()

            model, tok = load_model_and_tokenizer(model_dir)
            items = [from_record(QAItem, r) for r in read_jsonl(data / "qa.jsonl")]
            forget = [it for it in items if it.group == "forget_high"][:4]
            retain = [it for it in items if it.group == "retain"][:4]
            eval_cfg = from_dict(
                EvalConfig, {"metrics": ["prob", "gen"], "batch_size": 2, "max_new_tokens": 4}
            )
            fmt = get_prompt_format("plain")

            def eval_fn(m, t, step):
                return evaluate_items(m, t, forget + retain, eval_cfg, fmt=fmt, step=step)

            cfg = from_dict(
                UnlearnConfig,
                {
                    "method": "ga",
                    "retain_loss": "gd",
                    "lr": 1e-3,
                    "batch_size": 2,
                    "max_steps": 2,
                    "eval_steps": [1],
                },
            )
            unlearn(model, tok, forget, retain, cfg, tmp_path / "unlearn", eval_fn=eval_fn)
            unlearned = terminal.getvalue()[len(pretrained) :]
    finally:
        hf_root.removeHandler(handler)
    assert re.search(r"pretrain: .*6/6 .*epoch=[\d.]+, loss=[\d.]+, tok/s=\d+", pretrained)
    assert re.search(r"unlearn ga\+gd: .*2/2 .*forget=-?[\d.]+, retain=[\d.]+", unlearned)
    assert re.search(r"unlearn ga\+gd \| (scoring|generating) \d+/\d+ seq", unlearned)
    assert records.getvalue() == ""
    assert [f"{w.filename}: {w.message}" for w in caught] == []
