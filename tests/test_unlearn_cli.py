from __future__ import annotations

import json

import pandas as pd
import pytest

from frequnlearn.cli import main
from frequnlearn.records import read_json, read_jsonl

ANSWERS = ["Google", "Apple", "London, UK", "Paris"]


@pytest.fixture
def qa(tmp_path):
    """A generated-style qa.jsonl: 3 forget_high, 2 forget_low and 4 retain people, employer only."""
    groups = ["forget_high"] * 3 + ["forget_low"] * 2 + ["retain"] * 4
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
                "paraphrase": f"Who is the employer of Ada Mae {i}?",
                "frequency": 10 if group == "forget_high" else 1,
                "candidates": [a for a in ANSWERS if a != answer],
            }
        )
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(model, out, forget, retain, *extra):
    args = ["unlearn", "--model", str(model), "--forget", forget, "--out", str(out)]
    if retain is not None:
        args += ["--retain", retain]
    fast = ["lr=0.001", "batch_size=2", "max_steps=2", "eval_steps=[1]", "evaluate.metrics=[prob,gen]"]
    # Options first: argparse takes the KEY=VALUE overrides as one run of positionals at the end.
    return args + [*extra, *fast, "evaluate.max_new_tokens=4"]


def _high(qa):
    return f"{qa}?group=forget_high&attribute=employer"


def _retain(qa):
    return f"{qa}?group=retain"


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_same_command_on_two_architectures(fixture, request, qa, tmp_path, capsys):
    model_dir = request.getfixturevalue(fixture)
    out = tmp_path / "run"
    assert main(_args(model_dir, out, _high(qa), _retain(qa), "--method", "simnpo+gd")) == 0
    printed = capsys.readouterr().out
    assert "unlearned 3 items with simnpo+gd: 2 steps" in printed
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert sorted(traj["step"].unique()) == [0, 1, 2]
    counts = traj[(traj["step"] == 0) & (traj["probe"] == "question") & (traj["family"] == "gen")][
        "role"
    ].value_counts()
    # A fifth of the retain items (at least one) is held out of the retain loss and evaluated.
    assert counts.to_dict() == {"retain": 1, "forget": 3}
    assert set(traj.loc[traj["role"] == "forget", "group"]) == {"forget_high"}
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2] and all("retain_loss" in r for r in log)
    info = read_json(out / "run.json")
    assert info["config"]["method"] == "simnpo" and info["config"]["retain_loss"] == "gd"
    assert info["inputs"]["forget"].endswith("?group=forget_high&attribute=employer")
    assert info["evaluate"]["metrics"] == ["prob", "gen"]
    from transformers import AutoModelForCausalLM

    assert info["run"]["method"] == "simnpo+gd" and info["run"]["model"] == str(model_dir)
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    assert info["run"]["n_params"] == sum(p.numel() for p in original.parameters())

    assert AutoModelForCausalLM.from_pretrained(out / "model").config.model_type in ("gpt2", "llama")


def test_config_file_sections_and_bare_method(tiny_gpt2_dir, qa, tmp_path):
    """A study file's `unlearn:` and `evaluate:` sections are read; a bare --method keeps its retain_loss;
    a sample of retain items and extra items are evaluated with their roles."""
    study = tmp_path / "study.yaml"
    study.write_text(
        "unlearn:\n  retain_loss: kl\n  beta: 0.5\nevaluate:\n  metrics: [prob]\n  probes: [question]\n"
    )
    out = tmp_path / "run"
    extra = ["--eval-retain", "2", "--eval-items", f"{qa}?group=forget_low"]
    assert (
        main(
            _args(
                tiny_gpt2_dir, out, _high(qa), _retain(qa), "--config", str(study), "--method", "npo", *extra
            )
        )
        == 0
    )
    info = read_json(out / "run.json")
    assert (info["config"]["method"], info["config"]["retain_loss"], info["config"]["beta"]) == (
        "npo",
        "kl",
        0.5,
    )
    # evaluate.metrics on the command line wins over the file; probes come from the file.
    assert info["evaluate"]["metrics"] == ["prob", "gen"] and info["evaluate"]["probes"] == ["question"]
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert set(traj["probe"]) == {"question"}
    first = traj[(traj["step"] == 0) & (traj["family"] == "prob")]
    assert first["role"].value_counts().to_dict() == {"forget": 3, "retain": 2, "eval": 2}


@pytest.mark.parametrize(
    "forget, retain, extra, fragment",
    [
        ("{qa}?group=forget_mid", "{qa}?group=retain", [], "--forget {qa}?group=forget_mid: no rows match"),
        ("{qa}?group=forget_high", "{qa}", [], "also in the forget set"),
        (
            "{qa}?group=forget_high",
            "{qa}?group=retain",
            ["--method", "ga+xx"],
            "--method 'ga+xx': expected FORGET[+RETAIN]",
        ),
        ("{qa}", None, ["question_column=prompt"], "no column 'prompt'"),
        ("{tmp}/nope.csv", None, [], "nope.csv: file not found"),
        ("{qa}?group=forget_high", None, ["--method", "ga+gd"], "needs a retain table"),
    ],
)
def test_user_errors_are_one_line(tiny_gpt2_dir, qa, tmp_path, capsys, forget, retain, extra, fragment):
    def fill(text):
        return text.format(qa=qa, tmp=tmp_path)

    args = _args(tiny_gpt2_dir, tmp_path / "run", fill(forget), retain and fill(retain), *extra)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fill(fragment) in err[0], err


def test_evaluated_retain_people_are_never_in_the_retain_loss(tiny_gpt2_dir, qa, tmp_path):
    from frequnlearn.records import QAItem
    from frequnlearn.unlearn.cli import split_retain

    items = [QAItem(f"p{i}-{a}", "q", "a", person_id=i) for i in range(10) for a in ("x", "y")]
    trained, evaluated = split_retain(items, 3, 0, trained=True)
    assert len(evaluated) == 3 and {it.person_id for it in trained}.isdisjoint(
        it.person_id for it in evaluated
    )
    assert len(trained) + len({it.person_id for it in evaluated}) * 2 == 20
    trained, evaluated = split_retain(items, None, 0, trained=True)
    assert len(evaluated) == 4 and {it.person_id for it in trained}.isdisjoint(
        it.person_id for it in evaluated
    )
    assert split_retain(items, None, 0, trained=False) == (items, items)

    out = tmp_path / "run"
    assert (
        main(_args(tiny_gpt2_dir, out, _high(qa), _retain(qa), "--method", "ga+gd", "--eval-retain", "2"))
        == 0
    )
    sets = read_json(out / "run.json")["sets"]
    assert len(sets["eval_retain"]) == 2 and len(sets["retain"]) == 2
    assert set(sets["eval_retain"]).isdisjoint(sets["retain"])
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert set(traj.loc[traj["role"] == "retain", "item_id"]) == set(sets["eval_retain"])


def test_non_finite_training_exits_2_and_keeps_only_finite_steps(tiny_gpt2_dir, qa, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["unlearn", "--model", str(tiny_gpt2_dir), "--forget", _high(qa), "--retain", _retain(qa)]
    args += ["--out", str(out), "--method", "ga+gd", "lr=1e3", "weight_decay=0.01", "batch_size=2"]
    args += ["max_steps=12", f"eval_steps={list(range(13))}", "evaluate.metrics=[prob,gen]"]
    assert main([*args, "evaluate.max_new_tokens=2"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "step " in last and "not finite" in last and "lr" in last
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert traj["finite"].all() and traj.loc[traj["family"] == "prob", "rank"].notna().all()
    assert not (out / "model").exists()
