"""Setting A's data: fictitious people, a pre-training corpus in which each biography appears
exactly `exposure` times (each copy worded afresh), QA items for every fact, and biography prompts.

Everything random comes from `random.Random` streams seeded from the config's seed, one stream per
concern (people, candidates, corpus, prompts), so changing how the corpus is worded never changes
who the people are. People, QA items and biography prompts are written from their record types
(`records.Person`, `QAItem`, `BioPrompt`), so a field a record gains is never missing from the files;
corpus documents, millions of lines at 100,000 people, are written as JSON lines directly.
"""

from __future__ import annotations

import bisect
import datetime
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn import __version__, progress
from frequnlearn.config.base import to_dict
from frequnlearn.config.generate import GenerateConfig, corpus_estimate, group_sizes
from frequnlearn.data.pools import Pools, load_pools
from frequnlearn.data.templates import (
    PARAPHRASES,
    QUESTIONS,
    CompiledTemplates,
    compile_templates,
    ordered,
)
from frequnlearn.errors import DataError
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import (
    FORGET_GROUPS,
    GROUPS,
    PRONOUNS,
    BioPrompt,
    Person,
    QAItem,
    as_dict,
    check_free_space,
    check_output_dir,
    check_recorded,
    dumps,
    from_record,
    mark_done,
    output_set,
    read_bio_prompts,
    read_json,
    read_jsonl,
    run_info,
    sha256_file,
    stage_key,
)

DATA_FILES = ("people.jsonl", "corpus.jsonl", "qa.jsonl", "bio_prompts.jsonl")
MANIFEST = "manifest.json"
# Bumped whenever `generate` writes different items for the same config (e.g. how candidates are
# drawn): part of the data directory's stage key, so a study regenerates its data.
DATA_FORMAT = 3
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
FIRST_DAY = datetime.date(1900, 1, 1).toordinal()
LAST_DAY = datetime.date(2099, 12, 31).toordinal()

# Corpus lines: the bytes `records.dumps` gives (sorted keys, UTF-8 kept), without a dict per line.
_encode_str = json.encoder.encode_basestring  # type: ignore[attr-defined]


def render_date(day: datetime.date) -> str:
    """'March 4, 1987': how dates are written in biographies, questions and answers alike."""
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def random_date(rng: random.Random) -> str:
    """Uniform over every day from 1900-01-01 to 2099-12-31 (every month, every valid day)."""
    return render_date(datetime.date.fromordinal(rng.randint(FIRST_DAY, LAST_DAY)))


def _streams(seed: int) -> dict[str, random.Random]:
    # String seeds are hashed with SHA-512 by `random`, so they do not depend on PYTHONHASHSEED.
    return {
        name: random.Random(f"frequnlearn:{seed}:{name}") for name in ("people", "qa", "corpus", "prompts")
    }


def _exposures(groups: list[str], cfg: GenerateConfig, rng: random.Random) -> list[int]:
    if cfg.exposure_levels is None:
        return [cfg.high_exposure if g == "forget_high" else 1 for g in groups]
    # Equal numbers per level over both forget groups; forget_low takes the lower part of the grid.
    levels = sorted(cfg.exposure_levels)
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in FORGET_GROUPS}
    n_forget = sum(len(m) for m in members.values())
    per_level, extra = divmod(n_forget, len(levels))
    grid = [lv for i, lv in enumerate(levels) for _ in range(per_level + (i < extra))]
    exposures = [1] * len(groups)
    low = grid[: len(members["forget_low"])]
    high = grid[len(members["forget_low"]) :]
    for group, part in (("forget_low", low), ("forget_high", high)):
        rng.shuffle(part)
        for i, exposure in zip(members[group], part):
            exposures[i] = exposure
    return exposures


