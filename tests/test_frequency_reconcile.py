"""On a generated corpus the local index's document co-occurrence equals the recorded exposure."""

from __future__ import annotations

import json

import pytest

from frequnlearn.config import from_dict
from frequnlearn.config.count import CountConfig
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.data.generate import generate
from frequnlearn.frequency import count_values
from frequnlearn.frequency.reconcile import reconcile_exposure
from frequnlearn.frequency.stage import read_counted_table
from frequnlearn.records import read_jsonl


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    return generate(GenerateConfig(seed=3, n_people=60, exposure_levels=[1, 2, 4, 8, 16]), root / "data")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def local(cache, **kw) -> CountConfig:
    return from_dict(CountConfig, {"backend": "infinigram-local", "cache_dir": str(cache), **kw})


def test_document_cooccurrence_equals_exposure_for_every_item(data_dir, cache):
    people = read_jsonl(data_dir / "people.jsonl")
    assert len({p["exposure"] for p in people}) == 5  # the whole grid is present
    assert reconcile_exposure(data_dir, local(cache)) == []


def test_a_mismatch_names_the_item(data_dir, cache, tmp_path):
    tampered = tmp_path / "data"
    tampered.mkdir()
    for name in ("qa.jsonl", "corpus.jsonl"):
        (tampered / name).write_bytes((data_dir / name).read_bytes())
    people = read_jsonl(data_dir / "people.jsonl")
    people[7]["exposure"] += 1
    (tampered / "people.jsonl").write_text("".join(json.dumps(p) + "\n" for p in people))
    problems = reconcile_exposure(tampered, local(cache))
    n_attributes = len(GenerateConfig().attributes)
    assert len(problems) == n_attributes
    assert all(
        p.startswith("item p00007-") and p.endswith(f"exposure {people[7]['exposure']}") for p in problems
    )


def test_counting_every_document_adds_the_retain_qa_documents(data_dir, cache):
    """Retain people also have one QA document per attribute that names them and the answer."""
    _, items = read_counted_table(data_dir / "qa.jsonl")
    people = {p["person_id"]: p for p in read_jsonl(data_dir / "people.jsonl")}
    cfg = local(cache, corpus=str(data_dir / "corpus.jsonl"), measure="document")
    counted, _ = count_values(items, cfg)
    attributes = GenerateConfig().attributes
    for it, c in zip(items, counted):
        person = people[it.person_id]
        qa_docs = sum(person[a] == it.answer for a in attributes) if person["group"] == "retain" else 0
        assert c == person["exposure"] + qa_docs, it.item_id


def test_window_wider_than_a_biography_counts_each_copy_once(data_dir, cache):
    _, items = read_counted_table(data_dir / "qa.jsonl")
    people = {p["person_id"]: p["exposure"] for p in read_jsonl(data_dir / "people.jsonl")}
    cfg = local(cache, corpus=str(data_dir / "corpus.jsonl"), kinds=["bio"], max_diff_tokens=2000)
    counted, info = count_values(items, cfg)
    assert info["kinds"] == ["bio"] and info["documents"] == sum(people.values())
    assert counted == [people[it.person_id] for it in items]
