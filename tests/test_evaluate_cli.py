from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from frequnlearn.cli import main
from frequnlearn.evaluate import COLUMNS
from frequnlearn.records import write_jsonl


@pytest.fixture
def data(tmp_path):
    rows, bios = [], []
    for i, group in enumerate(["forget_high", "forget_high", "forget_low", "retain"]):
        item_id = f"p{i:05d}-employer"
        rows.append(
            {
                "item_id": item_id,
                "person_id": i,
                "group": group,
                "attribute": "employer",
                "question": f"Who employs Ada {i}?",
                "paraphrase": f"Where does Ada {i} work?",
                "answer": "Google" if i % 2 else "Apple",
                "candidates": ["Paris", "London, UK"],
                "frequency": 10 if group == "forget_high" else 1,
            }
        )
        bios.append(
            {
                "item_id": item_id,
                "person_id": i,
                "group": group,
                "attribute": "employer",
                "prompt": f"Ada {i} works for",
                "target": rows[-1]["answer"],
            }
        )
    write_jsonl(tmp_path / "qa.jsonl", rows)
    write_jsonl(tmp_path / "bio_prompts.jsonl", bios)
    return tmp_path


def test_evaluate_command_writes_scores_and_summaries(tiny_gpt2_dir, data, capsys):
    out = data / "scores.parquet"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_gpt2_dir),
            "--items",
            str(data / "qa.jsonl"),
            "--bio",
            str(data / "bio_prompts.jsonl"),
            "--select",
            "group=forget_high,forget_low",
            "--out",
            str(out),
            "max_new_tokens=4",
            "tf_shots=1",
            "n_boot=50",
            "--step",
            "3",
        ]
    )
    assert code == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == COLUMNS
    assert set(df.group) == {"forget_high", "forget_low"} and (df.step == 3).all()
    assert (df.run_id == "scores").all()
    # 3 items x (question, paraphrase) x (prob, gen, tf) + 3 bio x (prob, gen)
    assert len(df) == 3 * 2 * 3 + 3 * 2
    info = json.loads(pq.read_schema(out).metadata[b"frequnlearn"])
    assert info["config"]["max_new_tokens"] == 4 and info["n_items"] == 3 and "versions" in info
    assert json.loads((data / "scores.run.json").read_text())["n_rows"] == len(df)
    summary = pd.read_csv(data / "scores.summary.csv")
    assert set(summary["by"]) == {"group", "frequency"}
    row = summary[
        (summary["by"] == "frequency")
        & (summary.level == "10")
        & (summary.metric == "logprob")
        & (summary.probe == "question")
    ]
    assert len(row) == 1 and row.n.item() == 2
    assert row["mean"].item() == pytest.approx(
        df[(df.frequency == 10) & (df.family == "prob") & (df.probe == "question")].logprob.mean()
    )
    mis = pd.read_csv(data / "scores.misalignment.csv")
    assert {"disagree", "prob_only", "gen_only", "n"} <= set(mis.columns)
    assert "forget_high" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metrics", "prob,bogus"], "metrics"),
        (["--metrics", "bio"], "--bio"),
        (["--select", "group"], "--select"),
        (["--select", "colour=red"], "colour"),
        (["batch_sise=3"], "batch_size"),
    ],
)
def test_evaluate_command_errors(tiny_gpt2_dir, data, capsys, extra, message):
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_gpt2_dir),
            "--items",
            str(data / "qa.jsonl"),
            "--out",
            str(data / "s.parquet"),
            *extra,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_out_must_be_parquet(tiny_gpt2_dir, data, capsys):
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_gpt2_dir),
            "--items",
            str(data / "qa.jsonl"),
            "--out",
            str(data / "s.csv"),
        ]
    )
    assert code == 2 and ".parquet" in capsys.readouterr().err


def test_evaluate_command_utility(tiny_gpt2_dir, data, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [json.loads(line) for line in (data / "qa.jsonl").read_text().splitlines()]
    rows[-1]["group"] = "utility"
    write_jsonl(data / "qa.jsonl", rows)
    out = data / "u.parquet"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_gpt2_dir),
            "--items",
            str(data / "qa.jsonl"),
            "--metrics",
            "prob,utility",
            "--out",
            str(out),
            "utility_limit=3",
            "n_boot=0",
        ]
    )
    assert code == 0
    utility = json.loads((data / "u.run.json").read_text())["utility"]
    assert set(utility) == {"frequnlearn_capitals", "frequnlearn_utility_qa"}
    assert utility["frequnlearn_utility_qa"]["sample_len"] == 1
    assert set(pd.read_parquet(out).family) == {"prob"}


def test_nan_weights_give_nan_rank_no_verdict_and_exit_2(tiny_gpt2_dir, data, tmp_path, capsys):
    import torch

    from frequnlearn.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))
    broken = tmp_path / "broken"
    model.save_pretrained(broken)
    tok.save_pretrained(broken)
    capsys.readouterr()
    out = data / "nan.parquet"
    args = ["evaluate", "--model", str(broken), "--items", str(data / "qa.jsonl"), "--out", str(out)]
    code = main([*args, "--metrics", "prob,gen", "max_new_tokens=3", "n_boot=10"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "4 of 4 items got non-finite logits" in last and "finite=False" in last
    df = pd.read_parquet(out)
    assert not df["finite"].any()
    assert df["rank"].isna().all() and df["rank_correct"].isna().all() and df["known"].isna().all()
    mis = pd.read_csv(data / "nan.misalignment.csv")
    assert mis.empty or mis["n"].sum() == 0
    summary = pd.read_csv(data / "nan.summary.csv")
    assert summary.empty or (summary["n_nonfinite"] > 0).all()
