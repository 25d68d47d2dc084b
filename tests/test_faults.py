"""Faults a user can cause or meet, tried on every command as a new user would.

Each case asserts the exit code, a one-line message (or the command's normal one-line result), and
that no file that existed before the command changed: every file under the case's directory and
under the shared inputs is hashed before and after. Kill cases stop a command with SIGKILL at a named
point (a rename of one of its files, or a call of one of its functions), then compare the rerun
with an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch

from frequnlearn.cli import main
from frequnlearn.records import OUTPUT_MARKER, STAGE_FILE

ANSWERS = ["Google", "Apple", "London, UK", "Paris"]
PRETRAIN = [
    "preset=tiny",
    "n_layer=2",
    "n_embd=32",
    "n_head=2",
    "vocab_size=300",
    "seq_len=64",
    "batch_size=4",
    "max_steps=12",
    "save_every=4",
    "log_every=2",
    "eval_per_group=2",
    "num_threads=1",
]
UNLEARN = ["lr=0.001", "batch_size=2", "max_steps=3", "eval_steps=[1,2]", "evaluate.metrics=[prob,gen]"]
UNLEARN += ["evaluate.max_new_tokens=4"]
EVALUATE = ["--metrics", "prob,gen"]  # a case's own flags come after these, and win

# Runs the command line with one kill point: SIGKILL just before (or after) the n-th os.replace onto
# a path matching a glob, or just before the n-th call of a function.
KILLER = r"""
import fnmatch, importlib, json, os, signal, sys
spec = json.loads(os.environ["FAULT_KILL"])
seen = [0]
def hit():
    seen[0] += 1
    if seen[0] == spec["n"]:
        os.kill(os.getpid(), signal.SIGKILL)
if "replace" in spec:
    real = os.replace
    def replace(src, dst, *args, **kwargs):
        match = fnmatch.fnmatch(str(dst), spec["replace"])
        if match and not spec.get("after"):
            hit()
        result = real(src, dst, *args, **kwargs)
        if match and spec.get("after"):
            hit()
        return result
    os.replace = replace
else:
    module, name = spec["call"].split(":")
    module = importlib.import_module(module)
    real = getattr(module, name)
    def wrapped(*args, **kwargs):
        hit()
        return real(*args, **kwargs)
    setattr(module, name, wrapped)
from frequnlearn.cli import main
sys.exit(main(sys.argv[1:]))
"""


# ---------------------------------------------------------------- shared inputs


def _qa_rows() -> list[dict]:
    groups = ["forget_high"] * 3 + ["retain"] * 4
    rows = []
    for i, group in enumerate(groups):
        answer = ANSWERS[i % len(ANSWERS)]
        rows.append(
            {
                "item_id": f"p{i:05d}-employer",
                "person_id": i,
                "group": group,
                "attribute": "employer",
                "question": f"Who employs Ada Mae {i}?",
                "answer": answer,
                "subject": f"Ada Mae {i}",
                "object": answer,
                "frequency": 10 if group == "forget_high" else 1,
                "candidates": [a for a in ANSWERS if a != answer],
            }
        )
    return rows


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Pretraining pins torch to one thread; every run here uses one, so reruns compare bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Inputs:
    root: Path
    model: Path
    qa: Path
    data: Path
    other_data: Path
    bio: Path
    ref: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_gpt2_dir) -> Inputs:
    """Model, tables and two data directories, plus an uninterrupted run of every command."""
    root = tmp_path_factory.mktemp("shared")
    model = Path(shutil.copytree(tiny_gpt2_dir, root / "model"))
    qa = root / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in _qa_rows()))
    assert main(["generate", "--out", str(root / "data"), "n_people=12"]) == 0
    assert main(["generate", "--out", str(root / "other"), "n_people=12", "seed=1"]) == 0
    bio = root / "data" / "bio_prompts.jsonl"
    inp = Inputs(root, model, qa, root / "data", root / "other", bio)
    refs = root / "refs"
    refs.mkdir()
    assert main(["pretrain", "--data", str(inp.data), "--out", str(refs / "model"), *PRETRAIN]) == 0
    assert main(_unlearn_args(inp, refs / "u")) == 0  # same name as the cases' --out: run_id is its name
    assert main(_evaluate_args(inp, refs / "scores.parquet")) == 0
    inp.ref = {"model": refs / "model", "unlearn": refs / "u", "scores": refs / "scores.parquet"}
    return inp


def _unlearn_args(inp: Inputs, out: Path, *extra: str) -> list[str]:
    spec = f"{inp.qa}?group=forget_high"
    return [
        "unlearn",
        "--model",
        str(inp.model),
        "--forget",
        spec,
        "--retain",
        f"{inp.qa}?group=retain",
        "--method",
        "ga+gd",
        "--out",
        str(out),
        *extra,
        *UNLEARN,
    ]


def _evaluate_args(inp: Inputs, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        str(inp.model),
        "--items",
        str(inp.qa),
        "--out",
        str(out),
        *EVALUATE,
        *extra,
        "max_new_tokens=4",
    ]


# ---------------------------------------------------------------- helpers


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (what a user has on disk)."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def lost(before: dict[str, str], after: dict[str, str], allowed: Callable[[str], bool]) -> list[str]:
    """Files that existed before and were changed or removed (outputs the command owns excepted)."""
    return [p for p, h in before.items() if after.get(p) != h and not allowed(p)]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def kill_at(argv: list[str], spec: dict) -> int:
    """Run the command in a fresh process that SIGKILLs itself at the point `spec` names."""
    env = {**os.environ, "FAULT_KILL": json.dumps(spec)}
    proc = subprocess.run([sys.executable, "-c", KILLER, *argv], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, f"the kill point {spec} was never reached:\n{proc.stderr[-2000:]}"
    return proc.returncode


def readonly_dir(tmp_path: Path) -> Path:
    """A directory the test process cannot write in (chmod for a user; /sys for root, who ignores modes)."""
    if os.geteuid() != 0:
        path = tmp_path / "ro"
        path.mkdir()
        path.chmod(0o555)
        return path
    probe = Path("/sys/kernel")
    try:
        (probe / ".frequnlearn-probe").touch()
    except OSError:
        return probe
    pytest.skip("no unwritable directory is available to root here")


def truncated_model(inp: Inputs, path: Path) -> Path:
    shutil.copytree(inp.model, path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return path


def model_without_tokenizer(inp: Inputs, path: Path) -> Path:
    path.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (inp.model / name).is_file():
            shutil.copy(inp.model / name, path / name)
    return path


def non_utf8_jsonl(path: Path, row: dict) -> Path:
    text = json.dumps(row, ensure_ascii=False).encode("utf-8").replace(b"Ada", b"Ad\xe9")
    path.write_bytes(text + b"\n")
    return path


def study_config(path: Path) -> Path:
    path.write_text(
        """
