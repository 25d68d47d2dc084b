"""Progress: one bar line at a time on a terminal, heartbeat lines in a log (with a fake clock), our
messages above a bar rather than through it; and runs free of library warnings."""

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
    """stderr (returned) and stdout replaced by a terminal; in the test's body (pytest sets its own
    streams before each test)."""
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(progress, "REDRAW_S", 0.0)  # every update drawn, so the test sees it
    return term


def open_bars() -> int:
    from tqdm import tqdm

    return sum(1 for t in list(tqdm._instances) if not t.disable)


class FakeClock:
    """progress.clock, advanced by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def in_a_log(monkeypatch, stdout_terminal: bool = False) -> tuple[io.StringIO, FakeClock]:
    """stderr a log file (nohup, CI, 2>&1) and a fake clock."""
    log, clock = io.StringIO(), FakeClock()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(sys, "stdout", Terminal() if stdout_terminal else log)
    monkeypatch.setattr(progress, "clock", clock)
    return log, clock


def test_in_a_log_no_bar_but_a_heartbeat_every_30_seconds(monkeypatch):
    log, clock = in_a_log(monkeypatch)
    with progress.bar(100, "pretrain", unit="step") as b:
        b.update(10)
        b.set(epoch="0.50", loss="2.345", **{"tok/s": "5120"})
        clock.now += 20
        b.update(10)
        assert log.getvalue() == ""  # not yet 30 s
        clock.now += 10
        b.update(5)  # 25 steps in 30 s: 75 left take 90 s
        beats = log.getvalue().splitlines()
        assert beats == [
            "pretrain 25/100 step epoch=0.50, loss=2.345, tok/s=5120 | elapsed 0:00:30, left ~0:01:30"
        ]
        clock.now += 29
        b.update(5)
        assert len(log.getvalue().splitlines()) == 1  # the next one 30 s after the last
        clock.now += 1
        b.update(5)
        assert log.getvalue().splitlines()[-1].startswith("pretrain 35/100 step")
        clock.now += 5
        b.update(65)
    lines = log.getvalue().splitlines()
    assert lines[-1] == "pretrain 100/100 step epoch=0.50, loss=2.345, tok/s=5120 | done after 0:01:05"
    assert "\r" not in log.getvalue() and len(lines) == 3  # lines only, never a bar


def test_a_short_stage_leaves_no_line_in_a_log(monkeypatch):
    log, clock = in_a_log(monkeypatch)
    with progress.bar(10, "pretrain", unit="step") as b:
        b.update(3)
        clock.now += 5
        b.set(loss="1.000")
        b.update(7)
    assert log.getvalue() == ""


def test_a_nested_bar_keeps_the_heartbeat_going(monkeypatch):
    """A long evaluation inside an unlearning step still says the run is alive, and where it is."""
    log, clock = in_a_log(monkeypatch)
    with progress.bar(40, "unlearn ga+gd", unit="step") as outer:
        outer.update(4)
        outer.set(forget="-3.2", retain="1.1")
        with progress.bar(120, "generating", unit="seq") as inner:
            clock.now += 31
            inner.update(40)
    assert log.getvalue().splitlines() == [
        "unlearn ga+gd 4/40 step forget=-3.2, retain=1.1 | generating 40/120 seq | elapsed 0:00:31, left ~0:04:39",
        "unlearn ga+gd 4/40 step forget=-3.2, retain=1.1 | stopped after 0:00:31",  # it closed early
    ]


def test_with_stdout_to_a_file_the_terminal_keeps_its_bar_and_the_file_gets_the_lines(monkeypatch):
    """`make study > study.log`: stderr is the terminal, stdout the log."""
    terminal = on_terminal(monkeypatch)
    log, clock = io.StringIO(), FakeClock()
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(progress, "clock", clock)
    with progress.bar(10, "pretrain", unit="step") as b:
        b.update(2)
        clock.now += 30
        b.update(1)
        progress.message("[2/9] pretrain: mini-s0 (running)")
    assert "pretrain" in terminal.getvalue() and "3/10" in terminal.getvalue()
    assert log.getvalue().splitlines()[0].startswith("pretrain 3/10 step | elapsed 0:00:30, left ~0:01:10")
    assert "[2/9] pretrain: mini-s0 (running)" in log.getvalue().splitlines()
    assert "[2/9] pretrain: mini-s0 (running)\n" in terminal.getvalue()


def test_messages_and_warnings_do_not_split_an_open_bar(monkeypatch):
    """A line of ours (the True/False probe's note on its tokens) goes above the bar, on its own line."""
    terminal = on_terminal(monkeypatch)
    progress.route_logging()
    with progress.bar(10, "unlearn ga", unit="step") as b:
        b.update(3)
        logging.getLogger("frequnlearn.evaluate.truefalse").warning("True/False probe: ' True' is 2 tokens")
        b.update(1)
    out = terminal.getvalue()
    note = out.index("True/False probe")
    assert out[note - 1] == "\r" and out[note:].startswith("True/False probe: ' True' is 2 tokens\n")
    assert out.count("True/False probe") == 1


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
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a log that gets no heartbeat either
    with progress.quiet(), progress.bar(10, "pretrain") as b:
        b.update(5)
        with progress.quiet(False):  # an inner "not quiet" does not undo the outer quiet
            assert not progress.bar(3, "inner").active
    assert terminal.getvalue() == "" and sys.stdout.getvalue() == ""


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
