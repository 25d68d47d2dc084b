"""The command line's shared interface: --config and --dry-run on every stage, defaults in --help, the
subcommand's usage on a malformed command line, did-you-mean, `config show` and `load_config(PATH)`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from frequnlearn.cli import build_parser, main
from frequnlearn.config import ConfigError, load_config
from frequnlearn.config.study import StudyConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.records import claim_output_dir

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STAGES = ("generate", "pretrain", "count", "unlearn", "evaluate", "report", "study", "bench")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors and --help
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def subcommands() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


def test_every_stage_takes_config_and_dry_run_and_shows_defaults_in_help(capsys):
    commands = subcommands()
    assert set(STAGES) | {"config"} == set(commands)
    for name in STAGES:
        options = {o for a in commands[name]._actions for o in a.option_strings}
        assert "--dry-run" in options, name
        # The report has no settings of its own (it reads those the study recorded).
        assert ("--config" in options) == (name != "report"), name
    code, out, _ = run(capsys, "evaluate", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "else prob,gen,tf,bio)" in flat  # --metrics: the config's default, said
    assert "checkpoint step recorded in every row (default: 0)" in flat
    assert "config show evaluate" in flat


def test_a_malformed_command_line_prints_the_subcommands_usage(capsys):
    code, _, err = run(capsys, "report", "runs/x", "--bogus")
    assert (
        code == 2 and err.startswith("usage: frequnlearn report") and "unrecognized arguments: --bogus" in err
    )
    code, _, err = run(capsys, "study", str(CONFIGS / "tiny.yaml"), "--no-such-flag")
    assert code == 2 and err.startswith("usage: frequnlearn study")


def test_a_value_split_from_its_option_is_explained_with_the_commands_own_example(capsys, tmp_path):
    code, _, err = run(
        capsys, "evaluate", "--model", "m", "--items", "qa.jsonl", "--select", "group", "forget_high",
        "--out", str(tmp_path / "s.parquet"),
    )  # fmt: skip
    assert code == 2 and err.startswith("usage: frequnlearn evaluate")
    assert "'forget_high' is not KEY=VALUE; e.g. batch_size=16" in err
    assert "write --select group=forget_high" in err and "n_people" not in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["unlearn", "--model", "m", "--forget", "f.jsonl", "--out", "o", "unlearn.lrate=1"],
         "unlearn.lrate: unknown key (did you mean 'unlearn.lr'?)"),
        (["unlearn", "--model", "m", "--forget", "f.jsonl", "--out", "o", "learning_rate=1"],
         "unlearn.learning_rate: unknown key (did you mean 'unlearn.lr'?)"),
        (["study", str(CONFIGS / "tiny.yaml"), "--dry-run", "unlearn.lrate=1"],
         "unlearn.lrate: unknown key (did you mean 'unlearn.lr'?)"),
        (["study", str(CONFIGS / "tiny.yaml"), "--dry-run", "unlern.lr=1"],
         "unlern: unknown key (did you mean 'unlearn'?)"),
        (["generate", "--out", "d", "n_peple=3"], "generate.n_peple: unknown key (did you mean 'generate.n_people'?)"),
    ],
)  # fmt: skip
def test_a_mistyped_key_gets_a_did_you_mean(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


def test_load_config_reads_a_study_file_or_one_of_its_sections():
    study = load_config(CONFIGS / "tiny.yaml")
    assert isinstance(study, StudyConfig) and study.study.model_sizes == ["tiny"]
    assert load_config(str(CONFIGS / "tiny.yaml")) == study  # the README's spelling
    unlearn = load_config(CONFIGS / "tiny.yaml", ["lr=0.5"], section="unlearn")
    assert isinstance(unlearn, UnlearnConfig) and unlearn.lr == 0.5
    assert unlearn.max_steps == study.unlearn.max_steps
    # The class-first form is unchanged.
    assert load_config(UnlearnConfig, CONFIGS / "tiny.yaml", section="unlearn") == study.unlearn
    with pytest.raises(ConfigError, match="did you mean 'unlearn'"):
        load_config(CONFIGS / "tiny.yaml", section="unlern")


def _shown(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    """{section: [(key, the comment lines above it)]} of `config show`'s output."""
    sections: dict[str, list[tuple[str, list[str]]]] = {}
    comments: list[str] = []
    current = None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            current = line.rstrip(":")
            sections[current] = []
        elif line.startswith("  #"):
            comments.append(line)
        elif line.startswith("  ") and current:
            sections[current].append((line.split(":")[0].strip(), comments))
            comments = []
    return sections