generate: {n_people: 24, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 300, seq_len: 64, epochs: 2,
           batch_size: 8, lr: 3.0e-3, save_every: 4, eval_per_group: 2, num_threads: 1}
unlearn: {lr: 2.0e-3, max_steps: 2, eval_steps: [0, 2], batch_size: 4}
evaluate: {metrics: [prob, gen], utility_tasks: [], max_new_tokens: 4, batch_size: 16}
study: {model_sizes: [tiny], methods: [ga+gd], selections: [all], eval_retain_size: 4,
        eval_utility_size: 4, n_boot: 100}
"""
    )
    return path


# ---------------------------------------------------------------- one-line cases
#
# (name, setup(inputs, case dir) -> argv, expected exit code, fragments of the message)

Setup = Callable[[Inputs, Path], list[str]]


def _user_dir(d: Path) -> Path:
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("my notes")
    (d / "mine" / "counts.csv").write_text("name,count\nx,1\n")
    return d / "mine"


def _copied_unlearned_model(inp: Inputs, d: Path) -> list[str]:
    shutil.copytree(inp.model, d / "unlearned")  # weights and tokenizer, no pretraining record
    return ["pretrain", "--data", str(inp.data), "--out", str(d / "unlearned"), *PRETRAIN]


def _finished_on_other_data(inp: Inputs, d: Path) -> list[str]:
    shutil.copytree(inp.ref["model"], d / "model")
    return ["pretrain", "--data", str(inp.other_data), "--out", str(d / "model"), *PRETRAIN]


def _legacy_study_dir(inp: Inputs, d: Path) -> list[str]:
    run_dir = d / "run"
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "study.json").write_text("{}\n")
    (run_dir / "data" / ".stage.json").write_text('{"key": "x"}\n')
    return ["study", str(study_config(d / "s.yaml")), "--out", str(run_dir), "--dry-run"]


def _foreign_parquet(inp: Inputs, d: Path) -> list[str]:
    pd.DataFrame({"a": [1, 2]}).to_parquet(d / "scores.parquet")
    return _evaluate_args(inp, d / "scores.parquet")


def _non_utf8_csv(inp: Inputs, d: Path) -> list[str]:
    (d / "items.csv").write_bytes(b"item_id,question,answer\nq1,Who employs Ad\xe9?,Google\n")
    return [
        "evaluate",
        "--model",
        str(inp.model),
        "--items",
        str(d / "items.csv"),
        "--out",
        str(d / "s.parquet"),
    ]


CASES: list[tuple[str, Setup, int, tuple[str, ...]]] = [
    # bad configs
    (
        "generate-bad-type",
        lambda i, d: ["generate", "--out", str(d / "g"), "n_people=many"],
        2,
        ("n_people",),
    ),
    ("generate-unknown-key", lambda i, d: ["generate", "--out", str(d / "g"), "n_peple=8"], 2, ("n_peple",)),
    (
        "pretrain-unknown-preset",
        lambda i, d: ["pretrain", "--data", str(i.data), "--out", str(d / "m"), "--preset", "huge"],
        2,
        ("preset",),
    ),
    ("unlearn-bad-method", lambda i, d: _unlearn_args(i, d / "u", "--method", "forget-it"), 2, ("--method",)),
    (
        "evaluate-bad-metric",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "--metrics", "vibes"),
        2,
        ("metrics",),
    ),
    (
        "evaluate-dtype-int8",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "dtype=int8"),
        2,
        ("dtype", "int8"),
    ),
    ("unlearn-dtype-int8", lambda i, d: _unlearn_args(i, d / "u", "dtype=int8"), 2, ("dtype", "int8")),
    (
        "evaluate-device-cuda",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "device=cuda"),
        2,
        ("device", "cuda"),
    ),
    (
        "evaluate-device-nonsense",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "device=gpu9"),
        2,
        ("device", "gpu9"),
    ),
    (
        "count-bad-measure",
        lambda i, d: ["count", "--items", str(i.qa), "--out", str(d / "c.jsonl"), "measure=vibes"],
        2,
        ("measure",),
    ),
    (
        "study-bad-method",
        lambda i, d: [
            "study",
            str(study_config(d / "s.yaml")),
            "study.methods=[xx+gd]",
            "--out",
            str(d / "run"),
        ],
        2,
        ("xx",),
    ),
    # bad tables
    (
        "count-non-utf8",
        lambda i, d: [
            "count",
            "--items",
            str(non_utf8_jsonl(d / "t.jsonl", _qa_rows()[0])),
            "--backend",
            "scan",
            "--corpus",
            str(i.data / "corpus.jsonl"),
            "--out",
            str(d / "c.jsonl"),
        ],
        2,
        ("t.jsonl:1", "UTF-8"),
    ),
    (
        "evaluate-bio-non-utf8",
        lambda i, d: _evaluate_args(
            i,
            d / "s.parquet",
            "--bio",
            str(non_utf8_jsonl(d / "bio.jsonl", {"item_id": "x", "prompt": "Ada"})),
        ),
        2,
        ("bio.jsonl:1", "UTF-8"),
    ),
    (
        "unlearn-bio-non-utf8",
        lambda i, d: _unlearn_args(
            i,
            d / "u",
            "--bio-prompts",
            str(non_utf8_jsonl(d / "bio.jsonl", {"item_id": "x", "prompt": "Ada"})),
        ),
        2,
        ("bio.jsonl:1", "UTF-8"),
    ),
    ("evaluate-csv-non-utf8", _non_utf8_csv, 2, ("items.csv",)),
    (
        "evaluate-broken-json",
        lambda i, d: _evaluate_args(
            i, d / "s.parquet", "--items", str(_file(d / "b.jsonl", '{"item_id": \n'))
        ),
        2,
        ("b.jsonl:1", "not valid JSON"),
    ),
    (
        "unlearn-missing-forget",
        lambda i, d: _unlearn_args(i, d / "u", "--forget", str(d / "nope.jsonl")),
        2,
        ("nope.jsonl",),
    ),
    (
        "pretrain-data-not-generated",
        lambda i, d: ["pretrain", "--data", str(d), "--out", str(d / "m"), *PRETRAIN],
        2,
        ("corpus.jsonl",),
    ),
    # bad models
    (
        "evaluate-truncated-weights",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "--model", str(truncated_model(i, d / "cut"))),
        2,
        ("cut", "unreadable or incomplete"),
    ),
    (
        "unlearn-truncated-weights",
        lambda i, d: _unlearn_args(i, d / "u", "--model", str(truncated_model(i, d / "cut"))),
        2,
        ("cut", "unreadable or incomplete"),
    ),
    (
        "evaluate-no-tokenizer",
        lambda i, d: _evaluate_args(
            i, d / "s.parquet", "--model", str(model_without_tokenizer(i, d / "bare"))
        ),
        2,
        ("bare", "no tokenizer files"),
    ),
    (
        "unlearn-no-tokenizer",
        lambda i, d: _unlearn_args(i, d / "u", "--model", str(model_without_tokenizer(i, d / "bare"))),
        2,
        ("bare", "no tokenizer files"),
    ),
    (
        "evaluate-model-missing",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "--model", str(d / "none")),
        2,
        ("none", "no such directory"),
    ),
    (
        "evaluate-no-weights",
        lambda i, d: _evaluate_args(
            i,
            d / "s.parquet",
            "--model",
            str(shutil.copytree(i.model, d / "now", ignore=shutil.ignore_patterns("*.safetensors"))),
        ),
        2,
        ("now", "cannot load a causal LM"),
    ),
    # bad output paths
    (
        "generate-into-user-dir",
        lambda i, d: ["generate", "--out", str(_user_dir(d)), "n_people=8"],
        2,
        ("mine", "did not write", "--overwrite"),
    ),
    (
        "generate-out-is-file",
        lambda i, d: ["generate", "--out", str(_file(d / "f")), "n_people=8"],
        2,
        ("is a file",),
    ),
    (
        "generate-out-readonly",
        lambda i, d: ["generate", "--out", str(readonly_dir(d) / "g"), "n_people=8"],
        2,
        ("cannot write",),
    ),
    (  # a missing parent is created; a file where it would go is refused
        "generate-out-under-a-file",
        lambda i, d: ["generate", "--out", str(_file(d / "a") / "b"), "n_people=8"],
        2,
        ("is a file, not a directory",),
    ),
    ("pretrain-into-copied-model", _copied_unlearned_model, 2, ("unlearned", "did not write")),
    ("pretrain-finished-on-other-data", _finished_on_other_data, 2, ("other data",)),
    (
        "pretrain-out-is-file",
        lambda i, d: ["pretrain", "--data", str(i.data), "--out", str(_file(d / "f")), *PRETRAIN],
        2,
        ("is a file",),
    ),
    (
        "pretrain-out-readonly",
        lambda i, d: ["pretrain", "--data", str(i.data), "--out", str(readonly_dir(d) / "m"), *PRETRAIN],
        2,
        ("cannot write",),
    ),
    (
        "pretrain-into-data-dir",
        lambda i, d: [
            "pretrain",
            "--data",
            str(i.data),
            "--out",
            str(shutil.copytree(i.data, d / "data")),
            *PRETRAIN,
        ],
        2,
        ("a data directory",),
    ),
    ("unlearn-into-user-dir", lambda i, d: _unlearn_args(i, _user_dir(d)), 2, ("did not write",)),
    ("unlearn-out-is-file", lambda i, d: _unlearn_args(i, _file(d / "f")), 2, ("is a file",)),
    ("unlearn-out-readonly", lambda i, d: _unlearn_args(i, readonly_dir(d) / "u"), 2, ("cannot write",)),
    ("evaluate-out-is-dir", lambda i, d: _evaluate_args(i, _dir(d / "s.parquet")), 2, ("is a directory",)),
    (
        "evaluate-out-readonly",
        lambda i, d: _evaluate_args(i, readonly_dir(d) / "s.parquet"),
        2,
        ("cannot write",),
    ),
    ("evaluate-over-foreign-parquet", _foreign_parquet, 2, ("not written by this tool", "--overwrite")),
    (
        "evaluate-out-under-a-file",
        lambda i, d: _evaluate_args(i, _file(d / "x") / "s.parquet"),
        2,
        ("is a file, not a directory",),
    ),
    (
        "count-over-user-table",
        lambda i, d: ["count", "--items", str(i.qa), "--out", str(_file(d / "mine.jsonl"))],
        2,
        ("not written by this tool",),
    ),
    (
        "count-out-readonly",
        lambda i, d: ["count", "--items", str(i.qa), "--out", str(readonly_dir(d) / "c.jsonl")],
        2,
        ("cannot write",),
    ),
    (
        "study-into-user-dir",
        lambda i, d: ["study", str(study_config(d / "s.yaml")), "--out", str(_user_dir(d))],
        2,
        ("did not write",),
    ),
    (
        "study-out-is-file",
        lambda i, d: ["study", str(study_config(d / "s.yaml")), "--out", str(_file(d / "f"))],
        2,
        ("is a file",),
    ),
    ("report-not-a-study", lambda i, d: ["report", str(_user_dir(d))], 2, ("not a study run directory",)),
    ("report-missing-dir", lambda i, d: ["report", str(d / "nope")], 2, ("no such directory",)),
    # a study directory of the current layout is the study's own: it resumes without --overwrite
    ("study-resumes-legacy-dir", _legacy_study_dir, 0, ("generate",)),
]


def _file(path: Path, text: str = "someone's file\n") -> Path:
    path.write_text(text)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("name,setup,code,fragments", CASES, ids=[c[0] for c in CASES])
def test_one_line(name, setup, code, fragments, inputs, tmp_path, capsys):
    if name == "evaluate-device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = setup(inputs, tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path, inputs.root)
    got, out, err = run(capsys, argv)
    after = snapshot(tmp_path, inputs.root)
    assert got == code, err
    message = err if code else out
    assert "Traceback" not in err
    if code:
        assert message.startswith("error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message, message
    assert lost(before, after, lambda p: False) == []
    if code:  # a refused command leaves nothing new either, beyond what the case set up
        assert set(after) == set(before)


# ---------------------------------------------------------------- writing into its own output


def test_generate_rerun_keeps_the_users_files(inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.data, tmp_path / "data"))
    (out / "notes.txt").write_text("my notes")
    (out / "counted.csv").write_text("a,1\n")
    before = snapshot(tmp_path)
    code, text, err = run(capsys, ["generate", "--out", str(out), "n_people=12", "seed=1"])
    assert code == 0 and text.count("\n") == 1 and text.startswith("wrote "), err
    after = snapshot(tmp_path)
    assert (
        lost(
            before,
            after,
            lambda p: Path(p).parent == out and Path(p).name != "counted.csv" and Path(p).name != "notes.txt",
        )
        == []
    )
    assert (out / "corpus.jsonl").read_bytes() == (inputs.other_data / "corpus.jsonl").read_bytes()


def test_generate_into_a_directory_of_the_old_layout(inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.data, tmp_path / "data"))
    (out / OUTPUT_MARKER).unlink()  # written before the marker existed: its manifest marks it
    assert run(capsys, ["generate", "--out", str(out), "n_people=12"])[0] == 0


def test_unlearn_over_an_earlier_run_replaces_only_its_own_files(inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.ref["unlearn"], tmp_path / "u"))
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, text, err = run(capsys, _unlearn_args(inputs, out, "seed=1"))
    assert code == 0, err
    after = snapshot(tmp_path)
    assert after[str(out / "notes.txt")] == before[str(out / "notes.txt")]
    assert after[str(out / "run.json")] != before[str(out / "run.json")]
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["seed"] == 1
    assert record["inputs_sha256"]["forget"] == hashlib.sha256(inputs.qa.read_bytes()).hexdigest()


def test_finished_pretraining_on_the_same_data_is_reused_untouched(inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.ref["model"], tmp_path / "model"))
    (out / OUTPUT_MARKER).unlink()  # written before the marker existed: its knowledge.jsonl marks it
    before = snapshot(tmp_path)
    code, text, err = run(capsys, ["pretrain", "--data", str(inputs.data), "--out", str(out), *PRETRAIN])
    assert code == 0 and text.strip() == str(out), err
    assert lost(before, snapshot(tmp_path), lambda p: False) == []


def test_stale_temps_of_others_are_not_removed(inputs, tmp_path, capsys):
    """Only leftovers that carry the tool's mark are cleaned; a user's look-alike stays."""
    look_alike = tmp_path / ".data.abcdefgh.tmp"
    look_alike.mkdir()
    (look_alike / "keep.txt").write_text("mine")
    ours = tmp_path / ".data.12345678.tmp"
    ours.mkdir()
    (ours / OUTPUT_MARKER).write_text('{"kind": "data"}')
    assert run(capsys, ["generate", "--out", str(tmp_path / "data"), "n_people=8"])[0] == 0
    assert (look_alike / "keep.txt").read_text() == "mine" and not ours.exists()


def test_overwrite_writes_into_a_users_directory_and_keeps_its_files(inputs, tmp_path, capsys):
    mine = _user_dir(tmp_path)
    before = snapshot(tmp_path)
    assert run(capsys, ["generate", "--out", str(mine), "n_people=8", "--overwrite"])[0] == 0
    assert lost(before, snapshot(tmp_path), lambda p: False) == []
    assert (mine / "manifest.json").is_file()


def test_overwrite_replaces_a_foreign_parquet(inputs, tmp_path, capsys):
    _foreign_parquet(inputs, tmp_path)
    code, _, err = run(capsys, _evaluate_args(inputs, tmp_path / "scores.parquet", "--overwrite"))
    assert code == 0, err
    assert (tmp_path / "scores.run.json").is_file()


def test_evaluate_checks_out_before_loading_the_model(inputs, tmp_path, capsys):
    """A bad --out is refused before any work: even a missing model is not looked at."""
    (tmp_path / "s.parquet").mkdir()
    code, _, err = run(
        capsys, _evaluate_args(inputs, tmp_path / "s.parquet", "--model", str(tmp_path / "no"))
    )
    assert code == 2 and "is a directory" in err


# ---------------------------------------------------------------- kill -9 and rerun


def _same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _at(spec: dict, out: Path) -> dict:
    """The kill point with `{out}` in its glob filled in (so a scratch copy of the file does not match)."""
    return {k: v.format(out=out) if isinstance(v, str) else v for k, v in spec.items()}


def _no_temps(parent: Path) -> None:
    left = [p.name for p in parent.rglob("*") if p.name.endswith(".tmp")]
    assert left == [], left


GENERATE_KILLS = [
    ("before-manifest", {"call": "frequnlearn.data.generate:sha256_file", "n": 1}),
    ("mid-commit", {"replace": "*/data/corpus.jsonl", "n": 1}),
]


@pytest.mark.parametrize("name,spec", GENERATE_KILLS, ids=[k[0] for k in GENERATE_KILLS])
def test_kill_generate(name, spec, inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.other_data, tmp_path / "data"))  # an earlier data directory
    (out / "notes.txt").write_text("mine")
    argv = ["generate", "--out", str(out), "n_people=12"]
    before = snapshot(tmp_path)
    kill_at(argv, spec)
    assert (out / "notes.txt").read_text() == "mine"
    if name == "before-manifest":  # nothing was moved in yet
        assert lost(before, snapshot(tmp_path), lambda p: False) == []
    else:  # the set says it is incomplete: no manifest beside a mix of files
        assert not (out / "manifest.json").exists()
    code, text, _ = run(capsys, argv)
    assert code == 0 and text.count("\n") == 1
    _same_files(out, inputs.data, ["people.jsonl", "corpus.jsonl", "qa.jsonl", "bio_prompts.jsonl"])
    assert (out / "notes.txt").read_text() == "mine"
    _no_temps(tmp_path)


# Each kill case starts a fresh Python (torch and transformers imports included): one per command
# runs by default, the others are marked slow.
SLOW = pytest.mark.slow
PRETRAIN_KILLS = [
    pytest.param(
        "after-first-checkpoint", {"replace": "*/checkpoints/step-*", "n": 1, "after": True}, marks=SLOW
    ),
    pytest.param(
        "after-second-checkpoint", {"replace": "*/checkpoints/step-*", "n": 2, "after": True}, marks=SLOW
    ),
    pytest.param("before-done-marker", {"replace": f"*/{STAGE_FILE}", "n": 1}, marks=SLOW),
]


def _assert_same_model(a: Path, b: Path) -> None:
    from transformers import AutoModelForCausalLM

    x = AutoModelForCausalLM.from_pretrained(a).state_dict()
    y = AutoModelForCausalLM.from_pretrained(b).state_dict()
    for key in x:
        torch.testing.assert_close(x[key], y[key], rtol=0, atol=1e-6)
    loss = [(r["step"], r["loss"]) for r in map(json.loads, (a / "metrics.jsonl").read_text().splitlines())]
    assert loss == [
        (r["step"], r["loss"]) for r in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())
    ]


@pytest.mark.parametrize("name,spec", PRETRAIN_KILLS, ids=[k.values[0] for k in PRETRAIN_KILLS])
def test_kill_pretrain(name, spec, inputs, tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["pretrain", "--data", str(inputs.data), "--out", str(out), *PRETRAIN]
    kill_at(argv, spec)
    assert not (out / STAGE_FILE).exists()
    code, text, err = run(capsys, argv)
    assert code == 0 and text.strip() == str(out), err
    assert "resuming from checkpoint step-" in err
    _assert_same_model(inputs.ref["model"], out)
    _no_temps(out)


def test_kill_pretrain_then_lose_a_checkpoints_weights(inputs, tmp_path, capsys):
    """The newest checkpoint's weight file is gone: resume falls back to the one before and says so."""
    out = tmp_path / "model"
    argv = ["pretrain", "--data", str(inputs.data), "--out", str(out), *PRETRAIN]
    kill_at(argv, {"replace": "*/checkpoints/step-*", "n": 2, "after": True})
    newest = sorted((out / "checkpoints").iterdir())[-1]
    for weights in newest.glob("*model*"):
        weights.unlink()
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert (
        f"checkpoint {newest.name} is not resumable (model.safetensors is missing)" in err
        and "resuming from checkpoint step-00000004" in err
    )
    _assert_same_model(inputs.ref["model"], out)


