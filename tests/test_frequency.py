"""Counting backends against a naive per-document count written out in the test itself."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from frequnlearn.cli import main
from frequnlearn.config import from_dict
from frequnlearn.config.count import CountConfig
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.frequency import (
    Counter,
    available_backends,
    count_items,
    count_values,
    infinigram_local,
    make_counter,
)
from frequnlearn.frequency.base import BACKENDS, case_variants
from frequnlearn.frequency.infinigram_local import (
    LocalIndexCounter,
    Tokens,
    _check_in_child,
    build_index,
    safe_cpus,
)
from frequnlearn.frequency.scan import ScanCounter
from frequnlearn.records import QAItem, read_json, read_jsonl

WORDS = "alpha beta gamma delta Ada Mae Lovelace London Paris works for at the born in Zoë".split()
PAIRS = [
    ("Ada", "London"),
    ("Mae Lovelace", "Paris"),
    ("the born", "alpha"),
    ("works for", "at the"),
    ("Zoë", "delta"),
    ("Lovelace", "Lovelace"),
    ("gamma", "absent"),
]


# ---------------------------------------------------------------- a naive reference


def _starts(doc: bytes, term: bytes) -> list[int]:
    return [i for i in range(len(doc) - len(term) + 1) if doc[i : i + len(term)] == term]


def naive_occurrences(docs: list[str], a: str) -> int:
    return sum(len(_starts(d.encode(), a.encode())) for d in docs)


def naive_documents(docs: list[str], a: str, b: str) -> int:
    return sum(1 for d in docs if a in d and b in d)


def naive_window(docs: list[str], a: str, b: str, reach: int) -> int:
    """Occurrences of the rarer term with the other starting at most `reach` bytes away, same document."""
    anchor, other = (a, b) if naive_occurrences(docs, a) <= naive_occurrences(docs, b) else (b, a)
    total = 0
    for d in docs:
        pa, pb = _starts(d.encode(), anchor.encode()), _starts(d.encode(), other.encode())
        total += sum(1 for p in pa if any(abs(p - q) <= reach for q in pb))
    return total


def random_docs(n: int, seed: int, lo: int = 5, hi: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def write_corpus(path: Path, docs: list[str], kinds: list[str] | None = None) -> Path:
    with path.open("w") as fh:
        for i, text in enumerate(docs):
            row = {"doc_id": f"d{i}", "text": text}
            if kinds is not None:
                row["kind"] = kinds[i]
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """About 450 KB: large enough that the index is built with two CPUs."""
    docs = random_docs(3600, seed=1)
    path = write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", docs)
    return docs, path


@pytest.fixture(scope="module")
def index(corpus, tmp_path_factory):
    _, path = corpus
    cache = tmp_path_factory.mktemp("cache")
    return build_index(path, cache, cpus=2)


# ---------------------------------------------------------------- scan backend = the reference


def test_scan_matches_naive_counts():
    docs = random_docs(300, seed=2)
    scan = ScanCounter(docs)
    for a, b in PAIRS:
        assert scan.occurrences(a) == naive_occurrences(docs, a)
        assert scan.documents([a], [b]) == naive_documents(docs, a, b)
        for md in (1, 10, 60, 400):
            assert scan.window(a, b, md) == naive_window(docs, a, b, md), (a, b, md)


def test_window_never_crosses_documents():
    # "Ada" ends one document and "London" starts the next: adjacent bytes, different documents.
    docs = ["x Ada", "London y", "Ada London"]
    scan = ScanCounter(docs)
    assert scan.window("Ada", "London", 100) == 1
    assert scan.documents(["Ada"], ["London"]) == 1


# ---------------------------------------------------------------- local byte-level index


def test_index_built_with_two_cpus_matches_scan(corpus, index):
    docs, _ = corpus
    meta = read_json(index / "meta.json")
    assert meta["cpus"] == 2 and meta["documents"] == len(docs) and meta["token_dtype"] == "u8"
    local = LocalIndexCounter(index, Tokens(None), "window", ["original"], 100)
    scan = ScanCounter(docs)
    for a, b in PAIRS:
        assert np.array_equal(local.positions(a), scan.positions(a)), a
        assert local.occurrences(a) == naive_occurrences(docs, a)
        assert local.documents([a], [b]) == naive_documents(docs, a, b)
        for md in (3, 25, 200):
            assert local.window(a, b, md) == scan.window(a, b, md), (a, b, md)


def test_window_agrees_with_engine_where_no_document_boundary_is_near(tmp_path):
    # One long document: infini-gram's own `A AND B` count has no boundary to trip on.
    docs = [" ".join(random_docs(40, seed=3))]
    path = build_index(write_corpus(tmp_path / "c.jsonl", docs), tmp_path / "cache")
    local = LocalIndexCounter(path, Tokens(None), "window", ["original"], 50)
    engine = local.index.engine
    for a, b in PAIRS[:5]:
        cnf = [[list(a.encode())], [list(b.encode())]]
        expected = engine.count_cnf(cnf, max_clause_freq=10**9, max_diff_tokens=50)["count"]
        assert local.window(a, b, 50) == expected == naive_window(docs, a, b, 50)


def test_small_corpus_with_many_cpus_is_indexed_correctly(tmp_path):
    # Under ~100 KB per CPU infini-gram's parallel build is corrupt; the backend drops to one CPU.
    docs = random_docs(200, seed=4)
    assert safe_cpus(30_000, 1, 2, 4) == 1 and safe_cpus(10**7, 1, 2, 4) == 2
    path = build_index(write_corpus(tmp_path / "c.jsonl", docs), tmp_path / "cache", cpus=2)
    assert read_json(path / "meta.json")["cpus"] == 1
    local = LocalIndexCounter(path, Tokens(None), "window", ["original"], 100)
    for a, _ in PAIRS:
        assert local.occurrences(a) == naive_occurrences(docs, a)


def test_index_is_cached_and_reused(corpus, index, tmp_path, monkeypatch):
    _, path = corpus

    def no_build(*args, **kwargs):
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(subprocess, "run", no_build)
    assert build_index(path, index.parent.parent) == index


def test_failed_build_leaves_no_index(tmp_path, monkeypatch):
    path = write_corpus(tmp_path / "c.jsonl", random_docs(20, seed=5))

    def fail(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback...\nOSError: boom")

    monkeypatch.setattr(subprocess, "run", fail)
    with pytest.raises(DataError, match="indexing of .* failed \\(exit 1\\): OSError: boom"):
        build_index(path, tmp_path / "cache")
    assert list((tmp_path / "cache" / "infinigram").iterdir()) == []


def test_corrupt_suffix_array_is_caught(index, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(index, broken)
    table = (broken / "table.0").read_bytes()
    ptr = len(table) // (broken / "tokenized.0").stat().st_size
    entries = [table[i : i + ptr] for i in range(0, len(table), ptr)]
    (broken / "table.0").write_bytes(b"".join(reversed(entries)))
    with pytest.raises(DataError, match="corrupt index"):
        _check_in_child(broken)


def test_new_corpus_content_gets_a_new_index(tmp_path):
    path = write_corpus(tmp_path / "c.jsonl", ["Ada works"])
    first = build_index(path, tmp_path / "cache")
    write_corpus(path, ["Ada works", "Ada rests"])
    second = build_index(path, tmp_path / "cache")
    assert first != second
    assert LocalIndexCounter(second, Tokens(None), "subject", ["original"], 1).occurrences("Ada") == 2


def test_kinds_filter_and_errors(tmp_path):
    docs = ["Ada Mae in London", "Question: Where is Ada Mae? Answer: London", "Ada Mae in London again"]
    path = write_corpus(tmp_path / "c.jsonl", docs, kinds=["bio", "qa", "bio"])
    item = QAItem(item_id="x", question="q", answer="London", subject="Ada Mae")
    base = {
        "backend": "infinigram-local",
        "corpus": str(path),
        "cache_dir": str(tmp_path),
        "measure": "document",
    }
    assert count_values([item], from_dict(CountConfig, base))[0] == [3]
    assert count_values([item], from_dict(CountConfig, {**base, "kinds": ["bio"]}))[0] == [2]
    with pytest.raises(DataError, match="no documents of kinds \\['poem'\\]"):
        count_values([item], from_dict(CountConfig, {**base, "kinds": ["poem"]}))
    plain = write_corpus(tmp_path / "plain.jsonl", docs)
    with pytest.raises(DataError, match=":1: no 'kind' field"):
        count_values([item], from_dict(CountConfig, {**base, "corpus": str(plain), "kinds": ["bio"]}))
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: no 'text' string"):
        count_values([item], from_dict(CountConfig, {**base, "corpus": str(tmp_path / "bad.jsonl")}))
    with pytest.raises(DataError, match="no subject"):
        count_values([QAItem(item_id="y", question="q", answer="a")], from_dict(CountConfig, base))


# ---------------------------------------------------------------- tokenized index


def test_tokenized_index_counts_names_at_document_start_and_after_spaces(tiny_tokenizer, tmp_path):
    tok_dir = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok_dir)
    docs = [
        "Ada Mae Lovelace was born in London.",
        "Born in Paris, Ada Mae Lovelace works for Apple.",
        "Alan Mathison Turing works for Google.",
        "Ada Mae Lovelace studied Physics. Ada Mae Lovelace works at Apple in London.",
    ]
    path = write_corpus(tmp_path / "c.jsonl", docs)
    tokens = Tokens(str(tok_dir))
    assert tokens.dtype == "u16"
    forms = tokens.forms("Ada Mae Lovelace")
    assert len(forms) == 2  # "Ada ..." at a document start and " Ada ..." in running text
    index = build_index(path, tmp_path / "cache", tokens=tokens)
    assert read_json(index / "meta.json")["tokenizer"] == str(tok_dir)
    local = LocalIndexCounter(index, tokens, "document", ["original"], 100)
    assert local.occurrences("Ada Mae Lovelace") == 4
    assert local.documents(["Ada Mae Lovelace"], ["London"]) == 2
    assert local.documents(["Ada Mae Lovelace"], ["Apple"]) == 2
    assert local.occurrences("Google") == 1
    # Window in tokens: "Lovelace ... London" in the last document is farther apart than 3 tokens.
    assert local.window("Ada Mae Lovelace", "London", 3) < local.window("Ada Mae Lovelace", "London", 100)


def test_large_vocabularies_are_refused_where_the_builder_cannot_run(tiny_tokenizer, tmp_path, monkeypatch):
    # 65,535 ids or more take a u32 index, whose builder allocates 32 GiB.
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    tokens = Tokens(str(tmp_path / "tok"))
    tokens.dtype = "u32"
    monkeypatch.setattr(infinigram_local, "_physical_memory", lambda: 16 * 2**30)
    path = write_corpus(tmp_path / "c.jsonl", ["Ada in London"])
    with pytest.raises(DataError, match="needs a u32 index; .* allocates 32 GiB"):
        build_index(path, tmp_path / "cache", tokens=tokens)


# ---------------------------------------------------------------- items, variants, ground truth


def test_case_variants_are_summed_for_windows_and_unioned_for_documents():
    assert case_variants("ada lovelace", ["original", "lower", "title", "upper", "first_upper"]) == [
        "ada lovelace",
        "Ada Lovelace",
        "ADA LOVELACE",
        "Ada lovelace",
    ]
    docs = ["Ada Lovelace lived in London", "ada lovelace lived in london", "ADA LOVELACE, LONDON and London"]
    item = QAItem(item_id="i", question="q", answer="London", subject="Ada Lovelace")
    one = ScanCounter(docs, "window", ["original"], 50)
    three = ScanCounter(docs, "window", ["original", "lower", "upper"], 50)
    assert one.count([item]) == [1]
    assert three.count([item]) == [3]
    doc3 = ScanCounter(docs, "document", ["original", "lower", "upper"], 50)
    assert doc3.count([item]) == [3]
    # Mixed case inside one document still counts the document once.
    assert ScanCounter(docs, "document", ["original", "upper"], 50).count([item]) == [2]


def test_count_items_writes_frequency_and_bucket(tmp_path):
    docs = ["Ada in London"] * 5 + ["Bob in Paris"] * 2 + ["Cy in Rome"]
    path = write_corpus(tmp_path / "c.jsonl", docs)
    items = [
        QAItem(item_id=n, question="q", answer=a, subject=n, object=a)
        for n, a in [("Ada", "London"), ("Bob", "Paris"), ("Cy", "Rome")]
    ]
    cfg = from_dict(CountConfig, {"backend": "scan", "corpus": str(path), "measure": "document"})
    out = count_items(items, cfg)
    assert [(it.frequency, it.bucket) for it in out] == [(5, "high"), (2, "medium"), (1, "low")]
    assert items[0].frequency is None  # inputs are not modified


def test_ground_truth_reads_exposure(tmp_path):
    people = tmp_path / "people.jsonl"
    people.write_text(
        "".join(json.dumps({"person_id": i, "exposure": e}) + "\n" for i, e in [(0, 1), (1, 10)])
    )
    items = [QAItem(item_id=f"p{i}", question="q", answer="a", person_id=i) for i in (1, 0)]
    cfg = from_dict(CountConfig, {"backend": "ground-truth", "people": str(people)})
    assert count_values(items, cfg)[0] == [10, 1]
    with pytest.raises(DataError, match="item p7: person_id 7 is not in"):
        count_values([QAItem(item_id="p7", question="q", answer="a", person_id=7)], cfg)
    with pytest.raises(ConfigError, match="count.people"):
        make_counter(from_dict(CountConfig, {"backend": "ground-truth"}))


def test_backend_names_come_from_the_registry(monkeypatch, capsys):
    with pytest.raises(
        ConfigError, match="count.backend: unknown backend 'nope'; choose from ground-truth, "
    ):
        from_dict(CountConfig, {"backend": "nope"})

    class Fixed(Counter):
        def count(self, items):
            return [7] * len(items)

    monkeypatch.setitem(BACKENDS, "fixed", lambda cfg: Fixed())
    assert "fixed" in available_backends()
    cfg = from_dict(CountConfig, {"backend": "fixed"})
    assert count_values([QAItem(item_id="a", question="q", answer="x", subject="s")], cfg)[0] == [7]
    with pytest.raises(SystemExit):
        main(["count", "--help"])
    assert "fixed" in capsys.readouterr().out


def test_config_rejects_documents_on_the_api():
    with pytest.raises(ConfigError, match="measure: the infini-gram API counts windows"):
        from_dict(CountConfig, {"backend": "infinigram-api", "measure": "document"})


# ---------------------------------------------------------------- the command


def test_count_command_writes_table_and_run_file(tmp_path, capsys):
    docs = ["Ada in London"] * 3 + ["Bob in Paris"] * 2 + ["Cy in Rome", "Ada again"]
    corpus = write_corpus(tmp_path / "c.jsonl", docs)
    rows = [
        {"item_id": n, "question": "q", "answer": a, "subject": n, "region": "x"}
        for n, a in [("Ada", "London"), ("Bob", "Paris"), ("Cy", "Rome")]
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "counted.jsonl"
    argv = ["count", "--items", str(tmp_path / "qa.jsonl"), "--corpus", str(corpus), "--out", str(out)]
    argv += ["--backend", "infinigram-local", f"cache_dir={tmp_path / 'cache'}", "max_diff_tokens=20"]
    assert main(argv) == 0
    counted = read_jsonl(out)
    assert [(r["frequency"], r["bucket"], r["region"]) for r in counted] == [
        (3, "high", "x"),
        (2, "medium", "x"),
        (1, "low", "x"),
    ]
    run = read_json(tmp_path / "counted.run.json")
    assert run["backend"] == "infinigram-local" and run["config"]["max_diff_tokens"] == 20
    assert run["buckets"]["sizes"] == {"low": 1, "medium": 1, "high": 1}
    assert "counted 3 items" in capsys.readouterr().out


def test_count_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "qa.jsonl").write_text(json.dumps({"item_id": "a", "question": "q", "answer": "x"}) + "\n")
    argv = [
        "count",
        "--items",
        str(tmp_path / "qa.jsonl"),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--backend",
        "scan",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: count.corpus") and "\n" not in err
    assert main([*argv[:-2], "--backend", "ground-truth"]) == 2
    assert "people.jsonl: file not found" in capsys.readouterr().err


def test_cache_path_with_infini_gram_file_words_and_spaces(tmp_path):
    docs = ["Ada in London", "Bob in Paris", "Ada in Paris"]
    cache = tmp_path / "my tables" / "tokenized offset"
    path = build_index(write_corpus(tmp_path / "c.jsonl", docs), cache)
    local = LocalIndexCounter(path, Tokens(None), "document", ["original"], 10)
    assert local.documents(["Ada"], ["Paris"]) == 1 and local.occurrences("in") == 3


# ---------------------------------------------------------------- the window's unit


@pytest.mark.parametrize("backend", ["scan", "infinigram-local"])
def test_default_window_counts_employer_and_employer_city_of_every_person(backend, tmp_path):
    """On a byte-level layout the window is in bytes; its default spans a whole six-attribute biography,
    so each person's (name, employer) and (name, employer_city) pairs are found in every copy."""
    from frequnlearn.config.generate import GenerateConfig
    from frequnlearn.data.generate import generate

    data = generate(GenerateConfig(seed=0, n_people=60, high_exposure=3), tmp_path / "data")
    items = [
        QAItem(**{k: v for k, v in row.items() if k in QAItem.__dataclass_fields__})
        for row in read_jsonl(data / "qa.jsonl")
        if row["attribute"] in ("employer", "employer_city")
    ]
    people = {p["person_id"]: p["exposure"] for p in read_jsonl(data / "people.jsonl")}
    base = {"backend": backend, "corpus": str(data / "corpus.jsonl"), "kinds": ["bio"]}
    base["cache_dir"] = str(tmp_path / "cache")
    values, info = count_values(items, from_dict(CountConfig, base))
    assert info["window_unit"] == "bytes" and info["max_diff"] == 1000
    assert values == [people[it.person_id] for it in items]
    # 100 was a token count mistaken for bytes: it misses most employers and employer cities.
    narrow, _ = count_values(items, from_dict(CountConfig, {**base, "max_diff_tokens": 100}))
    missed = sum(n < people[it.person_id] for n, it in zip(narrow, items))
    assert missed > len(items) // 2


def test_byte_layout_window_unit_and_default():
    assert ScanCounter(["a b"]).window_unit == "bytes"
    assert ScanCounter(["a b"]).max_diff_tokens == 1000
    assert ScanCounter(["a b"], max_diff_tokens=7).max_diff_tokens == 7