def test_config_show_lists_every_field_of_every_stage_with_its_meaning(capsys):
    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    shown = _shown(out)
    expected = {f.name: f.default_factory for f in dataclasses.fields(StudyConfig)}
    assert list(shown) == list(expected)
    for section, cls in expected.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert [key for key, _ in shown[section]] == fields, section
        for key, comments in shown[section]:
            assert comments, f"{section}.{key} has no meaning"
    # LoRA's own keys are explained under unlearn.lora.
    lora = dict(shown["unlearn"])["lora"]
    assert any("r (default 8)" in c for c in lora) and any("target_modules" in c for c in lora)
    assert yaml.safe_load(out)["unlearn"]["lr"] == 1e-5


def test_config_show_writes_a_study_file_of_the_defaults(capsys, tmp_path):
    code, out, _ = run(capsys, "config", "show")
    saved = tmp_path / "study.yaml"
    saved.write_text(out)
    assert code == 0 and load_config(saved) == StudyConfig()


def test_config_show_of_a_stage_marks_what_a_config_and_overrides_change(capsys, tmp_path):
    code, out, _ = run(capsys, "config", "show", "unlearn", "--config", str(CONFIGS / "tiny.yaml"), "lr=0.5")
    assert code == 0
    lines = out.splitlines()
    assert "  lr: 0.5  # default: 1.0e-05" in lines
    assert "  method: ga" in lines and "unlearn:" in lines and "study:" not in lines
    saved = tmp_path / "unlearn.yaml"
    saved.write_text(out)
    again = load_config(saved, section="unlearn")
    assert again == load_config(CONFIGS / "tiny.yaml", ["lr=0.5"], section="unlearn")
    code, _, err = run(capsys, "config", "show", "unlern")
    assert code == 2 and "STAGE 'unlern': not a section" in err


@pytest.fixture
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dry") / "data"
    assert main(["generate", "--out", str(d), "n_people=12", "attributes=[employer]"]) == 0
    return d


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dry_run_of_every_stage_checks_and_describes_but_writes_nothing(
    capsys, data_dir, tiny_gpt2_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    claim_output_dir(tmp_path / "run", "study")
    before = _tree(tmp_path), _tree(data_dir.parent)
    qa = str(data_dir / "qa.jsonl")
    argv = {
        "generate": ["generate", "--out", "new/data", "--config", str(CONFIGS / "tiny.yaml"), "n_people=60"],
        "pretrain": ["pretrain", "--data", str(data_dir), "--out", "new/model", "max_steps=5"],
        "count": ["count", "--items", qa, "--out", "new/counted.jsonl", "measure=document"],
        "unlearn": [
            "unlearn", "--model", str(tiny_gpt2_dir), "--method", "ga+gd", "--out", "new/u",
            "--forget", f"{qa}?group=forget_high", "--retain", f"{qa}?group=retain", "lora={r: 4}",
        ],
        "evaluate": ["evaluate", "--model", str(tiny_gpt2_dir), "--items", qa, "--out", "new/s.parquet"],
        "report": ["report", "run", "--dry-run"],
        "study": ["study", "--config", str(CONFIGS / "tiny.yaml"), "--out", "new/run"],
        "bench": ["bench", "--config", str(CONFIGS / "benchmark.yaml"), "--out", "new/bench"],
    }  # fmt: skip
    said = {
        "generate": "60 people",
        "pretrain": "max_steps: 5",
        "count": "would count with ground-truth (document)",
        "unlearn": "training LoRA r=4",
        "evaluate": "would score 12 items",
        "report": "would read 0 unlearning runs",
        "study": "[pretrain] tiny-s0",
        "bench": "114 grid points",
    }
    for stage, args in argv.items():
        code, out, err = run(capsys, *args, *([] if "--dry-run" in args else ["--dry-run"]))
        assert code == 0, (stage, err)
        assert said[stage] in out, (stage, out)
    assert (_tree(tmp_path), _tree(data_dir.parent)) == before


def test_a_dry_run_still_refuses_bad_inputs(capsys, data_dir, tmp_path):
    code, _, err = run(capsys, "pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--dry-run")
    assert code == 2 and "no manifest.json" in err and err.count("\n") == 1
    code, _, err = run(
        capsys, "evaluate", "--model", str(tmp_path / "nope"), "--items", str(data_dir / "qa.jsonl"),
        "--out", str(tmp_path / "s.parquet"), "--dry-run",
    )  # fmt: skip
    assert code == 2 and "no such directory" in err
    assert sorted(os.listdir(tmp_path)) == []