UNLEARN_KILLS = [
    pytest.param(
        "after-first-evaluation", {"replace": "*/trajectory.parquet", "n": 1, "after": True}, marks=SLOW
    ),
    pytest.param(
        "while-saving-the-model", {"call": "frequnlearn.unlearn.loop:atomic_dir", "n": 1}, marks=SLOW
    ),
    pytest.param("mid-commit", {"replace": "{out}/trajectory.parquet", "n": 1, "after": True}),
]


@pytest.mark.parametrize("name,spec", UNLEARN_KILLS, ids=[k.values[0] for k in UNLEARN_KILLS])
def test_kill_unlearn(name, spec, inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.ref["unlearn"], tmp_path / "u"))  # an earlier run's directory
    (out / "notes.txt").write_text("mine")
    argv = _unlearn_args(inputs, out)
    before = snapshot(tmp_path)
    kill_at(argv, _at(spec, out))
    if name == "mid-commit":  # the set says it is incomplete
        assert not (out / "run.json").exists()
    else:  # the earlier run is untouched
        assert lost(before, snapshot(tmp_path), lambda p: False) == []
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"
    ref = pd.read_parquet(inputs.ref["unlearn"] / "trajectory.parquet")
    pd.testing.assert_frame_equal(ref, pd.read_parquet(out / "trajectory.parquet"))
    _same_files(out, inputs.ref["unlearn"], ["log.jsonl"])
    _no_temps(tmp_path)


