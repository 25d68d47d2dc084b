"""The study's status line: the time estimate from measured throughput, and third-party bars kept quiet."""

from __future__ import annotations

import pytest

from frequnlearn.progress import quiet_third_party
from frequnlearn.study.plan import Task
from frequnlearn.study.status import Estimate, Progress


def test_estimate_scales_measured_throughput_by_parameters_and_epochs():
    est = Estimate()
    big = Task("pretrain", "small-s0", {"size": "small", "n_params": 2e6, "epochs": 20, "tokens": None})
    assert est.seconds(big) is None  # nothing measured yet: no guess
    est.pretrained(tokens_per_s=1000.0, n_params=1e6, tokens_per_epoch=1e4)
    # 2e5 tokens at half the throughput (twice the parameters).
    assert est.seconds(big) == pytest.approx(400.0)
    fixed = Task("pretrain", "small-s1", {"n_params": 2e6, "epochs": 20, "tokens": 5e4})
    assert est.seconds(fixed) == pytest.approx(100.0)

    run = {"n_params": 1e6, "model": "mini-s0"}
    est.finished(Task("unlearn", "mini-s0/a", run), 10.0)
    est.finished(Task("unlearn", "mini-s0/b", run), 14.0)
    assert est.seconds(Task("unlearn", "mini-s0/c", run)) == pytest.approx(12.0)
    other = Task("unlearn", "small-s0/a", {"n_params": 2e6, "model": "small-s0"})
    assert est.seconds(other) == pytest.approx(24.0)
    total, untimed = est.left([other, big, Task("report", "report")])
    assert total == pytest.approx(424.0) and untimed == ["report"]


def test_third_party_progress_bars_are_off_inside_only():
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    with quiet_third_party():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


def test_status_line_says_what_is_not_yet_timed():
    import io

    tasks = [
        Task("pretrain", "mini-s0", {"n_params": 1e6, "epochs": 10, "tokens": None}),
        Task("pretrain", "tiny-s0", {"n_params": 2e6, "epochs": 10, "tokens": None}),
        Task("unlearn", "tiny-s0/run", {"n_params": 2e6, "model": "tiny-s0"}),
    ]
    out = io.StringIO()
    progress = Progress(tasks, [False, True, True], stream=out)
    with progress.task(0, skipped=True):
        pass
    assert "(done, skipping)" in out.getvalue() and out.getvalue().endswith("left ?\n")
    progress.estimate.pretrained(tokens_per_s=1000.0, n_params=1e6, tokens_per_epoch=1e3)
    with progress.task(1):
        pass
    # 1e4 tokens at 500 tokens/s for the pending pretraining; unlearning has no measurement yet.
    assert out.getvalue().splitlines()[-1].endswith("left ~0:00:20 + not yet timed: unlearn")


def test_status_lines_and_heartbeats_reach_a_log(monkeypatch):
    """Output to a file (nohup, CI): a status line per stage and, within a long stage, a heartbeat line
    every 30 s, with their times (a fake clock)."""
    import io
    import sys

    from frequnlearn import progress

    log, now = io.StringIO(), [500.0]
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(progress, "clock", lambda: now[0])
    tasks = [
        Task("generate", "data"),
        Task("pretrain", "tiny-s0", {"n_params": 1e6, "epochs": 1, "tokens": None}),
    ]
    status = Progress(tasks, [True, True])
    with status.task(0):
        now[0] += 4
    with status.task(1), progress.bar(100, "pretrain", unit="step") as b:
        for _ in range(10):
            now[0] += 6
            b.update(5)
            b.set(loss="2.100")
    assert log.getvalue().splitlines() == [
        "[1/2] generate: data (running) | elapsed 0:00:00 | left ?",
        "[2/2] pretrain: tiny-s0 (running) | elapsed 0:00:04 | left ?",
        "pretrain 25/100 step loss=2.100 | elapsed 0:00:30, left ~0:01:30",
        "pretrain 50/100 step loss=2.100 | elapsed 0:01:00, left ~0:01:00",
        "pretrain 50/100 step loss=2.100 | stopped after 0:01:00",
    ]
