"""The shipped country-capital table and the loaders of real-fact tables (builtin, paper datasets, files)."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest

from frequnlearn.data.real import (
    BUILTIN_TABLES,
    N_CANDIDATES,
    PAPER_DATASETS,
    country_capitals,
    fill_candidates,
    load_items,
    load_paper_dataset,
)
from frequnlearn.errors import DataError
from frequnlearn.records import QAItem


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.findall(r"[a-z]+", text)


def _contains(a: str, b: str) -> bool:
    a, b = _words(a), _words(b)
    return any(a[i : i + len(b)] == b for i in range(len(a) - len(b) + 1))


@pytest.fixture(scope="module")
def capitals() -> list[QAItem]:
    return country_capitals()


def test_country_capital_table_is_complete_and_well_formed(capitals):
    assert len(capitals) == 181
    assert len({it.item_id for it in capitals}) == 181
    assert len({it.subject for it in capitals}) == 181
    answers = {it.answer for it in capitals}
    assert len(answers) == 181
    for it in capitals:
        assert it.item_id == "capital-" + "-".join(_words(it.subject))
        assert it.object == it.answer and it.attribute == "capital"
        assert it.question.startswith("What is the capital of ") and it.question.endswith("?")
        assert it.paraphrase and it.paraphrase != it.question and it.paraphrase.endswith("?")
        assert len(it.candidates) == N_CANDIDATES == len(set(it.candidates))
        assert it.answer not in it.candidates and set(it.candidates) <= answers
        # The answer never leaks through the country's name (nor the name through the answer).
        assert not _contains(it.answer, it.subject) and not _contains(it.subject, it.answer)
        assert it.answer.isascii(), it.answer


def test_country_capital_spot_checks(capitals):
    by_subject = {it.subject: it.answer for it in capitals}
    expected = {
        "France": "Paris",
        "Australia": "Canberra",
        "Canada": "Ottawa",
        "Turkey": "Ankara",
        "Nigeria": "Abuja",
        "Bolivia": "Sucre",
        "Netherlands": "Amsterdam",
        "South Africa": "Pretoria",
        "Myanmar": "Naypyidaw",
        "Kazakhstan": "Astana",
        "Burundi": "Gitega",
        "Ivory Coast": "Yamoussoukro",
        "United States": "Washington, D.C.",
        "Georgia": "Tbilisi",
    }
    for subject, capital in expected.items():
        assert by_subject[subject] == capital
    for left_out in ("Singapore", "Mexico", "Kuwait", "Guinea-Bissau", "Luxembourg"):
        assert left_out not in by_subject


def test_contested_capitals_carry_a_note():
    rows = [json.loads(line) for line in BUILTIN_TABLES["country_capital"].read_text().splitlines()]
    notes = {r["subject"]: r["note"] for r in rows if "note" in r}
    assert "La Paz" in notes["Bolivia"] and "The Hague" in notes["Netherlands"]
    assert {"Bolivia", "South Africa", "Sri Lanka", "Eswatini", "Israel", "Nauru"} <= set(notes)


def test_builtin_spec_takes_filters():
    europe = load_items("builtin:country_capital?region=europe")
    assert 30 < len(europe) < 45
    assert all(it.item_id.startswith("capital-") for it in europe)
    with pytest.raises(DataError, match="no built-in table 'capitals'"):
        load_items("builtin:capitals")


def test_user_file_gets_candidates_from_other_answers(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text(
        "item_id,question,answer,attribute\n"
        "b1,Who wrote Middlemarch?,George Eliot,author\n"
        "b2,Who wrote Dracula?,Bram Stoker,author\n"
        "b3,Who wrote Emma?,Jane Austen,author\n"
        "b4,Who wrote Ulysses?,James Joyce,author\n"
    )
    items = load_items(str(path))
    assert [it.item_id for it in items] == ["b1", "b2", "b3", "b4"]
    for it in items:
        assert len(it.candidates) == 3 and it.answer not in it.candidates
    assert load_items(str(path)) == items


def test_fill_candidates_keeps_given_ones_and_stays_within_the_attribute():
    items = [
        QAItem("a", "q1", "Paris", attribute="capital", candidates=["Rome"]),
        QAItem("b", "q2", "Lima", attribute="capital"),
        QAItem("c", "q3", "Quito", attribute="capital"),
        QAItem("e", "q5", "paris", attribute="capital"),
    ]
    out = {it.item_id: it for it in fill_candidates(items, k=9)}
    assert out["a"].candidates == ["Rome"]
    assert sorted(out["b"].candidates) == ["Paris", "Quito"]
    assert sorted(out["e"].candidates) == ["Lima", "Quito"]
    with pytest.raises(DataError, match="no other answer of attribute 'author'"):
        fill_candidates([*items, QAItem("d", "q4", "Jane Austen", attribute="author")])


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(
        '{"item_id": "x", "question": "Q1?", "answer": "A"}\n{"item_id": "x", "question": "Q2?", "answer": "B"}\n'
    )
    with pytest.raises(DataError, match="item_id 'x' occurs more than once"):
        load_items(str(path))


def _fake_hub(monkeypatch, tables: dict[tuple[str, str], list[dict]]):
    """Serve `datasets.load_dataset(name, config, split=...)` from memory: the hub is out of reach here."""
    import datasets

    calls = []

    def load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(tables[(name, config)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_paper_dataset_joins_buckets_and_paraphrases(monkeypatch):
    repo = PAPER_DATASETS["country_capital"]
    tables = {}
    for bucket, rows in {
        "low": [("What is the capital of Tuvalu?", "Funafuti", "Name the capital of Tuvalu.")],
        "medium": [("What is the capital of Peru?", "Lima", "Peru's capital city is?")],
        "high": [
            ("What is the capital of France?", "Paris", "Which city is France's capital?"),
            ("What is the capital of Japan?", "Tokyo", "Japan's capital is which city?"),
        ],
    }.items():
        config = f"forget_{bucket}_count"
        tables[(repo, config)] = [{"question": q, "answer": a} for q, a, _ in rows]
        tables[(repo, config + "_paraphrased")] = [{"question": p, "answer": a} for _, a, p in rows]
    calls = _fake_hub(monkeypatch, tables)
    items = load_items("paper:country_capital")
    assert ("McGill-NLP/country_capital_qa", "forget_high_count_paraphrased", "train") in calls
    by_id = {it.item_id: it for it in items}
    assert set(by_id) == {
        "country_capital-low-0000",
        "country_capital-medium-0000",
        "country_capital-high-0000",
        "country_capital-high-0001",
    }
    japan = by_id["country_capital-high-0001"]
    assert japan.bucket == "high" and japan.answer == "Tokyo" and japan.object == "Tokyo"
    assert japan.paraphrase == "Japan's capital is which city?"
    assert japan.attribute == "country_capital"
    assert sorted(japan.candidates) == ["Funafuti", "Lima", "Paris"]
    assert load_items(repo) == items


def test_paper_dataset_refuses_misaligned_paraphrases(monkeypatch):
    repo = PAPER_DATASETS["book_author"]
    _fake_hub(
        monkeypatch,
        {
            (repo, "forget_high_count"): [{"question": "Who wrote Emma?", "answer": "Jane Austen"}],
            (repo, "forget_high_count_paraphrased"): [
                {"question": "Emma's author?", "answer": "Bram Stoker"}
            ],
        },
    )
    with pytest.raises(DataError, match="not in the same order"):
        load_paper_dataset("book_author", buckets=["high"])
    with pytest.raises(DataError, match="unknown paper dataset 'wiki'"):
        load_paper_dataset("wiki")
    with pytest.raises(DataError, match="unknown bucket 'top'"):
        load_paper_dataset("book_author", buckets=["top"])
