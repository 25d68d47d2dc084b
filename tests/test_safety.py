"""The guards behind the fault suite's trust cases, one at a time: outputs stay inside their root,
only marked directories are removed, done markers are checked against their outputs, tables and
configs that would make wrong numbers are refused, a full disk leaves the earlier set whole."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from frequnlearn import records
from frequnlearn.config.base import ConfigError, from_dict, load_yaml
from frequnlearn.config.generate import GenerateConfig, corpus_estimate
from frequnlearn.errors import DataError
from frequnlearn.records import (
    OUTPUT_MARKER,
    STAGE_FILE,
    DiskFull,
    QAItem,
    add_root,
    atomic_dir,
    clear_if_stale,
    is_plain_name,
    mark_done,
    output_set,
    remove_own,
    stage_done,
    write_json,
)


@pytest.fixture(autouse=True)
def own_roots(monkeypatch):
    """Each test starts with no output roots (they are per process)."""
    monkeypatch.setattr(records, "_ROOTS", [])


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    return victim


# ---------------------------------------------------------------- names and roots


@pytest.mark.parametrize("name", ["forget_high", "1", "1e+06", "high", "ga+gd", "tiny-s0", "Zürich", "_x"])
def test_plain_names(name):
    assert is_plain_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-flag", "a b", "x\0", 3])
def test_names_that_are_paths_are_not_plain(name):
    assert not is_plain_name(name)


def test_remove_own_removes_only_a_marked_directory_inside_its_root(tmp_path):
    victim = _victim(tmp_path)
    root = tmp_path / "run"
    (root / "unlearn").mkdir(parents=True)
    for path in (root / "unlearn" / ".." / ".." / "victim", victim):
        with pytest.raises(DataError, match="refusing to remove"):
            remove_own(path, root)
    (root / "unlearn" / "link").symlink_to(victim, target_is_directory=True)
    with pytest.raises(DataError, match="a symlink or '..'"):
        remove_own(root / "unlearn" / "link", root)
    (victim / STAGE_FILE).write_text("{}")  # a marker copied in does not make it ours: it is outside
    with pytest.raises(DataError):
        remove_own(root / "unlearn" / "link", root)
    unmarked = root / "unlearn" / "mine"
    unmarked.mkdir()
    (unmarked / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="carries no marker"):
        remove_own(unmarked, root)
    assert (victim / "thesis.tex").read_text() == "years of work" and (unmarked / "notes.txt").exists()
    ours = root / "unlearn" / "run"
    ours.mkdir()
    (ours / STAGE_FILE).write_text("{}")
    remove_own(ours, root)
    assert not ours.exists()
    remove_own(ours, root)  # already gone: nothing to do


def test_writes_under_a_root_cannot_leave_it(tmp_path):
    victim = _victim(tmp_path)
    root = tmp_path / "run"
    root.mkdir()
    add_root(root)
    (root / "data").symlink_to(victim, target_is_directory=True)
    for attempt in (
        lambda: write_json(root / "data" / "x.json", {}),
        lambda: write_json(root / "a" / ".." / ".." / "victim" / "x.json", {}),
        lambda: records.append_jsonl(root / "data" / "log.jsonl", {"a": 1}),
        lambda: add_root(root / "data"),
    ):
        with pytest.raises(DataError, match="outside the output"):
            attempt()
    with pytest.raises(DataError, match="outside the output"), output_set(root / "data", None, "run.json"):
        pass
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"]
    write_json(root / "inside" / "x.json", {})  # inside: fine
    write_json(tmp_path / "elsewhere" / "x.json", {})  # a path no root names (a cache, a temp dir)


def test_a_symlinked_file_output_is_replaced_not_followed(tmp_path):
    victim = _victim(tmp_path)
    add_root(tmp_path / "scores.parquet", follow=False)
    (tmp_path / "scores.parquet").symlink_to(victim / "thesis.tex")
    with records.atomic_open(tmp_path / "scores.parquet") as fh:
        fh.write("new")
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert not (tmp_path / "scores.parquet").is_symlink()


# ---------------------------------------------------------------- done markers and their outputs


def _stage(tmp_path: Path) -> Path:
    path = tmp_path / "stage"
    path.mkdir()
    (path / "scores.parquet").write_bytes(b"x" * 100)
    (path / "run.json").write_text("{}")
    return path


def test_a_done_marker_is_trusted_only_while_its_outputs_match(tmp_path, capsys):
    path = _stage(tmp_path)
    mark_done(path, "k", {"model": "m"})
    record = json.loads((path / STAGE_FILE).read_text())
    assert sorted(record["outputs"]) == ["run.json", "scores.parquet"] and record["model"] == "m"
    assert stage_done(path, "k") and not stage_done(path, "other")
    (path / "scores.parquet").write_bytes(b"x" * 50)
    assert not stage_done(path, "k") and not stage_done(path, "k")
    err = capsys.readouterr().err
    assert err.count("scores.parquet holds 50 bytes, 100 when it was written") == 1  # said once
    (path / "scores.parquet").write_bytes(b"y" * 100)  # same size, other bytes
    assert not stage_done(path, "k")
    assert "scores.parquet changed since it was written" in capsys.readouterr().err
    (path / "scores.parquet").unlink()
    assert not stage_done(path, "k")
    assert "scores.parquet is missing" in capsys.readouterr().err
    (path / STAGE_FILE).write_text(json.dumps({"key": "k"}))  # an earlier version's marker
    assert not stage_done(path, "k")
    assert "records no sizes or hashes" in capsys.readouterr().err


def test_a_marker_cannot_name_files_outside_its_directory(tmp_path):
    path = _stage(tmp_path)
    (path / STAGE_FILE).write_text(json.dumps({"key": "k", "outputs": {"../../etc/passwd": {"size": 1}}}))
    assert not stage_done(path, "k")


def test_an_in_progress_record_keeps_the_outputs_it_vouched_for(tmp_path):
    path = _stage(tmp_path)
    mark_done(path, "k")
    outputs = json.loads((path / STAGE_FILE).read_text())["outputs"]
    clear_if_stale(path, "k")
    record = json.loads((path / STAGE_FILE).read_text())
    assert record["in_progress"] and record["outputs"] == outputs
    clear_if_stale(path, "other")  # another key: the directory is ours (marked), so it is cleared
    assert sorted(p.name for p in path.iterdir()) == [STAGE_FILE]


# ---------------------------------------------------------------- a full disk, modes


def test_a_full_disk_leaves_the_earlier_set_whole(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").write_text("old a")
    (dest / "run.json").write_text("old record")
    with pytest.raises(DiskFull, match=rf"{dest}: no space left on the device .*needed more than \d+ B"):
        with output_set(dest, ["a.txt", "run.json"], "run.json") as tmp:
            (tmp / "a.txt").write_text("new a")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert (dest / "a.txt").read_text() == "old a" and (dest / "run.json").read_text() == "old record"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_library_errors_that_wrap_a_full_disk_are_recognised():
    assert records.is_disk_full(
        RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "No space" })')
    )
    assert not records.is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_weights_written_0600_are_published_like_every_other_output(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            weights = tmp / "model.safetensors"
            weights.write_bytes(b"w")
            weights.chmod(0o600)
        mode = stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode)
    finally:
        os.umask(mask)
    assert mode == 0o644
    assert not (tmp_path / "model" / OUTPUT_MARKER).exists()


# ---------------------------------------------------------------- tables and configs


def _items(*answers: str, candidates: list[str] | None = None, ids: list[str] | None = None) -> list[QAItem]:
    ids = ids or [f"q{i}" for i in range(len(answers))]
    return [QAItem(i, f"Q {i}?", a, candidates=list(candidates or [])) for i, a in zip(ids, answers)]


def test_tables_that_would_make_wrong_numbers(capsys):
    from frequnlearn.data.tables import check_items

    check_items(_items("Paris", "London"), "t")
    with pytest.raises(DataError, match="item_id 'q' occurs more than once"):
        check_items(_items("Paris", "London", ids=["q", "q"]), "t")
    with pytest.raises(DataError, match="'#!' has no letters or digits"):
        check_items(_items("#!"), "t")
    with pytest.raises(DataError, match="candidate 'the paris.' is the answer 'Paris'"):
        check_items(_items("Paris", candidates=["Rome", "the paris."]), "t")
    check_items(_items("C#", "C++", "C#"), "t")
    err = capsys.readouterr().err
    assert (
        err.startswith("warning: t: answers 'C#' (q0) and 'C++' (q1) are the same") and err.count("\n") == 1
    )


def test_duplicate_yaml_keys_name_the_key_line_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    for text, key, line in [
        ("a: 1\nb: 2\na: 3\n", "a", 3),
        ("study:\n  seeds: [0]\n  seeds: [1]\n", "seeds", 3),
        ("generate: {n_people: 3, n_people: 4}\n", "n_people", 1),
    ]:
        path.write_text(text)
        with pytest.raises(
            ConfigError, match=rf"{path} is not valid YAML at line {line}, .*key '{key}' is given twice"
        ):
            load_yaml(path)
    path.write_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n")  # a merge key and an override
    assert load_yaml(path)["use"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_seeds_outside_numpys_range_are_refused(seed):
    with pytest.raises(ConfigError, match=r"seed: .* is not a seed; use an integer from 0 to 4294967295"):
        from_dict(GenerateConfig, {"seed": seed})
    from_dict(GenerateConfig, {"seed": 2**32 - 1})


def test_the_corpus_estimate_bounds_what_generate_writes(tmp_path):
    from frequnlearn.data.generate import generate

    for cfg in (
        GenerateConfig(n_people=60, high_exposure=20),
        GenerateConfig(n_people=60, exposure_levels=[1, 4, 16]),
    ):
        out = generate(cfg, tmp_path / f"d{len(list(tmp_path.iterdir()))}")
        manifest = json.loads((out / "manifest.json").read_text())
        estimate = corpus_estimate(cfg)
        documents = sum(manifest["counts"]["documents"].values())  # a grid's remainder goes to low levels
        assert documents <= estimate["documents"] <= 1.1 * documents
        size = (out / "corpus.jsonl").stat().st_size
        assert size <= estimate["corpus_bytes"] <= 2 * size


# ---------------------------------------------------------------- models


@pytest.mark.parametrize(
    "text,local",
    [
        ("gpt2", False),
        ("EleutherAI/pythia-70m", False),
        ("./runs/m", True),
        ("/abs/m", True),
        ("~/m", True),
        ("a/b/c", True),
        ("a\\b", True),
        ("has space", True),
        ("a/../b", True),
    ],
)
def test_what_looks_like_a_local_model_path(text, local):
    from frequnlearn.models.loading import looks_local

    assert looks_local(text) is local


def test_an_existing_parent_makes_a_name_local(tmp_path, monkeypatch):
    from frequnlearn.models.loading import looks_local

    monkeypatch.chdir(tmp_path)
    assert not looks_local("runs/modell")
    (tmp_path / "runs").mkdir()
    assert looks_local("runs/modell")


def test_custom_code_is_named_and_never_imported(tmp_path):
    from frequnlearn.models.loading import check_no_custom_code

    (tmp_path / "config.json").write_text(
        json.dumps(
            {"auto_map": {"AutoConfig": "cfg_x.C", "AutoModelForCausalLM": "someone/repo--modeling_x.M"}}
        )
    )
    with pytest.raises(
        DataError, match=r"names custom code \(cfg_x.py, modeling_x.py\).*trust_remote_code=True"
    ):
        check_no_custom_code(tmp_path)
