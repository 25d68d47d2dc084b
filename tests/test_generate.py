"""Properties of the generated Setting A data: exposure, uniqueness, held-out QA, templates, groups."""

from __future__ import annotations

import datetime
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frequnlearn.config import ConfigError, from_dict, load_config
from frequnlearn.config.generate import GenerateConfig
from frequnlearn.data.generate import (
    DATA_FILES,
    MANIFEST,
    CandidateSampler,
    frequency_only_baseline,
    generate,
    generate_key,
    group_sizes,
    load_data_dir,
    random_date,
    run_generate,
    value_counts,
)
from frequnlearn.data.pools import load_pools
from frequnlearn.data.templates import (
    NAME,
    PARAPHRASES,
    QUESTIONS,
    TEMPLATES,
    compile_template,
    template_problems,
)
from frequnlearn.errors import DataError
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import (
    ATTRIBUTES,
    GROUPS,
    PRONOUNS,
    BioPrompt,
    Person,
    QAItem,
    dumps,
    read_jsonl,
    sha256_file,
    stage_done,
)

PRONOUN_WORDS = {
    "he": {"he", "He", "his", "His", "him"},
    "she": {"she", "She", "her", "Her"},
    "they": {"they", "They", "their", "Their", "them"},
}
WORD = re.compile(r"[A-Za-z]+")


def _date_ok(text: str) -> bool:
    day = datetime.datetime.strptime(text, "%B %d, %Y")
    return 1900 <= day.year <= 2099 and text == f"{day:%B} {day.day}, {day.year}"


