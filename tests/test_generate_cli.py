"""`frequnlearn generate` from the command line: success, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json

import pytest

import frequnlearn.data.generate as gen
from frequnlearn.cli import main
from frequnlearn.records import read_jsonl


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["generate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_with_config_and_overrides(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text("generate:\n  n_people: 40\n  high_exposure: 3\npretrain: {epochs: 1}\n")
    code, out, err = _run(
        capsys, "--config", str(config), "seed=5", "n_candidates=4", "--out", str(tmp_path / "d")
    )
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'd'}: 40 people")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 5 and manifest["config"]["high_exposure"] == 3
    # Items whose attribute has too few values of matching corpus frequency get fewer, and are counted.
    qa = read_jsonl(tmp_path / "d" / "qa.jsonl")
    assert all(len(i["candidates"]) <= 4 for i in qa)
    assert sum(len(i["candidates"]) < 4 for i in qa) == sum(manifest["candidates_short"].values())
    # A previous data directory is replaced as a whole.
    code, _, err = _run(capsys, "--out", str(tmp_path / "d"), "n_people=8")
    assert code == 0, err
    assert len(read_jsonl(tmp_path / "d" / "people.jsonl")) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "study.yaml"]


@pytest.mark.parametrize(
    "yaml_text, overrides, fragment",
    [
        ("generate: {n_people: [1, 2\n", [], "is not valid YAML at line"),
        (
            "generate: {n_peple: 40}\n",
            [],
            "generate.n_peple: unknown key (did you mean 'generate.n_people'?)",
        ),
        ("generate: {n_people: 40}\n", ["colour=red"], "generate.colour: unknown key"),
        ("generate: {n_people: 2}\n", [], "generate.n_people: must be at least 4"),
        ("generate: {high_exposure: 0}\n", [], "generate.high_exposure: must be >= 1"),
        ("generate: {n_people: many}\n", [], "generate.n_people: expected an integer"),
        (
            "generate: {}\n",
            ["exposure_levels=[0, 1]"],
            "generate.exposure_levels: every exposure must be >= 1",
        ),
    ],
)
def test_config_errors_are_one_line_and_write_nothing(tmp_path, capsys, yaml_text, overrides, fragment):
    config = tmp_path / "study.yaml"
    config.write_text(yaml_text)
    code, out, err = _run(capsys, "--config", str(config), "--out", str(tmp_path / "d"), *overrides)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_missing_output_parents_are_created(tmp_path, capsys):
    code, _, err = _run(capsys, "--out", str(tmp_path / "missing" / "deeper" / "d"), "n_people=8")
    assert code == 0, err
    assert (tmp_path / "missing" / "deeper" / "d" / "manifest.json").is_file()
    assert sorted(p.name for p in (tmp_path / "missing" / "deeper").iterdir()) == ["d"]


def test_a_file_where_a_parent_folder_would_go_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    code, _, err = _run(capsys, "--out", str(tmp_path / "notes.txt" / "d"), "n_people=8")
    assert code == 2 and err.count("\n") == 1
    assert "notes.txt is a file, not a directory" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep me")
    code, _, err = _run(capsys, "--out", str(tmp_path / "d"), "n_people=8")
    assert code == 2 and "this tool did not write" in err and err.count("\n") == 1
    assert (tmp_path / "d" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_failure_mid_write_leaves_previous_data_untouched(tmp_path, capsys, monkeypatch):
    assert _run(capsys, "--out", str(tmp_path / "d"), "n_people=8")[0] == 0
    before = (tmp_path / "d" / "corpus.jsonl").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gen, "_write_bio_prompts", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["generate", "--out", str(tmp_path / "d"), "n_people=9"])
    assert (tmp_path / "d" / "corpus.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