EVALUATE_KILLS = [
    pytest.param("while-summarising", {"call": "frequnlearn.evaluate.cli:summaries", "n": 1}, marks=SLOW),
    pytest.param("mid-commit", {"replace": "{out}/scores.summary.csv", "n": 1, "after": True}),
]


@pytest.mark.parametrize("name,spec", EVALUATE_KILLS, ids=[k.values[0] for k in EVALUATE_KILLS])
def test_kill_evaluate(name, spec, inputs, tmp_path, capsys):
    for path in inputs.ref["scores"].parent.glob("scores.*"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("mine")
    argv = _evaluate_args(inputs, tmp_path / "scores.parquet", "--step", "3")
    before = snapshot(tmp_path)
    kill_at(argv, _at(spec, tmp_path))
    if name == "mid-commit":  # no run record beside a mix of old and new files
        assert not (tmp_path / "scores.run.json").exists()
    else:
        assert lost(before, snapshot(tmp_path), lambda p: False) == []
    code, text, err = run(capsys, argv)
    assert code == 0, err
    ref = pd.read_parquet(inputs.ref["scores"]).assign(step=3)
    pd.testing.assert_frame_equal(ref, pd.read_parquet(tmp_path / "scores.parquet"))
    record = json.loads((tmp_path / "scores.run.json").read_text())
    assert record["inputs_sha256"] == {"items": hashlib.sha256(inputs.qa.read_bytes()).hexdigest()}
    for name_, digest in record["files"].items():
        assert hashlib.sha256((tmp_path / name_).read_bytes()).hexdigest() == digest
    assert (tmp_path / "notes.txt").read_text() == "mine"
    _no_temps(tmp_path)


@pytest.fixture(scope="module")
def study_ref(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("study")
    config = study_config(root / "s.yaml")
    assert main(["study", str(config), "--out", str(root / "run"), "--quiet"]) == 0
    return config, root / "run"


STUDY_KILLS = [
    ("pretrain-checkpoint", {"replace": "*/checkpoints/step-*", "n": 1, "after": True}),
    ("unlearn-evaluation", {"replace": "*/trajectory.parquet", "n": 1, "after": True}),
    ("report", {"replace": "*/.report.*.tmp/*.csv", "n": 1}),  # the report is built as a set beside it
]


@pytest.mark.slow
@pytest.mark.parametrize("name,spec", STUDY_KILLS, ids=[k[0] for k in STUDY_KILLS])
def test_kill_study(name, spec, study_ref, tmp_path, capsys):
    config, ref = study_ref
    out = tmp_path / "run"
    argv = ["study", str(config), "--out", str(out), "--quiet"]
    kill_at(argv, spec)
    code, text, err = run(capsys, argv)
    assert code == 0 and text.startswith("report: "), err
    a = pd.read_csv(ref / "report" / "curves.csv")
    pd.testing.assert_frame_equal(a, pd.read_csv(out / "report" / "curves.csv"))
    _no_temps(out)


# ---------------------------------------------------------------- trust: paths, code, outputs, inputs, resources
#
# Each case is (class, name, setup, expected exit code, fragments of the one line). `setup(inputs, d)`
# prepares the case directory `d` and returns the command line. The check is the one of
# `test_one_line`, plus: no pickle is ever loaded with code (every torch.load call must say
# weights_only=True), no payload a case planted ever runs (it would create `d/PWNED`), and the
# command finishes within the pytest timeout (no silent hang).

PAYLOAD = "PWNED"


class _Payload:
    """Unpickled with code allowed, this makes the directory `flag`: the proof that a pickle ran."""

    def __init__(self, flag: Path) -> None:
        self.flag = str(flag)

    def __reduce__(self):
        return (os.mkdir, (self.flag,))


def _plant_pickle(path: Path, flag: Path) -> None:
    torch.save({"state": _Payload(flag)}, path)


@pytest.fixture(autouse=True)
def no_code_from_pickles(monkeypatch):
    """Every torch.load in these tests must refuse code (weights_only=True)."""
    real = torch.load

    def load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)


def _resumable_copy(inp: Inputs, d: Path) -> Path:
    """The reference pretraining run as a kill after its step-8 checkpoint leaves it."""
    out = Path(shutil.copytree(inp.ref["model"], d / "model"))
    for name in (STAGE_FILE, "run.json", "model.safetensors"):
        (out / name).unlink()
    return out


def _pretrain_args(inp: Inputs, out: Path) -> list[str]:
    return ["pretrain", "--data", str(inp.data), "--out", str(out), *PRETRAIN]


def _real_study_config(inp: Inputs, d: Path, levels: str) -> Path:
    path = d / "real.yaml"
    path.write_text(
        f"study: {{setting: real, model: {inp.model}, items: {inp.qa}, compare_by: bucket, "
        f"levels: {levels}, methods: [ga+gd], n_boot: 100}}\ncount: {{backend: ground-truth}}\n"
    )
    return path


def _victim(d: Path) -> Path:
    """A user's directory beside the run, with files that must survive every case."""
    victim = d / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    return victim


def _escape_by_level(inp: Inputs, d: Path) -> list[str]:
    _victim(d)
    return ["study", str(_real_study_config(inp, d, '["../../../../victim", low]')), "--out", str(d / "run")]


def _escape_by_level_dry_run(inp: Inputs, d: Path) -> list[str]:
    return [*_escape_by_level(inp, d), "--dry-run"]


def _escape_by_exposure_level(inp: Inputs, d: Path) -> list[str]:
    _victim(d)
    config = study_config(d / "s.yaml")
    return [
        "study",
        str(config),
        "study.compare_by=frequency",
        "study.levels=[1/../../victim,10]",
        "--dry-run",
    ]


def _escape_by_symlink(inp: Inputs, d: Path) -> list[str]:
    """A study directory whose data folder is a symlink to an (empty) folder outside it."""
    (d / "elsewhere").mkdir()
    run_dir = d / "run"
    run_dir.mkdir()
    (run_dir / "study.json").write_text("{}\n")
    (run_dir / "data").symlink_to(d / "elsewhere", target_is_directory=True)
    return ["study", str(study_config(d / "s.yaml")), "--out", str(run_dir), "--quiet"]


def _pickle_in_newest_checkpoint(inp: Inputs, d: Path) -> list[str]:
    out = _resumable_copy(inp, d)
    _plant_pickle(out / "checkpoints" / "step-00000008" / "optimizer.pt", d / PAYLOAD)
    return _pretrain_args(inp, out)


def _pickle_with_forged_hashes(inp: Inputs, d: Path) -> list[str]:
    """The planted file's hash written into the trainer state too: weights_only=True is the last wall."""
    from frequnlearn.records import sha256_file

    out = _resumable_copy(inp, d)
    for ckpt in (out / "checkpoints").iterdir():
        target = ckpt / "rng-0.pt"
        _plant_pickle(target, d / PAYLOAD)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        state["files"]["rng-0.pt"] = {"size": target.stat().st_size, "sha256": sha256_file(target)}
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
    return _pretrain_args(inp, out)


def _pickles_of_the_old_format(inp: Inputs, d: Path) -> list[str]:
    """Checkpoints as accelerate wrote them (pickles, no format, no hashes), one holding a payload."""
    out = _resumable_copy(inp, d)
    for ckpt in (out / "checkpoints").iterdir():
        state = json.loads((ckpt / "trainer_state.json").read_text())
        state.pop("format"), state.pop("files")
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
        _plant_pickle(ckpt / "custom_checkpoint_0.pkl", d / PAYLOAD)
        _plant_pickle(ckpt / "random_states_0.pkl", d / PAYLOAD)
    return _pretrain_args(inp, out)


def _model_with_custom_code(inp: Inputs, d: Path, file: str = "config.json") -> Path:
    model = Path(shutil.copytree(inp.model, d / "custom"))
    config = json.loads((model / file).read_text())
    config["auto_map"] = {
        "AutoModelForCausalLM": "modeling_evil.EvilLM",
        "AutoTokenizer": ["tokenization_evil.T", None],
    }
    (model / file).write_text(json.dumps(config))
    code = f"import os\nos.mkdir({str(d / PAYLOAD)!r})\n"
    (model / "modeling_evil.py").write_text(code)
    (model / "tokenization_evil.py").write_text(code)
    return model


def _edited_data(inp: Inputs, d: Path) -> Path:
    """A copy of a generated data directory whose answers were all edited after `generate`."""
    data = Path(shutil.copytree(inp.data, d / "data"))
    rows = [json.loads(line) for line in (data / "qa.jsonl").read_text().splitlines()]
    for row in rows:
        row["answer"] = row["answer"] + " Inc"
    (data / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _table(d: Path, rows: list[dict]) -> Path:
    path = d / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(**changes: dict) -> list[dict]:
    rows = _qa_rows()
    for i, change in changes.items():
        rows[int(i[1:])].update(change)
    return rows


def _yaml_with_a_duplicate_key(d: Path) -> Path:
    path = study_config(d / "s.yaml")
    path.write_text(path.read_text() + "generate: {n_people: 12}\n")
    return path


TRUST_CASES: list[tuple[str, str, Setup, int, tuple[str, ...]]] = [
    # outputs stay inside --out
    ("path", "study-level-escapes-the-run", _escape_by_level, 2, ("study.levels", "not a plain name")),
    (
        "path",
        "study-level-escapes-dry-run",
        _escape_by_level_dry_run,
        2,
        ("study.levels", "not a plain name"),
    ),
    ("path", "study-exposure-level-escapes", _escape_by_exposure_level, 2, ("study.levels",)),
    ("path", "study-data-symlinked-out", _escape_by_symlink, 2, ("leads to", "outside the output")),
    # no code from checkpoints or model directories
    (
        "pickle",
        "pretrain-pickle-in-newest-checkpoint",
        _pickle_in_newest_checkpoint,
        0,
        ("step-00000008 is not resumable (optimizer.pt holds", "resuming from checkpoint step-00000004"),
    ),
    ("pickle", "pretrain-pickle-with-forged-hashes", _pickle_with_forged_hashes, 2, ("replaced on purpose",)),
    (
        "pickle",
        "pretrain-pickles-of-the-old-format",
        _pickles_of_the_old_format,
        0,
        ("step-00000008 is not resumable (written by an earlier version as pickles", "training from step 0"),
    ),
    (
        "remote-code",
        "evaluate-model-with-custom-code",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "--model", str(_model_with_custom_code(i, d))),
        2,
        ("config.json names custom code (modeling_evil.py, tokenization_evil.py)", "trust_remote_code=True"),
    ),
    (
        "remote-code",
        "unlearn-tokenizer-with-custom-code",
        lambda i, d: _unlearn_args(
            i, d / "u", "--model", str(_model_with_custom_code(i, d, "tokenizer_config.json"))
        ),
        2,
        ("tokenizer_config.json names custom code", "never runs"),
    ),
    # inputs a manifest vouches for are checked when read
    (
        "tampered-input",
        "evaluate-edited-answers",
        lambda i, d: _evaluate_args(i, d / "s.parquet", "--items", str(_edited_data(i, d))),
        2,
        ("qa.jsonl", "differs from the sha256 its manifest.json recorded"),
    ),
    (
        "tampered-input",
        "unlearn-edited-answers",
        lambda i, d: _unlearn_args(i, d / "u", "--forget", f"{_edited_data(i, d)}?group=forget_high"),
        2,
        ("qa.jsonl", "differs from the sha256"),
    ),
    (
        "tampered-input",
        "pretrain-edited-answers",
        lambda i, d: ["pretrain", "--data", str(_edited_data(i, d)), "--out", str(d / "m"), *PRETRAIN],
        2,
        ("qa.jsonl", "differs from the sha256"),
    ),
    # values that would make wrong numbers or crash later
    (
        "value",
        "generate-negative-seed",
        lambda i, d: ["generate", "--out", str(d / "g"), "seed=-1"],
        2,
        ("seed", "2^32"),
    ),
    (
        "value",
        "generate-seed-2^32",
        lambda i, d: ["generate", "--out", str(d / "g"), "seed=4294967296"],
        2,
        ("seed", "4294967295"),
    ),
    (
        "value",
        "study-seed-2^32-dry-run",
        lambda i, d: ["study", str(study_config(d / "s.yaml")), "study.seeds=[4294967296]", "--dry-run"],
        2,
        ("study.seeds", "4294967295"),
    ),
    (
        "value",
        "generate-exposure-1e9",
        lambda i, d: ["generate", "--out", str(d / "g"), "high_exposure=1000000000"],
        2,
        ("high_exposure", "1000000"),
    ),
    (
        "value",
        "generate-exposure-level-2e6",
        lambda i, d: ["generate", "--out", str(d / "g"), "exposure_levels=[1,2000000]"],
        2,
        ("exposure_levels", "1000000"),
    ),
    (
        "value",
        "unlearn-epochs-1e6",
        lambda i, d: _unlearn_args(i, d / "u", "epochs=1000000"),
        2,
        ("epochs", "between 1 and 100000"),
    ),
    (
        "value",
        "pretrain-epochs-1e9",
        lambda i, d: ["pretrain", "--data", str(i.data), "--out", str(d / "m"), *PRETRAIN, "epochs=1e9"],
        2,
        ("epochs", "100000"),
    ),
    (
        "value",
        "evaluate-duplicate-item-id",
        lambda i, d: _evaluate_args(
            i, d / "s.parquet", "--items", str(_table(d, _rows(r1={"item_id": "p00000-employer"})))
        ),
        2,
        ("p00000-employer", "more than once"),
    ),
    (
        "value",
        "unlearn-duplicate-item-id",
        lambda i, d: _unlearn_args(
            i, d / "u", "--forget", str(_table(d, _rows(r2={"item_id": "p00001-employer"})))
        ),
        2,
        ("p00001-employer", "more than once"),
    ),
    (
        "value",
        "evaluate-answer-of-symbols",
        lambda i, d: _evaluate_args(
            i, d / "s.parquet", "--items", str(_table(d, _rows(r0={"answer": "++"})))
        ),
        2,
        ("'++'", "no letters or digits"),
    ),
    (
        "value",
        "evaluate-candidate-is-the-answer",
        lambda i, d: _evaluate_args(
            i, d / "s.parquet", "--items", str(_table(d, _rows(r0={"candidates": ["google!", "Apple"]})))
        ),
        2,
        ("'google!'", "is the answer"),
    ),
    (
        "value",
        "study-one-level",
        lambda i, d: ["study", str(study_config(d / "s.yaml")), "study.levels=[forget_high]", "--dry-run"],
        2,
        ("study.levels", "at least two distinct levels"),
    ),
    (
        "value",
        "study-two-equal-levels",
        lambda i, d: [
            "study",
            str(study_config(d / "s.yaml")),
            "study.levels=[forget_low,forget_low]",
            "--dry-run",
        ],
        2,
        ("study.levels", "at least two distinct levels"),
    ),
    # duplicate keys
    (
        "duplicate-key",
        "study-config-duplicate-key",
        lambda i, d: ["study", str(_yaml_with_a_duplicate_key(d)), "--dry-run"],
        2,
        ("s.yaml", "key 'generate' is given twice"),
    ),
    (
        "duplicate-key",
        "generate-config-duplicate-key",
        lambda i, d: ["generate", "--config", str(_yaml_with_a_duplicate_key(d)), "--out", str(d / "g")],
        2,
        ("s.yaml", "given twice"),
    ),
]


# transformers' own "Loading weights" / "Writing model shards" bars, which it draws even off a terminal.
_BAR = re.compile(r"\r?[^\r\n]*\|[^\r\n|]*\|[^\r\n]*\[[^\]\r\n]*(?:it/s|s/it)\]\r?\n?")


def without_bars(err: str) -> str:
    return _BAR.sub("", err)


def _check_trust_case(setup, code, fragments, inputs, tmp_path, capsys) -> tuple[str, str]:
    argv = setup(inputs, tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path, inputs.root)
    got, out, err = run(capsys, argv)
    err = without_bars(err)
    after = snapshot(tmp_path, inputs.root)
    assert got == code, err
    assert "Traceback" not in err
    assert not (tmp_path / PAYLOAD).exists(), "a planted payload ran"
    lines = [line for line in err.splitlines() if line.strip()]
    # Only the command's own output may change: nothing outside it is lost or created.
    out_dir = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None

    def own(p: str) -> bool:
        return out_dir is not None and Path(p).is_relative_to(out_dir)

    assert lost(before, after, own) == []
    assert [p for p in set(after) - set(before) if not own(p)] == []
    if code:
        assert err.startswith("error: ") and err.count("\n") == 1, err
    else:
        for fragment in fragments:  # each notice once, not once per check of it
            assert sum(fragment in line for line in lines) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return out, err


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "kind,name,setup,code,fragments", TRUST_CASES, ids=[f"{c[0]}/{c[1]}" for c in TRUST_CASES]
)
def test_trust(kind, name, setup, code, fragments, inputs, tmp_path, capsys):
    _check_trust_case(setup, code, fragments, inputs, tmp_path, capsys)
    if kind == "pickle" and code == 0:  # trained on from a checkpoint it trusts: the same model
        _assert_same_model(inputs.ref["model"], tmp_path / "model")