def check_data_dir(path: Path, cfg: GenerateConfig) -> None:
    """Every property the corpus promises, checked on one generated directory."""
    people = read_jsonl(path / "people.jsonl")
    corpus = read_jsonl(path / "corpus.jsonl")
    qa = read_jsonl(path / "qa.jsonl")
    prompts = read_jsonl(path / "bio_prompts.jsonl")
    attributes = [a for a in ATTRIBUTES if a in cfg.attributes]
    fmt = get_prompt_format("plain")
    pools = load_pools()

    # Unique names, three different parts each.
    names = [p["name"] for p in people]
    assert len(set(names)) == len(names)
    for p in people:
        assert len({p["first_name"], p["middle_name"], p["last_name"]}) == 3
        assert p["name"] == f"{p['first_name']} {p['middle_name']} {p['last_name']}"
        assert p["employer_city"] == pools.employer_city[p["employer"]]
        firsts, middles = pools.given_names(p["pronoun"])
        assert p["first_name"] in firsts and p["middle_name"] in middles
        assert _date_ok(p["birth_date"])
    assert [p["person_id"] for p in people] == list(range(cfg.n_people))

    # Group sizes follow the fractions (within rounding).
    sizes = Counter(p["group"] for p in people)
    total = sum(cfg.group_fractions.values())
    for g in GROUPS:
        assert abs(sizes[g] - cfg.n_people * cfg.group_fractions[g] / total) < 1

    # Exposure: default two levels, or the grid spread evenly over the forget groups.
    forget = [p for p in people if p["group"] in ("forget_high", "forget_low")]
    for p in people:
        if p["group"] in ("retain", "utility"):
            assert p["exposure"] == 1
        elif cfg.exposure_levels is None:
            assert p["exposure"] == (cfg.high_exposure if p["group"] == "forget_high" else 1)
    if cfg.exposure_levels is not None:
        per_level = Counter(p["exposure"] for p in forget)
        assert set(per_level) == set(cfg.exposure_levels)
        assert max(per_level.values()) - min(per_level.values()) <= 1
        low = [p["exposure"] for p in forget if p["group"] == "forget_low"]
        high = [p["exposure"] for p in forget if p["group"] == "forget_high"]
        assert max(low) <= min(high)

    # Each person's biography appears exactly `exposure` times, each stating every attribute.
    bios = [d for d in corpus if d["kind"] == "bio"]
    assert Counter(d["person_id"] for d in bios) == Counter({p["person_id"]: p["exposure"] for p in people})
    for doc in bios:
        person = people[doc["person_id"]]
        text = doc["text"]
        assert text.count(person["name"]) == 1
        assert text.index(person["name"]) < text.index(person[attributes[0]])
        for attr in attributes:
            assert person[attr] in text, (attr, text)
        others = set().union(*(w for p, w in PRONOUN_WORDS.items() if p != person["pronoun"]))
        wrong = set(WORD.findall(text)) & others - set(WORD.findall(" ".join(person[a] for a in attributes)))
        assert not wrong, text
        assert not re.search(r"\b[Tt]hey (was|is|has|does)\b", text), text
    assert len({d["doc_id"] for d in corpus}) == len(corpus)

    # QA: the corpus holds exactly the retain group's pairs, in the evaluation prompt format.
    assert len(qa) == len(people) * len(attributes)
    corpus_texts = {d["text"] for d in corpus}
    qa_docs = {d["text"] for d in corpus if d["kind"] == "qa"}
    retain_docs = {fmt.full(i["question"], i["answer"]) for i in qa if i["in_corpus"]}
    assert qa_docs == retain_docs
    all_text = "\n".join(d["text"] for d in corpus)
    counts = value_counts(people, attributes)
    short: Counter[str] = Counter()
    for item in qa:
        person = people[item["person_id"]]
        assert item["item_id"] == f"p{person['person_id']:05d}-{item['attribute']}"
        assert item["in_corpus"] == (person["group"] == "retain")
        assert item["frequency"] == person["exposure"]
        assert item["answer"] == item["object"] == person[item["attribute"]]
        assert item["subject"] == person["name"] and person["name"] in item["question"]
        assert person["name"] in item["paraphrase"] and item["paraphrase"] != item["question"]
        if not item["in_corpus"]:
            assert fmt.full(item["question"], item["answer"]) not in corpus_texts
            assert item["question"] not in all_text
        cands = item["candidates"]
        assert len(cands) <= cfg.n_candidates and len(cands) == len(set(cands))
        assert item["answer"] not in cands
        # Frequency-matched: each candidate is stated within a factor of 2 as often as the truth.
        assert item["answer_count"] == counts[item["answer"]] >= person["exposure"]
        assert item["candidate_counts"] == [counts[c] for c in cands]
        assert all(
            item["answer_count"] <= 2 * c and c <= 2 * item["answer_count"] for c in item["candidate_counts"]
        )
        short[f"{item['group']}/{item['attribute']}"] += len(cands) < cfg.n_candidates
        if item["attribute"] == "birth_date":
            assert all(_date_ok(c) for c in cands)
        else:
            assert set(cands) <= set(pools.values(item["attribute"]))
    assert len({i["item_id"] for i in qa}) == len(qa)

    # Bio prompts: cut right before the value, which follows after one space.
    assert [p["item_id"] for p in prompts] == [i["item_id"] for i in qa]
    for bp in prompts:
        person = people[bp["person_id"]]
        attr = bp["attribute"]
        assert bp["target"] == person[attr]
        assert bp["frequency"] == person["exposure"] and bp["group"] == person["group"]
        assert bp["prompt"] == bp["prompt"].rstrip() and person["name"] in bp["prompt"]
        before = attributes[: attributes.index(attr)]
        assert all(person[a] in bp["prompt"] for a in before)
        heads = {compile_template(t, person["pronoun"], first=not before)[0] for t in TEMPLATES[attr]}
        heads = {h.replace(NAME, person["name"]).rstrip(" ") for h in heads}
        assert any(bp["prompt"].endswith(h) for h in heads), bp["prompt"]

    # Manifest: counts and hashes of every other file; lines are canonical JSON.
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["files"] == {name: sha256_file(path / name) for name in DATA_FILES}
    assert manifest["counts"]["groups"] == dict(sizes)
    assert manifest["counts"]["exposure"] == {
        str(k): v for k, v in Counter(p["exposure"] for p in people).items()
    }
    assert manifest["seed"] == cfg.seed and manifest["config"]["n_people"] == cfg.n_people
    assert manifest["candidates_short"] == {k: v for k, v in sorted(short.items()) if v}
    baseline = manifest["frequency_only_baseline"]
    assert set(baseline) <= set(GROUPS) and all(
        0 <= b["top1"] <= 1 and 0 < b["chance"] <= 1 for b in baseline.values()
    )
    assert manifest["run_info"]["config"] == manifest["config"]
    for name in DATA_FILES:
        with (path / name).open() as fh:
            line = fh.readline()
        assert line == dumps(json.loads(line)) + "\n"