def make_people(cfg: GenerateConfig, pools: Pools, rng: random.Random) -> list[dict[str, Any]]:
    """People as `Person`-shaped dicts, in person_id order; full names are unique."""
    n = cfg.n_people
    weights = [cfg.pronoun_weights.get(p, 0.0) for p in PRONOUNS]
    pronouns = rng.choices(PRONOUNS, weights=weights, k=n)
    given = {p: pools.given_names(p) for p in PRONOUNS}
    lasts = pools.last_names
    names: set[str] = set()
    people: list[dict[str, Any]] = []
    while len(people) < n:
        firsts, middles = given[pronouns[len(people)]]
        first = firsts[rng.randrange(len(firsts))]
        middle = middles[rng.randrange(len(middles))]
        last = lasts[rng.randrange(len(lasts))]
        name = f"{first} {middle} {last}"
        if first == middle or first == last or middle == last or name in names:
            continue
        names.add(name)
        people.append({"name": name, "first_name": first, "middle_name": middle, "last_name": last})

    sizes = group_sizes(n, cfg.group_fractions)
    groups = [g for g in GROUPS for _ in range(sizes[g])]
    rng.shuffle(groups)
    exposures = _exposures(groups, cfg, rng)
    cities, universities, majors = pools.cities, pools.universities, pools.majors
    employers, employer_city = pools.employers, pools.employer_city
    rows = []
    for i, person in enumerate(people):
        employer = employers[rng.randrange(len(employers))]
        rows.append(
            {
                "person_id": i,
                **person,
                "group": groups[i],
                "exposure": exposures[i],
                "pronoun": pronouns[i],
                "birth_date": random_date(rng),
                "birth_city": cities[rng.randrange(len(cities))],
                "university": universities[rng.randrange(len(universities))],
                "major": majors[rng.randrange(len(majors))],
                "employer": employer,
                "employer_city": employer_city[employer],
            }
        )
    return rows


def value_counts(people: Sequence[dict[str, Any]], attributes: Sequence[str]) -> dict[str, int]:
    """How often each value is stated in the corpus: every biography copy states each of its person's
    values once, every retain QA document its answer once, whatever the attribute (a city can be a
    birth city and an employer's city). Exact for the generated corpus; substrings of longer values
    ("Rosa, CA" in "Santa Rosa, CA") are not counted, as no document states them as a value."""
    counts: Counter[str] = Counter()
    for p in people:
        copies = p["exposure"] + (1 if p["group"] == "retain" else 0)
        for attr in attributes:
            counts[p[attr]] += copies
    return dict(counts)