def test_colliding_answers_are_flagged(inputs, tmp_path, capsys):
    """'C#' and 'C++' are one answer to the 'known' verdict: evaluated, but flagged on one line."""
    rows = _rows(
        r0={"answer": "C#", "object": "C#", "candidates": ["Java"]},
        r1={"answer": "C++", "object": "C++", "candidates": ["Rust"]},
    )
    code, _, err = run(
        capsys, _evaluate_args(inputs, tmp_path / "s.parquet", "--items", str(_table(tmp_path, rows)))
    )
    assert code == 0, err
    flagged = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(flagged) == 1 and "'C#'" in flagged[0] and "'C++'" in flagged[0] and "'c'" in flagged[0], err


def test_a_finished_run_with_a_cut_weight_file_is_trained_again(inputs, tmp_path, capsys):
    out = Path(shutil.copytree(inputs.ref["model"], tmp_path / "model"))
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = run(capsys, _pretrain_args(inputs, out))
    assert code == 0, err
    assert err.count("model.safetensors holds 1000 bytes") == 1 and "training it again" in err, err
    _assert_same_model(inputs.ref["model"], out)


# ---- a full disk, simulated: fsync (every atomic write's last step) fails with ENOSPC on chosen paths


def _full_disk_at(monkeypatch, pattern: str) -> None:
    import errno
    import fnmatch

    real = os.fsync

    def fsync(fd):
        if fnmatch.fnmatch(os.readlink(f"/proc/self/fd/{fd}"), pattern):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _small_disk(monkeypatch, free: int) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=free))