configs = st.builds(
    lambda seed, n, k, grid, attrs, n_templates, cands: GenerateConfig(
        seed=seed,
        n_people=n,
        high_exposure=k,
        exposure_levels=grid,
        attributes=attrs,
        n_templates=n_templates,
        n_candidates=cands,
    ),
    seed=st.integers(0, 3),
    n=st.integers(8, 40),
    k=st.integers(1, 6),
    grid=st.none() | st.sampled_from([[1, 2, 4], [3, 1], [5]]),
    attrs=st.sampled_from(
        [list(ATTRIBUTES), ["employer"], ["major", "birth_date"], ["employer_city", "university"]]
    ),
    n_templates=st.none() | st.integers(1, 25),
    cands=st.integers(1, 12),
)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cfg=configs)
def test_generated_data_keeps_its_promises(cfg):
    with tempfile.TemporaryDirectory() as tmp:
        out = generate(cfg, Path(tmp) / "data")
        check_data_dir(out, cfg)


def test_paper_defaults_on_a_few_hundred_people(tmp_path):
    cfg = GenerateConfig(n_people=300)
    check_data_dir(generate(cfg, tmp_path / "d"), cfg)
    sizes = Counter(p.group for p in load_data_dir(tmp_path / "d").people)
    assert sizes == {"retain": 150, "forget_high": 50, "forget_low": 50, "utility": 50}


def test_run_generate_marks_the_directory_done_for_its_config_only(tmp_path):
    cfg = GenerateConfig(n_people=24, seed=1)
    out = run_generate(cfg, tmp_path / "d")
    assert stage_done(out, generate_key(cfg))
    assert not stage_done(out, generate_key(GenerateConfig(n_people=24, seed=2)))


def test_every_record_field_is_written(tmp_path):
    """Records are written from their types: each line holds exactly the record's fields."""
    import dataclasses

    out = generate(GenerateConfig(n_people=24, seed=1), tmp_path / "d")
    for name, record in (("people.jsonl", Person), ("qa.jsonl", QAItem), ("bio_prompts.jsonl", BioPrompt)):
        fields = {f.name for f in dataclasses.fields(record)}
        assert all(set(row) == fields for row in read_jsonl(out / name)), name


def test_exposure_grid(tmp_path):
    cfg = GenerateConfig(n_people=240, exposure_levels=[1, 2, 4, 8, 16, 32])
    out = generate(cfg, tmp_path / "d")
    check_data_dir(out, cfg)
    data = load_data_dir(out)
    per_level = Counter(p.exposure for p in data.people if p.group.startswith("forget"))
    assert per_level == {1: 14, 2: 14, 4: 13, 8: 13, 16: 13, 32: 13}
    assert data.manifest["exposure_levels"] == [1, 2, 4, 8, 16, 32]


def test_same_seed_same_bytes_other_seed_other_people(tmp_path):
    cfg = GenerateConfig(n_people=60, seed=7)
    a, b = generate(cfg, tmp_path / "a"), generate(cfg, tmp_path / "b")
    for name in (*DATA_FILES, MANIFEST):
        assert sha256_file(a / name) == sha256_file(b / name), name
    c = generate(GenerateConfig(n_people=60, seed=8), tmp_path / "c")
    names = {p.name for p in load_data_dir(a).people}
    assert names != {p.name for p in load_data_dir(c).people}
    assert sha256_file(a / "corpus.jsonl") != sha256_file(c / "corpus.jsonl")


def test_wording_does_not_change_the_people(tmp_path):
    a = generate(GenerateConfig(n_people=40), tmp_path / "a")
    b = generate(GenerateConfig(n_people=40, n_templates=3, paraphrase=2), tmp_path / "b")
    assert (a / "people.jsonl").read_bytes() == (b / "people.jsonl").read_bytes()
    assert (a / "corpus.jsonl").read_bytes() != (b / "corpus.jsonl").read_bytes()


def test_every_template_renders_for_every_pronoun():
    for attr in ATTRIBUTES:
        assert len(TEMPLATES[attr]) >= 25 and len(PARAPHRASES[attr]) >= 5
        assert len(set(TEMPLATES[attr])) == len(TEMPLATES[attr])
        assert len({QUESTIONS[attr], *PARAPHRASES[attr]}) == len(PARAPHRASES[attr]) + 1
        for tpl in TEMPLATES[attr]:
            assert template_problems(tpl) == [], tpl
            for pronoun in PRONOUNS:
                for first in (True, False):
                    head, tail = compile_template(tpl, pronoun, first)
                    text = (head + "Houston, TX" + tail).replace(NAME, "Ada Mae Byron")
                    assert "{" not in text and "}" not in text and NAME not in text
                    assert text[0].isupper() and text.endswith(".") and "  " not in text
                    assert ("Ada Mae Byron" in head.replace(NAME, "Ada Mae Byron")) == first
                    words = set(WORD.findall(text))
                    others = set().union(*(w for p, w in PRONOUN_WORDS.items() if p != pronoun))
                    assert not words & others, (tpl, pronoun, text)
                    if first and re.search(r"\{[Hh]e\}", tpl) and tpl.index("{") == tpl.lower().index("{he}"):
                        # The name is the subject: the verb is singular whatever the pronoun.
                        assert not re.search(r"Byron (were|are|have|do)\b", text), text
                    if pronoun == "they" and not first:
                        assert not re.search(r"\b[Tt]hey (was|is|has|does|\w+s)\b", text), text
    they = compile_template("{He} stud{ies} and {was} at {value}.", "they", first=False)
    assert they == ("They study and were at ", ".")
    first = compile_template("{His} story began when {he} {was} in {value}.", "they", first=True)
    assert first == (NAME + "'s story began when they were in ", ".")