class CandidateSampler:
    """K distinct wrong answers of one attribute, each stated in the corpus within a factor of 2 as
    often as the true answer (`value_counts`).

    Without that match a model that only learned how often values occur would rank the frequent
    people's answers first and look as if it knew them. Preferred: true answers of other people of
    the same exposure (for a forget_high person, values themselves seen about `high_exposure` times);
    then any value of the attribute the corpus states about as often. A value seen less than half or
    more than twice as often is never drawn: when fewer than K values qualify, the item gets fewer
    candidates (counted in the manifest's `candidates_short`), never worse-matched ones.
    """

    def __init__(
        self,
        attribute: str,
        people: Sequence[dict[str, Any]],
        counts: dict[str, int],
        k: int,
        rng: random.Random,
    ):
        self.k = k
        self.rng = rng
        self.counts = counts
        by_exposure: dict[int, list[str]] = {}
        for p in people:
            by_exposure.setdefault(p["exposure"], []).append(p[attribute])
        # One entry per person holding a value, sorted by the value's corpus count: the values within
        # a count window are one slice, and a value is drawn as often as people hold it, just as the
        # true answer is (drawn uniformly over values, candidates would be rarer than truths).
        self.same = {e: self._sorted(v) for e, v in by_exposure.items()}
        self.any = self._sorted([p[attribute] for p in people])
        self._distinct: dict[tuple[int, int, int], int] = {}

    def _sorted(self, values: list[str]) -> tuple[list[int], list[str]]:
        ordered_values = sorted(values, key=lambda v: (self.counts[v], v))
        return [self.counts[v] for v in ordered_values], ordered_values

    def _within(self, table: tuple[list[int], list[str]], count: int, spread: int) -> tuple[list[str], int]:
        """(held values whose count is within `spread` of `count` and within 2x of it, with repeats;
        how many distinct values that is)."""
        keys, values = table
        low, high = max(count - spread, (count + 1) // 2), min(count + spread, 2 * count)
        pool = values[bisect.bisect_left(keys, low) : bisect.bisect_right(keys, high)]
        key = (id(table), low, high)
        if key not in self._distinct:
            self._distinct[key] = len(set(pool))
        return pool, self._distinct[key]

    def _draw(self, pool: list[str], n: int, exclude: set[str]) -> list[str]:
        """Up to n distinct values not in `exclude`, each drawn with probability by its repeats."""
        m = len(pool)
        chosen: list[str] = []
        seen = set(exclude)
        if m > 4 * (n + len(exclude)):
            # Rejection is cheap while the pool far outnumbers the draws.
            rnd = self.rng.random
            for _ in range(64 * m):
                value = pool[int(rnd() * m)]
                if value not in seen:
                    seen.add(value)
                    chosen.append(value)
                    if len(chosen) == n:
                        return chosen
        for value in self.rng.sample(pool, m):
            if len(chosen) == n:
                break
            if value not in seen:
                seen.add(value)
                chosen.append(value)
        return chosen

    def __call__(self, answer: str, exposure: int) -> list[str]:
        count = self.counts[answer]
        # The narrowest window around the truth's count that supplies K values, as far above as below
        # (up to the 2x limit): a ranker by count then sits at chance, where a wide or lopsided window
        # would put the truth's count systematically above or below its candidates'.
        for spread in range(count + 1):
            for table in (self.same[exposure], self.any):
                pool, distinct = self._within(table, count, spread)
                if distinct - 1 >= self.k:  # the answer itself is always in its own window
                    return self._draw(pool, self.k, {answer})
        chosen = self._draw(self._within(self.same[exposure], count, count)[0], self.k, {answer})
        pool = self._within(self.any, count, count)[0]
        return chosen + self._draw(pool, self.k - len(chosen), {answer, *chosen})


def frequency_only_baseline(rows: Sequence[tuple[str, int, Sequence[int]]]) -> dict[str, dict[str, float]]:
    """Per group: top-1 rate of a ranker that sees only corpus counts (answer_count against
    candidate_counts, ties broken at random, so a tie among j values scores 1/j), and chance, the mean of
    1/(1 + candidates). Matched candidates put the first near the second for every group."""
    totals: dict[str, list[float]] = {}
    for group, answer_count, candidate_counts in rows:
        if not candidate_counts:
            continue
        top = max(candidate_counts)
        hit = 0.0 if answer_count < top else 1.0 / (1 + sum(c == answer_count for c in candidate_counts))
        acc = totals.setdefault(group, [0.0, 0.0, 0.0])
        acc[0] += hit
        acc[1] += 1.0 / (1 + len(candidate_counts))
        acc[2] += 1
    return {
        g: {"top1": round(hit / n, 6), "chance": round(chance / n, 6), "n": int(n)}
        for g, (hit, chance, n) in sorted(totals.items())
    }


class Verbalizer:
    """Renders biographies with a template drawn afresh for every sentence of every copy."""

    def __init__(self, compiled: CompiledTemplates, rng: random.Random):
        self.attributes = compiled.attributes
        self.rnd = rng.random
        self.first = {p: compiled.first[compiled.attributes[0]][p] for p in PRONOUNS}
        self.later = {p: [compiled.later[a][p] for a in compiled.attributes[1:]] for p in PRONOUNS}

    def sentences(self, name: str, pronoun: str, values: Sequence[str], stop: int) -> list[str]:
        """The first `stop` sentences in full."""
        rnd = self.rnd
        out = []
        if stop > 0:
            rows = self.first[pronoun]
            before, after, tail = rows[int(rnd() * len(rows))]
            out.append(before + name + after + _join(values[0], tail))
        for rows, value in zip(self.later[pronoun][: stop - 1], values[1:stop]):
            head, tail = rows[int(rnd() * len(rows))]
            out.append(head + _join(value, tail))
        return out

    def biography(self, name: str, pronoun: str, values: Sequence[str]) -> str:
        return " ".join(self.sentences(name, pronoun, values, len(values)))

    def prompt(self, name: str, pronoun: str, values: Sequence[str], index: int) -> str:
        """A fresh biography cut right before attribute `index`'s value (which follows after a space)."""
        done = self.sentences(name, pronoun, values, index)
        if index == 0:
            rows = self.first[pronoun]
            before, after, _ = rows[int(self.rnd() * len(rows))]
            head = before + name + after
        else:
            rows = self.later[pronoun][index - 1]
            head = rows[int(self.rnd() * len(rows))][0]
        return " ".join([*done, head[:-1]])


def _join(value: str, tail: str) -> str:
    # "Washington D.C." ends a sentence without a second full stop.
    if tail[:1] == "." and value[-1:] == ".":
        return value + tail[1:]
    return value + tail


def _person_tag(person_id: int, n_people: int) -> str:
    return f"p{person_id:0{max(5, len(str(n_people - 1)))}d}"


def _write_lines(path: Path, lines: Iterator[str]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= 8192:
                fh.write("".join(buf))
                buf.clear()
        fh.write("".join(buf))


def _check_out_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a path that is not a data directory's (see `records.check_output_dir`);
    remove what a killed earlier run left beside it."""
    check_output_dir(out_dir, "data", overwrite=overwrite)


def generate(cfg: GenerateConfig, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the data directory `out_dir` (people, corpus, QA, bio prompts, manifest) as one set.

    The files are built in a scratch directory and moved in with the manifest last, so an existing
    data directory is never left half old, half new; files of other names in it are kept.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    # The corpus, and the scratch copy the set is built in, must fit the disk.
    check_free_space(out_dir, corpus_estimate(cfg)["corpus_bytes"], "the corpus of this config")
    pools = load_pools()
    rngs = _streams(cfg.seed)
    people = make_people(cfg, pools, rngs["people"])
    attributes = ordered(cfg.attributes)
    compiled = compile_templates(attributes, cfg.n_templates)
    tags = [_person_tag(p["person_id"], cfg.n_people) for p in people]
    values = [tuple(p[a] for a in attributes) for p in people]

    with output_set(out_dir, (*DATA_FILES, MANIFEST), MANIFEST, kind="data") as tmp:
        _write_lines(tmp / "people.jsonl", (dumps(as_dict(Person(**p))) + "\n" for p in people))
        qa = _write_qa(tmp / "qa.jsonl", cfg, people, tags, attributes, rngs["qa"])
        docs = _write_corpus(tmp / "corpus.jsonl", people, tags, values, attributes, compiled, rngs["corpus"])
        n_prompts = _write_bio_prompts(
            tmp / "bio_prompts.jsonl", people, tags, values, attributes, compiled, rngs["prompts"]
        )
        exposure_counts = Counter(p["exposure"] for p in people)
        manifest = {
            "version": __version__,
            "seed": cfg.seed,
            "config": to_dict(cfg),
            "counts": {
                "people": len(people),
                "groups": dict(Counter(p["group"] for p in people)),
                "exposure": {str(k): exposure_counts[k] for k in sorted(exposure_counts)},
                "exposure_by_group": {
                    g: {
                        str(k): v
                        for k, v in sorted(Counter(p["exposure"] for p in people if p["group"] == g).items())
                    }
                    for g in GROUPS
                },
                "documents": docs,
                "qa_items": qa["qa_items"],
                "bio_prompts": n_prompts,
            },
            "exposure_levels": sorted(exposure_counts),
            # Top-1 rate of ranking answer and candidates by corpus count alone, per group, and chance.
            "frequency_only_baseline": qa["frequency_only_baseline"],
            # Items given fewer than n_candidates wrong answers (too few values within 2x of the
            # truth's count), per group/attribute.
            "candidates_short": qa["candidates_short"],
            "files": {name: sha256_file(tmp / name) for name in DATA_FILES},
            "run_info": run_info(cfg, cfg.seed),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n")
    return out_dir


def generate_key(cfg: GenerateConfig) -> str:
    """The data directory's stage key: the config and the format of the items written from it."""
    return stage_key("generate", DATA_FORMAT, cfg)


def run_generate(cfg: GenerateConfig, out_dir: str | Path, overwrite: bool = False) -> Path:
    """The generate stage, as `frequnlearn generate` and the study run it: the data directory, whose
    manifest is its run record, then the done marker naming `generate_key`."""
    out = generate(cfg, out_dir, overwrite=overwrite)
    mark_done(out, generate_key(cfg), files=(*DATA_FILES, MANIFEST))
    return out


def _write_qa(
    path: Path,
    cfg: GenerateConfig,
    people: list[dict[str, Any]],
    tags: list[str],
    attributes: tuple[str, ...],
    rng: random.Random,
) -> dict[str, Any]:
    """Write qa.jsonl; return the frequency-only baseline per group and the items short of candidates."""
    counts = value_counts(people, attributes)
    samplers = {a: CandidateSampler(a, people, counts, cfg.n_candidates, rng) for a in attributes}
    paraphrases = {a: PARAPHRASES[a][cfg.paraphrase] for a in attributes}
    ranked: list[tuple[str, int, list[int]]] = []
    short: Counter[str] = Counter()

    def lines() -> Iterator[str]:
        for person, tag in zip(people, tags):
            name = person["name"]
            group, exposure, pid = person["group"], person["exposure"], person["person_id"]
            for attr in attributes:
                value = person[attr]
                chosen = samplers[attr](value, exposure)
                chosen_counts = [counts[c] for c in chosen]
                ranked.append((group, counts[value], chosen_counts))
                if len(chosen) < cfg.n_candidates:
                    short[f"{group}/{attr}"] += 1
                item = QAItem(
                    item_id=f"{tag}-{attr}",
                    question=QUESTIONS[attr].format(name=name),
                    answer=value,
                    paraphrase=paraphrases[attr].format(name=name),
                    person_id=pid,
                    group=group,
                    attribute=attr,
                    frequency=exposure,
                    in_corpus=group == "retain",
                    candidates=chosen,
                    subject=name,
                    object=value,
                    answer_count=counts[value],
                    candidate_counts=chosen_counts,
                )
                yield dumps(as_dict(item)) + "\n"

    _write_lines(path, lines())
    return {
        "qa_items": len(people) * len(attributes),
        "frequency_only_baseline": frequency_only_baseline(ranked),
        "candidates_short": dict(sorted(short.items())),
    }


def _write_corpus(
    path: Path,
    people: list[dict[str, Any]],
    tags: list[str],
    values: list[tuple[str, ...]],
    attributes: tuple[str, ...],
    compiled: CompiledTemplates,
    rng: random.Random,
) -> dict[str, int]:
    """Biographies (each person `exposure` times) and retain QA documents, in shuffled order.

    Only document slots are shuffled (integers), then each is rendered as it is written, so the
    corpus never sits in memory and no two copies of a biography are worded from the same draw.
    """
    n = len(people)
    n_attr = len(attributes)
    slots = [i for i, p in enumerate(people) for _ in range(p["exposure"])]
    n_bio = len(slots)
    slots += [
        n + i * n_attr + a for i, p in enumerate(people) if p["group"] == "retain" for a in range(n_attr)
    ]
    rng.shuffle(slots)
    verbalizer = Verbalizer(compiled, rng)
    full = get_prompt_format("plain").full
    copies = [0] * n

    def lines() -> Iterator[str]:
        with progress.bar(len(slots), "corpus", unit="doc") as bar:
            for done, slot in enumerate(slots, 1):
                if slot < n:
                    person = people[slot]
                    copy = copies[slot]
                    copies[slot] = copy + 1
                    text = verbalizer.biography(person["name"], person["pronoun"], values[slot])
                    yield (
                        f'{{"doc_id": "{tags[slot]}-bio-{copy}", "kind": "bio", '
                        f'"person_id": {slot}, "text": {_encode_str(text)}}}\n'
                    )
                else:
                    i, a = divmod(slot - n, n_attr)
                    attr = attributes[a]
                    person = people[i]
                    text = full(QUESTIONS[attr].format(name=person["name"]), person[attr])
                    yield (
                        f'{{"doc_id": "{tags[i]}-{attr}-qa", "kind": "qa", '
                        f'"person_id": {i}, "text": {_encode_str(text)}}}\n'
                    )
                if done % 65536 == 0:
                    bar.update(65536)

    _write_lines(path, lines())
    return {"bio": n_bio, "qa": len(slots) - n_bio}


def _write_bio_prompts(
    path: Path,
    people: list[dict[str, Any]],
    tags: list[str],
    values: list[tuple[str, ...]],
    attributes: tuple[str, ...],
    compiled: CompiledTemplates,
    rng: random.Random,
) -> int:
    verbalizer = Verbalizer(compiled, rng)

    def lines() -> Iterator[str]:
        for person, tag, vals in zip(people, tags, values):
            name, pronoun = person["name"], person["pronoun"]
            for index, attr in enumerate(attributes):
                prompt = BioPrompt(
                    item_id=f"{tag}-{attr}",
                    person_id=person["person_id"],
                    group=person["group"],
                    attribute=attr,
                    prompt=verbalizer.prompt(name, pronoun, vals, index),
                    target=vals[index],
                    frequency=person["exposure"],
                )
                yield dumps(as_dict(prompt)) + "\n"

    _write_lines(path, lines())
    return len(people) * len(attributes)


@dataclass
class DataDir:
    """A generated data directory, read back; the corpus stays on disk (`corpus_path`)."""

    path: Path
    people: list[Person]
    qa: list[QAItem]
    bio_prompts: list[BioPrompt]
    manifest: dict[str, Any]

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"


def load_data_dir(path: str | Path) -> DataDir:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such data directory; create it with `frequnlearn generate --out {path}`")
    for name in (*DATA_FILES, MANIFEST):
        if not (path / name).is_file():
            raise DataError(
                f"{path}: {name} is missing, so this is not a complete data directory; "
                f"regenerate it with `frequnlearn generate --out {path}`"
            )
    check_data_files(path, ("people.jsonl", "qa.jsonl", "bio_prompts.jsonl"))
    return DataDir(
        path=path,
        people=[from_record(Person, r) for r in read_jsonl(path / "people.jsonl")],
        qa=[from_record(QAItem, r) for r in read_jsonl(path / "qa.jsonl")],
        bio_prompts=read_bio_prompts(path / "bio_prompts.jsonl"),
        manifest=read_json(path / MANIFEST),
    )


def check_data_files(path: str | Path, names: Sequence[str]) -> None:
    """Refuse a file of a generated data directory that differs from the sha256 its manifest recorded
    (edited answers would be unlearned against a baseline scored on the originals)."""
    check_recorded(
        Path(path), MANIFEST, names, f"regenerate the directory with `frequnlearn generate --out {path}`"
    )
