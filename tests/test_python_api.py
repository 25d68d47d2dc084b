"""docs/python-api.md: every stage's Python entry, its examples run as written (tiny sizes)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python-api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_document_names_every_stages_entry():
    text = DOC.read_text(encoding="utf-8")
    for entry in (
        "load_config",
        "run_generate(cfg, out)",
        "pretrain(data_dir, cfg, out)",
        "run_count(items, out, cfg)",
        "evaluate_items(model, tok, items, cfg, fmt=...)",
        "run_baseline(",
        "run_unlearn(cfg, ecfg, inputs, out)",
        "Study(cfg, run_dir).run()",
        "build_report(run_dir)",
    ):
        assert entry in text, entry


@pytest.mark.slow
def test_the_examples_run_as_written(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for code in blocks():
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the project's own documentation
    out = capsys.readouterr().out
    assert "StudyConfig 24 6" in out
    assert "['report.html', 'report.md']" in out and out.rstrip().endswith("True")
    assert (tmp_path / "runs" / "unlearn" / "model" / "README.md").is_file()