def test_dates_cover_every_month_and_valid_day():
    import random

    rng = random.Random(0)
    dates = [datetime.datetime.strptime(random_date(rng), "%B %d, %Y") for _ in range(60_000)]
    assert {(d.month, d.day) for d in dates} == {
        (m, d) for m in range(1, 13) for d in range(1, 32) if _valid(2000, m, d)
    }
    assert min(d.year for d in dates) == 1900 and max(d.year for d in dates) == 2099
    assert all(
        d.year % 4 == 0 and (d.year % 100 or d.year % 400 == 0) for d in dates if (d.month, d.day) == (2, 29)
    )


def _valid(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def test_given_names_suit_the_pronoun():
    pools = load_pools()
    he, she = pools.given_names("he"), pools.given_names("she")
    assert {"Jacob", "Michael"} <= set(he[0]) and {"Emily", "Madison"} <= set(she[0])
    assert {"Noah", "Liam"} <= set(he[1]) and {"Emma", "Sophia"} <= set(she[1])
    assert not set(he[0]) & set(she[0])
    assert pools.given_names("they") == (pools.first_names, pools.middle_names)


def test_candidates_prefer_same_exposure_and_never_leave_2x():
    import random

    people = [
        {"exposure": e, "group": "forget_low" if e == 1 else "forget_high", "major": m}
        for e, m in [(10, "Physics"), (10, "Law"), (10, "Music"), (1, "Art"), (1, "Dance"), (10, "Art")]
    ]
    counts = value_counts(people, ["major"])
    assert counts == {"Physics": 10, "Law": 10, "Music": 10, "Art": 11, "Dance": 1}
    sampler = CandidateSampler("major", people, counts, 2, random.Random(0))
    assert sorted(sampler("Physics", 10)) == ["Law", "Music"]
    # Too few values within 2x of "Dance" (seen once): fewer candidates, never a worse-matched one.
    assert sampler("Dance", 1) == []
    assert sorted(CandidateSampler("major", people, counts, 4, random.Random(0))("Law", 10)) == [
        "Art",
        "Music",
        "Physics",
    ]


def test_frequency_only_baseline_breaks_ties_at_random():
    rows = [("g", 5, [5, 5, 5]), ("g", 9, [1, 2, 3]), ("g", 1, [2, 3, 4]), ("h", 3, [])]
    assert frequency_only_baseline(rows) == {
        "g": {"top1": round((0.25 + 1 + 0) / 3, 6), "chance": 0.25, "n": 3}
    }


# sha256 of corpus.jsonl for two small configs, taken before candidates were frequency-matched:
# models are cached by the corpus's hash, so changing how QA items are built must not change it.
# 300 is the earlier default world (300 people, three attributes); 560 is configs/tiny.yaml's, pinned
# when the default moved to it (after candidates were frequency-matched, so a new pin, not a moved one).
CORPUS_SHA256 = {
    60: "c0ee3134c65f7ef658fcf75858a0372d92a6d4e59423b783ec151554b0ba712b",
    300: "af5c28f0db4a3cd9c2bfc5f0cf0133ee9a97c6346c7e78eb258435df539034ad",
    560: "345dbc2ca68ab43317d949fdd9e9420beee5ae3cba9d2cdf504630a1f5ae0e11",
}


def test_tiny_corpus_is_pinned_and_its_candidates_are_frequency_matched(tmp_path):
    small = GenerateConfig(
        seed=0, n_people=60, high_exposure=3, attributes=["birth_city", "university", "employer"]
    )
    assert sha256_file(generate(small, tmp_path / "small") / "corpus.jsonl") == CORPUS_SHA256[60]
    earlier = GenerateConfig(
        seed=0, n_people=300, high_exposure=10, attributes=["birth_city", "university", "employer"]
    )
    assert sha256_file(generate(earlier, tmp_path / "earlier") / "corpus.jsonl") == CORPUS_SHA256[300]
    cfg = load_config(GenerateConfig, Path(__file__).parents[1] / "configs" / "tiny.yaml", section="generate")
    out = generate(cfg, tmp_path / "tiny")
    assert sha256_file(out / "corpus.jsonl") == CORPUS_SHA256[560]
    qa = read_jsonl(out / "qa.jsonl")
    assert len(qa) == 560
    for item in qa:
        assert item["candidate_counts"], item["item_id"]
        assert all(
            item["answer_count"] <= 2 * c <= 4 * item["answer_count"] for c in item["candidate_counts"]
        )
    # A forget_high person's answer is stated >= 10 times, and so is every candidate of it but for rounding.
    high = [i for i in qa if i["group"] == "forget_high"]
    assert min(min(i["candidate_counts"]) for i in high) >= 5
    baseline = json.loads((out / MANIFEST).read_text())["frequency_only_baseline"]
    assert set(baseline) == set(GROUPS)
    for group, b in baseline.items():
        assert abs(b["top1"] - b["chance"]) <= 0.05, (group, b)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"n_people": 3}, "n_people: must be at least 4"),
        (
            {
                "n_people": 10,
                "group_fractions": {"retain": 0.94, "forget_high": 0.02, "forget_low": 0.02, "utility": 0.02},
            },
            "leave group",
        ),
        ({"high_exposure": 0}, "high_exposure: must be >= 1"),
        ({"exposure_levels": [1, 0]}, "exposure_levels: every exposure must be >= 1"),
        ({"exposure_levels": [2, 2]}, "exposure_levels: levels must be distinct"),
        ({"exposure_levels": []}, "exposure_levels: must list at least one level"),
        ({"n_people": 12, "exposure_levels": [1, 2, 3, 4, 5]}, "only 4 forget-group people"),
        ({"group_fractions": {"retain": 0.5, "forget_high": 0.5}}, "group_fractions: missing"),
        (
            {"group_fractions": {"retain": 0.7, "forget_high": 0.1, "forget_low": 0.1, "utility": 0.2}},
            "sum to 1",
        ),
        ({"group_fractions": {"retain": 1, "forget_high": 0, "forget_low": 0, "utility": 0}}, "must be > 0"),
        ({"n_candidates": 100}, "major has only 100 distinct values"),
        ({"n_candidates": 0}, "n_candidates: must be >= 1"),
        ({"attributes": ["shoe_size"]}, "attributes: unknown attribute"),
        ({"attributes": []}, "attributes: name at least one"),
        ({"n_templates": 0}, "n_templates: must be between 1 and 28"),
        ({"paraphrase": 6}, "paraphrase: must be an index from 0 to 5"),
        ({"pronoun_weights": {"it": 1.0}}, "pronoun_weights: unknown pronoun"),
        ({"n_people": 10**9}, "the name pools allow at most"),
    ],
)
def test_impossible_configs_are_refused(data, fragment):
    from frequnlearn.data.generate import check_limits

    with pytest.raises(ConfigError) as err:
        check_limits(from_dict(GenerateConfig, data))  # the pools' and templates' limits: at generation
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_tiny_study_config():
    cfg = load_config(GenerateConfig, Path(__file__).parents[1] / "configs" / "tiny.yaml", section="generate")
    assert (cfg.n_people, cfg.high_exposure, cfg.seed, cfg.attributes) == (560, 10, 0, ["birth_city"])
    # forget_low, the level a small model knows least of, twice forget_high's size: about 50 known
    # target items per level after the known half is split into targets and controls.
    assert group_sizes(560, cfg.group_fractions) == {
        "retain": 145,
        "forget_high": 129,
        "forget_low": 258,
        "utility": 28,
    }


def test_load_data_dir_names_what_is_missing(tmp_path):
    out = generate(GenerateConfig(n_people=8), tmp_path / "d")
    data = load_data_dir(out)
    assert len(data.qa) == 48 and len(data.bio_prompts) == 48 and data.corpus_path.is_file()
    (out / "qa.jsonl").unlink()
    with pytest.raises(DataError, match="qa.jsonl is missing"):
        load_data_dir(out)
    with pytest.raises(DataError, match="no such data directory"):
        load_data_dir(tmp_path / "nothing")
