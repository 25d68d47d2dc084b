"""Methods brought from outside: the plugin shown in docs/methods.md runs through `frequnlearn unlearn`
and a study config's validation exactly as written there; bad plugins stop with one line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from frequnlearn.cli import main
from frequnlearn.config import from_dict
from frequnlearn.config.study import StudyConfig
from frequnlearn.errors import ConfigError
from frequnlearn.records import read_json, read_jsonl
from frequnlearn.unlearn.losses import FORGET_LOSSES, RETAIN_LOSSES, base, load_plugins

DOC = Path(__file__).parents[1] / "docs" / "methods.md"
NAME = "first_token_ga"


def doc_plugin() -> str:
    """The first Python block of the plugin section of docs/methods.md, verbatim."""
    section = DOC.read_text().split("## Bring your own method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(autouse=True)
def registry():
    """Each test starts from the built-in registry and leaves it so (plugins are process-wide)."""
    saved = dict(FORGET_LOSSES), dict(RETAIN_LOSSES), dict(base._PLUGINS), set(sys.modules)
    yield
    for table, old in ((FORGET_LOSSES, saved[0]), (RETAIN_LOSSES, saved[1]), (base._PLUGINS, saved[2])):
        table.clear()
        table.update(old)
    for name in set(sys.modules) - saved[3]:
        if name.startswith("frequnlearn_plugin_") or name.startswith("myplugins"):
            del sys.modules[name]


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "first_token_ga.py"
    path.write_text(doc_plugin())
    return path


def test_the_documented_plugin_is_short_and_complete():
    code = doc_plugin()
    assert len(code.strip().splitlines()) <= 15
    assert "@register(" in code and "frequnlearn.unlearn.losses.base" in code


@pytest.fixture
def qa(tmp_path):
    answers = ["Google", "Apple", "London, UK", "Paris"]
    rows = []
    for i, group in enumerate(["forget_high"] * 3 + ["retain"] * 4):
        answer = answers[i % len(answers)]
        rows.append(
            {
                "item_id": f"p{i:05d}-employer",
                "person_id": i,
                "group": group,
                "attribute": "employer",
                "question": f"Who employs Ada Mae {i}?",
                "answer": answer,
                "candidates": [a for a in answers if a != answer],
            }
        )
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plugin_runs_through_unlearn(tiny_gpt2_dir, qa, plugin_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "unlearn",
        "--model",
        str(tiny_gpt2_dir),
        "--forget",
        f"{qa}?group=forget_high",
        "--retain",
        f"{qa}?group=retain",
        "--out",
        str(out),
        "--plugin",
        str(plugin_file),
        "--method",
        f"{NAME}+gd",
        "lr=0.001",
        "batch_size=2",
        "max_steps=2",
        "eval_steps=[]",
        "evaluate.metrics=[prob]",
    ]
    assert main(args) == 0
    assert f"unlearned 3 items with {NAME}+gd: 2 steps" in capsys.readouterr().out
    info = read_json(out / "run.json")
    assert info["run"]["method"] == f"{NAME}+gd" and info["config"]["method"] == NAME
    (record,) = info["plugins"]
    assert record["spec"] == str(plugin_file) and record["losses"] == [f"{NAME} (forget)"]
    assert len(record["sha256"]) == 64
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2] and all(r["forget_loss"] < 0 for r in log)


def test_an_unknown_method_without_its_plugin_is_one_line(tiny_gpt2_dir, qa, tmp_path, capsys):
    args = ["unlearn", "--model", str(tiny_gpt2_dir), "--forget", str(qa), "--out", str(tmp_path / "r")]
    assert main([*args, "--method", NAME]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --method '{NAME}': expected FORGET") and err.count("\n") == 1
    assert main([*args, "--plugin", str(tmp_path / "missing.py"), "--method", NAME]) == 2
    assert capsys.readouterr().err == (
        f"error: --plugin: {tmp_path / 'missing.py'}: no such file; give a .py file or an importable "
        "module name\n"
    )


def test_study_config_validation_takes_the_plugin(plugin_file):
    study = {"methods": ["ga+gd", f"{NAME}+gd"], "method_overrides": {f"{NAME}+gd": {"lr": 1e-3}}}
    with pytest.raises(ConfigError, match=f"study.methods: '{NAME}\\+gd' is not FORGET"):
        from_dict(StudyConfig, {"study": study})
    # The unlearn section comes first and names the plugin's method: the plugins are imported before it.
    cfg = from_dict(
        StudyConfig, {"unlearn": {"method": NAME}, "study": {**study, "plugins": [str(plugin_file)]}}
    )
    assert cfg.study.plugins == [str(plugin_file)] and cfg.unlearn.method == NAME
    assert cfg.method_unlearn(f"{NAME}+gd").lr == 1e-3
    assert NAME in FORGET_LOSSES


def test_a_module_plugin_is_imported_by_name(tmp_path, monkeypatch):
    package = tmp_path / "myplugins"
    package.mkdir()
    (package / "__init__.py").write_text("from myplugins import losses  # noqa: F401\n")
    (package / "losses.py").write_text(doc_plugin().replace(NAME, "module_ga"))
    monkeypatch.syspath_prepend(str(tmp_path))
    (record,) = load_plugins(["myplugins"])
    assert record["module"] == "myplugins" and record["losses"] == ["module_ga (forget)"]
    assert FORGET_LOSSES["module_ga"].fn.__module__ == "myplugins.losses"
    # Imported once: a second load returns the same record.
    assert load_plugins(["myplugins"]) == [record]


@pytest.mark.parametrize(
    "source, message",
    [
        ("import numpy\n", "registered no loss; decorate its loss function with"),
        ("raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
        ("def broken(:\n", "importing it failed: SyntaxError"),
        (
            "from frequnlearn.unlearn.losses.base import register\n"
            "@register('mine', 'forget')\ndef mine(inp, p):\n    return inp.token_logp.sum()\n"
            "@register('ga', 'forget')\ndef ga(inp, p):\n    return inp.token_logp.sum()\n",
            "loss 'ga' \\(forget\\) is registered already by frequnlearn.unlearn.losses.ga; choose another name",
        ),
        (
            "from frequnlearn.unlearn.losses.base import register\n"
            "@register('mine', 'forget', needs=('oracle',))\ndef mine(inp, p):\n    return 0\n",
            "unknown need 'oracle'",
        ),
    ],
)
def test_bad_plugins_stop_with_one_line_and_register_nothing(tmp_path, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    before = set(FORGET_LOSSES)
    with pytest.raises(ConfigError, match=f"^study.plugins: {re.escape(str(path))}: .*{message}") as err:
        load_plugins([str(path)], key="study.plugins")
    assert "\n" not in str(err.value)
    # A plugin that failed half-way leaves none of its losses behind; the built-in `ga` stays.
    assert (
        set(FORGET_LOSSES) == before and FORGET_LOSSES["ga"].fn.__module__ == "frequnlearn.unlearn.losses.ga"
    )