def _refused_one_line(capsys, argv, fragments, roots) -> None:
    before = snapshot(*roots)
    code, _, err = run(capsys, argv)
    err = without_bars(err)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert lost(before, snapshot(*roots), lambda p: False) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd's file")
def test_full_disk_unlearn_keeps_the_earlier_run(inputs, tmp_path, capsys, monkeypatch):
    out = Path(shutil.copytree(inputs.ref["unlearn"], tmp_path / "u"))
    _full_disk_at(monkeypatch, "*/.trajectory.parquet.*.tmp")
    before = set(snapshot(tmp_path))
    _refused_one_line(
        capsys, _unlearn_args(inputs, out), (str(out), "no space left", "needed more than"), [tmp_path]
    )
    assert set(snapshot(tmp_path)) == before  # nothing new: the scratch set is gone


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd's file")
def test_full_disk_pretrain_checkpoint(inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    _full_disk_at(monkeypatch, "*/checkpoints/.step-*/optimizer.pt")
    code, _, err = run(capsys, _pretrain_args(inputs, out))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{out}/checkpoints/step-00000004: no space left" in err and "needed more than" in err, err
    # Nothing half-written stands for a result: no weights, no run record, no scratch checkpoint.
    assert not (out / "model.safetensors").exists() and not (out / "run.json").exists()
    assert list((out / "checkpoints").iterdir()) == []


def test_small_disk_is_refused_before_any_work(inputs, tmp_path, capsys, monkeypatch):
    _small_disk(monkeypatch, 1000)
    _refused_one_line(
        capsys,
        ["generate", "--out", str(tmp_path / "g"), "n_people=12"],
        ("corpus", "only 1.0 KB free"),
        [tmp_path],
    )
    _refused_one_line(
        capsys,
        _pretrain_args(inputs, tmp_path / "m"),
        ("pretraining (checkpoints and model) needs about", "only 1.0 KB free"),
        [tmp_path, inputs.root],
    )


def test_a_corpus_above_the_memory_is_refused_before_any_work(inputs, tmp_path, capsys, monkeypatch):
    import frequnlearn.config.generate as generate_config

    monkeypatch.setattr(generate_config, "memory_limit", lambda: 10**9)
    big = ["n_people=600", "high_exposure=1000000"]
    fragments = ("high_exposure", "100,002,300 documents", "of memory, above the 1.0 GB available")
    _refused_one_line(capsys, ["generate", "--out", str(tmp_path / "g"), *big], fragments, [tmp_path])
    study = ["study", str(study_config(tmp_path / "s.yaml")), *[f"generate.{o}" for o in big], "--dry-run"]
    _refused_one_line(capsys, study, fragments, [tmp_path])


# ---- a mistyped model path fails at once


def test_a_mistyped_local_model_path_fails_in_under_two_seconds(inputs, tmp_path, capsys, monkeypatch):
    import time

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for model in ("runs/modell", "./modell", str(tmp_path / "runs" / "a" / "b")):
        start = time.perf_counter()
        code, _, err = run(capsys, _evaluate_args(inputs, tmp_path / "s.parquet", "--model", model))
        assert time.perf_counter() - start < 2.0, model
        assert code == 2 and f"--model {model}: no such directory" in err and err.count("\n") == 1, err


def test_a_hub_id_offline_fails_in_under_two_seconds(tmp_path):
    """With HF_HUB_OFFLINE=1 a hub id that is not cached is one line, with no request at all."""
    code = (
        "import time, sys\n"
        "from frequnlearn.models.loading import load_model_and_tokenizer\n"
        "from frequnlearn.errors import DataError\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "t = time.perf_counter()\n"
        "try:\n    load_model_and_tokenizer('no-such-owner/no-such-model')\n"
        "except DataError as err:\n    print(f'{time.perf_counter() - t:.3f}', err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    seconds, _, message = proc.stdout.strip().partition(" ")
    assert proc.returncode == 0 and message.startswith("--model no-such-owner/no-such-model"), proc.stderr[
        -2000:
    ]
    assert float(seconds) < 2.0


# ---- done markers checked against the outputs they name (a whole study: slow)


def _study_copy(study_ref, tmp_path) -> tuple[Path, Path]:
    config, ref = study_ref
    return config, Path(shutil.copytree(ref, tmp_path / "run", symlinks=True))


def _same_curves(ref: Path, out: Path) -> None:
    a = pd.read_csv(ref / "report" / "curves.csv")
    pd.testing.assert_frame_equal(a, pd.read_csv(out / "report" / "curves.csv"))


RUN = "unlearn/tiny-s0/ga+gd/forget_high-all"


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


STUDY_TAMPERS = [
    (
        "trajectory-deleted",
        lambda out: (out / RUN / "trajectory.parquet").unlink(),
        "trajectory.parquet is missing",
    ),
    (
        "trajectory-cut",
        lambda out: _cut(out / RUN / "trajectory.parquet"),
        "trajectory.parquet holds 3000 bytes",
    ),
    (
        "baseline-cut",
        lambda out: _cut(out / "models/tiny-s0/baseline/scores.parquet"),
        "scores.parquet holds 3000",
    ),
]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,tamper,why", STUDY_TAMPERS, ids=[t[0] for t in STUDY_TAMPERS])
def test_tampered_output_report_then_study(name, tamper, why, study_ref, tmp_path, capsys):
    """The report names the damaged file in one line (exit 2); the study reruns that stage, saying why."""
    config, out = _study_copy(study_ref, tmp_path)
    tamper(out)
    if not name.startswith("baseline"):  # the report reads trajectories only
        code, _, err = run(capsys, ["report", str(out)])
        assert code == 2 and err.count("\n") == 1 and why in err and "Traceback" not in err, err
    code, text, err = run(capsys, ["study", str(config), "--out", str(out), "--quiet"])
    assert code == 0 and text.startswith("report: "), err
    assert err.count(why) == 1 and "running its stage again" in err, err
    _same_curves(study_ref[1], out)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd's file")
def test_full_disk_report_keeps_the_previous_report(study_ref, tmp_path, capsys, monkeypatch):
    _, out = _study_copy(study_ref, tmp_path)
    _full_disk_at(monkeypatch, "*/.report.*.tmp/.report.html.*")
    _refused_one_line(capsys, ["report", str(out)], (f"{out}/report: no space left",), [tmp_path])
    assert not [p for p in out.iterdir() if p.name.startswith(".report.")]
