from __future__ import annotations

import json

import pandas as pd
import pytest

from frequnlearn.data.tables import check_overlap, load_table, parse_spec
from frequnlearn.errors import DataError
from frequnlearn.records import QAItem

ROWS = [
    {
        "item_id": f"p{i:05d}-{attr}",
        "person_id": i,
        "group": group,
        "attribute": attr,
        "question": f"Who employs person {i}?" if attr == "employer" else f"Where was person {i} born?",
        "answer": f"Company {i}" if attr == "employer" else f"City {i}",
        "paraphrase": f"Which company does person {i} work for?",
        "frequency": 10 if group == "forget_high" else 1,
        "in_corpus": group == "retain",
        "candidates": ["Acme", "Globex"],
    }
    for i, group in enumerate(["forget_high", "forget_high", "forget_low", "retain", "retain"])
    for attr in ("employer", "birth_city")
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def qa(tmp_path):
    return _jsonl(tmp_path / "qa.jsonl", ROWS)


def test_parse_spec():
    assert parse_spec("qa.jsonl") == ("qa.jsonl", {})
    assert parse_spec("qa.jsonl?group=forget_high&attribute=employer,major") == (
        "qa.jsonl",
        {"group": ["forget_high"], "attribute": ["employer", "major"]},
    )
    with pytest.raises(DataError, match="is not COLUMN=VALUE"):
        parse_spec("qa.jsonl?group")


def test_jsonl_with_filters_keeps_every_field(qa):
    items = load_table(f"{qa}?group=forget_high&attribute=employer")
    assert [it.item_id for it in items] == ["p00000-employer", "p00001-employer"]
    first = items[0]
    assert isinstance(first, QAItem)
    assert (first.question, first.answer, first.group, first.attribute) == (
        "Who employs person 0?",
        "Company 0",
        "forget_high",
        "employer",
    )
    assert first.frequency == 10.0 and first.candidates == ["Acme", "Globex"] and first.person_id == 0
    assert first.paraphrase.startswith("Which company")


def test_any_of_values_numbers_and_booleans(qa):
    assert len(load_table(f"{qa}?group=forget_high,forget_low&attribute=employer")) == 3
    assert len(load_table(f"{qa}?frequency=10")) == 4
    assert len(load_table(f"{qa}?in_corpus=true&attribute=employer")) == 2


def test_generated_data_directory_means_its_qa_jsonl(qa):
    assert len(load_table(f"{qa.parent}?group=retain")) == 4


def test_csv_with_custom_columns_and_generated_ids(tmp_path):
    path = tmp_path / "facts.csv"
    pd.DataFrame(
        {
            "q": ["Capital of France?", "Capital of Peru?"],
            "a": ["Paris", "Lima"],
            "candidates": ['["Rome"]', ""],
        }
    ).to_csv(path, index=False)
    items = load_table(str(path), question_column="q", answer_column="a")
    assert [(it.question, it.answer) for it in items] == [
        ("Capital of France?", "Paris"),
        ("Capital of Peru?", "Lima"),
    ]
    assert items[0].candidates == ["Rome"] and items[1].candidates == []
    # Ids name the source and row, so reading the same row again gives the same id.
    assert items[1].item_id == f"{path}#1"
    assert load_table(f"{path}?a=Lima", question_column="q", answer_column="a")[0].item_id == items[1].item_id


def test_parquet_and_json_list(tmp_path):
    pq = tmp_path / "t.parquet"
    pd.DataFrame(ROWS).to_parquet(pq)
    items = load_table(f"{pq}?attribute=birth_city")
    assert len(items) == 5 and items[0].candidates == ["Acme", "Globex"] and items[0].frequency == 10.0
    js = tmp_path / "t.json"
    js.write_text(json.dumps(ROWS[:3]))
    assert [it.item_id for it in load_table(str(js))] == [r["item_id"] for r in ROWS[:3]]


def test_saved_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list(
        [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    ).save_to_disk(str(tmp_path / "ds"))
    items = load_table(f"{tmp_path / 'ds'}?answer=A2")
    assert [(it.question, it.answer) for it in items] == [("Q2?", "A2")]


def test_folder_of_data_files_through_load_dataset(tmp_path):
    folder = tmp_path / "facts"
    folder.mkdir()
    pd.DataFrame({"question": ["Q1?", "Q2?"], "answer": ["A1", "A2"]}).to_csv(
        folder / "train.csv", index=False
    )
    pd.DataFrame({"question": ["Q3?"], "answer": ["A3"]}).to_csv(folder / "test.csv", index=False)
    assert [it.answer for it in load_table(str(folder))] == ["A1", "A2"]
    assert [it.answer for it in load_table(f"{folder}:test")] == ["A3"]
    with pytest.raises(DataError, match="cannot be loaded as a datasets dataset"):
        load_table(f"{folder}:validation")


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_column_names_it_and_the_fix(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"prompt": "Q?", "answer": "A"}])
    with pytest.raises(DataError) as err:
        load_table(str(path), name="--forget")
    text = _one_line(err)
    assert (
        "--forget" in text
        and "no column 'question'" in text
        and "prompt" in text
        and "question_column=" in text
    )


def test_no_matching_rows_lists_the_values(qa):
    with pytest.raises(DataError) as err:
        load_table(f"{qa}?group=forget_hi", name="--forget")
    text = _one_line(err)
    assert "no rows match" in text and "forget_high" in text


def test_filter_on_unknown_column(qa):
    with pytest.raises(DataError, match="cannot filter on 'color'"):
        load_table(f"{qa}?color=red")


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p / "missing.jsonl", "file not found"),
        (lambda p: _jsonl(p / "empty.jsonl", []), "has no rows"),
        (lambda p: _jsonl(p / "blank.jsonl", [{"question": "Q?", "answer": " "}]), "empty 'answer'"),
        (lambda p: (p / "t.xlsx").write_text("x") and p / "t.xlsx", "unknown table type"),
        (lambda p: (p / "bad.jsonl").write_text("{not json\n") and p / "bad.jsonl", "not valid JSON"),
    ],
)
def test_bad_tables(tmp_path, make, fragment):
    with pytest.raises(DataError) as err:
        load_table(str(make(tmp_path)))
    assert fragment in _one_line(err)


def test_overlap_by_id_or_by_text():
    forget = [QAItem("a", "Who employs Ada?", "Acme"), QAItem("b", "Who employs Bo?", "Globex")]
    check_overlap(forget, [QAItem("c", "Who employs Cy?", "Acme")])
    with pytest.raises(DataError) as err:
        check_overlap(forget, [QAItem("b", "Other?", "X")])
    assert "1 item(s) are also in the forget set (b)" in _one_line(err)
    with pytest.raises(DataError, match="also in the forget set"):
        check_overlap(forget, [QAItem("zz", "Who employs Ada? ", "Acme")])
