"""Which items each unlearning run unlearns, controls, keeps and evaluates: `select_sets`, without files
(except one test on `generate`'s own output)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from frequnlearn.config.generate import GenerateConfig
from frequnlearn.config.study import StudyOptions
from frequnlearn.records import FORGET_GROUPS, QAItem
from frequnlearn.study.sets import NothingToUnlearn, level_pools, select_sets

SETS = ("forget", "control", "retain", "eval_retain", "eval_utility")


def _items(counts: dict[str, int], frequency: dict[str, float] | None = None) -> list[QAItem]:
    out = []
    for group, n in counts.items():
        for i in range(n):
            freq = (frequency or {}).get(group, 10.0 if group == "forget_high" else 1.0)
            out.append(QAItem(f"{group}-{i:03d}", f"q {group} {i}", "a", group=group, frequency=freq))
    return out


ITEMS = _items({"retain": 40, "forget_high": 21, "forget_low": 15, "utility": 14})
OPTIONS = StudyOptions(eval_retain_size=10, eval_utility_size=8)


def _ids(items: list[QAItem]) -> set[str]:
    return {it.item_id for it in items}


@pytest.mark.parametrize("level", ["forget_high", "forget_low"])
@pytest.mark.parametrize("known", [None, {f"forget_high-{i:03d}" for i in range(12)} | {"forget_low-001"}])
def test_every_pair_of_sets_is_disjoint(level, known):
    if known is not None:  # enough known items in both levels
        known = known | {f"forget_low-{i:03d}" for i in range(10)}
    sets = select_sets(ITEMS, known, OPTIONS, seed=0, level=level)
    assert set(sets) == set(SETS)
    for a, b in itertools.combinations(SETS, 2):
        assert not _ids(sets[a]) & _ids(sets[b]), (a, b)
    for name in SETS:  # no item twice within a set
        assert len(_ids(sets[name])) == len(sets[name])


def test_target_and_control_halves_have_one_size_across_levels():
    runs = {lv: select_sets(ITEMS, None, OPTIONS, seed=0, level=lv) for lv in OPTIONS.levels}
    # forget_low has 15 items: 7 targets and 7 controls, in both levels.
    for lv, sets in runs.items():
        assert len(sets["forget"]) == len(sets["control"]) == 7
        assert {it.group for it in sets["forget"] + sets["control"]} == {lv}
    capped = dataclasses.replace(OPTIONS, forget_size=3)
    assert len(select_sets(ITEMS, None, capped, seed=0, level="forget_high")["control"]) == 3


def test_known_selection_draws_only_known_items_and_the_control_is_never_unlearned():
    known = {f"forget_high-{i:03d}" for i in range(0, 21, 2)} | {f"forget_low-{i:03d}" for i in range(9)}
    for seed in range(5):
        sets = select_sets(ITEMS, known, OPTIONS, seed=seed, level="forget_low")
        assert _ids(sets["forget"] + sets["control"]) <= known
        assert len(sets["forget"]) == len(sets["control"]) == 4  # 9 known forget_low items -> 4 + 4
        assert not _ids(sets["control"]) & _ids(sets["forget"])


def test_sets_are_deterministic_and_depend_on_the_seed():
    a = select_sets(ITEMS, None, OPTIONS, seed=1, level="forget_high")
    b = select_sets(list(reversed(ITEMS)), None, OPTIONS, seed=1, level="forget_high")
    assert {k: [it.item_id for it in v] for k, v in a.items()} == {
        k: [it.item_id for it in v] for k, v in b.items()
    }
    c = select_sets(ITEMS, None, OPTIONS, seed=2, level="forget_high")
    assert _ids(a["forget"]) != _ids(c["forget"])


def test_evaluated_retain_people_are_never_in_the_retain_loss():
    sets = select_sets(ITEMS, None, OPTIONS, seed=0, level="forget_high")
    assert len(sets["eval_retain"]) == 10 and len(sets["eval_utility"]) == 8
    # retain_size null: every retain person not evaluated along the way.
    assert _ids(sets["retain"]) | _ids(sets["eval_retain"]) == {f"retain-{i:03d}" for i in range(40)}
    sized = select_sets(
        ITEMS, None, dataclasses.replace(OPTIONS, retain_size=12), seed=0, level="forget_high"
    )
    assert len(sized["retain"]) == 12 and not _ids(sized["retain"]) & _ids(sized["eval_retain"])
    # The same retain and evaluation people for every level and selection of a seed.
    other = select_sets(
        ITEMS,
        {f"forget_{g}-{i:03d}" for g in ("high", "low") for i in range(6)},
        OPTIONS,
        0,
        level="forget_low",
    )
    for name in ("retain", "eval_retain", "eval_utility"):
        assert _ids(other[name]) == _ids(sets[name])


def test_a_level_with_fewer_than_two_eligible_items_is_nothing_to_unlearn():
    with pytest.raises(NothingToUnlearn, match="forget_low"):
        select_sets(
            ITEMS, {"forget_high-000", "forget_high-001", "forget_low-000"}, OPTIONS, 0, level="forget_high"
        )


def test_exposure_levels_are_drawn_from_the_forget_groups_only(tmp_path: Path):
    """Retain and utility people are seen once too; a level of exposure 1 must not pick them up."""
    from frequnlearn.data.generate import generate, load_data_dir

    gen = GenerateConfig(n_people=120, exposure_levels=[1, 3, 9], attributes=["birth_city"], n_templates=2)
    gen.validate()
    generate(gen, tmp_path)
    items = load_data_dir(tmp_path).qa
    assert any(it.group == "retain" and it.frequency == 1 for it in items)  # the trap is there
    options = StudyOptions(
        compare_by="frequency", levels=["1", "3", "9"], eval_retain_size=10, eval_utility_size=10
    )
    pools = level_pools(items, None, options)
    assert all(len(pool) >= 2 for pool in pools.values())
    for level in options.levels:
        assert {it.group for it in pools[level]} <= set(FORGET_GROUPS)
        sets = select_sets(items, None, options, seed=0, level=level)
        unlearned = sets["forget"] + sets["control"]
        assert {it.group for it in unlearned} <= set(FORGET_GROUPS)
        assert {f"{it.frequency:g}" for it in unlearned} == {level}
        assert not _ids(unlearned) & _ids(sets["retain"] + sets["eval_retain"] + sets["eval_utility"])
        assert {it.group for it in sets["retain"] + sets["eval_retain"]} == {"retain"}


def test_real_setting_splits_the_other_items_into_retain_and_utility():
    items = [
        QAItem(f"x{i:02d}", "q", "a", bucket=["low", "high", "medium"][i % 3], frequency=float(i))
        for i in range(30)
    ]
    options = StudyOptions(
        setting="real", compare_by="bucket", levels=["low", "high"], eval_retain_size=3, eval_utility_size=3
    )
    sets = select_sets(items, None, options, seed=0, level="high")
    assert {it.bucket for it in sets["forget"] + sets["control"]} == {"high"}
    assert {it.bucket for it in sets["retain"] + sets["eval_retain"] + sets["eval_utility"]} == {"medium"}
    for a, b in itertools.combinations(SETS, 2):
        assert not _ids(sets[a]) & _ids(sets[b]), (a, b)
    given = [QAItem(f"r{i}", "q", "a") for i in range(6)]
    sets = select_sets(items, None, options, seed=0, level="low", retain_items=given)
    assert _ids(sets["retain"] + sets["eval_retain"]) == _ids(given)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[QAItem]:
    """Items as `generate` writes them: candidates are other same-exposure people's answers, so some
    of them are the answers of a run's own targets."""
    from frequnlearn.data.generate import generate, load_data_dir

    out = tmp_path_factory.mktemp("data")
    gen = GenerateConfig(n_people=200, attributes=["birth_city"], n_templates=2, n_candidates=9)
    gen.validate()
    generate(gen, out)
    return load_data_dir(out).qa


@pytest.mark.parametrize("level", ["forget_high", "forget_low"])
@pytest.mark.parametrize("seed", [0, 1])
def test_no_candidate_of_a_run_is_an_answer_the_run_unlearns_or_controls(generated, level, seed):
    options = StudyOptions(eval_retain_size=10, eval_utility_size=10)
    sets = select_sets(generated, None, options, seed=seed, level=level)
    run = sets["forget"] + sets["control"]
    by_id = {it.item_id: it for it in generated}
    unlearned = {it.answer for it in sets["forget"]}
    in_run = unlearned | {it.answer for it in sets["control"]}
    targets = {it.person_id for it in sets["forget"]}
    run_people = targets | {it.person_id for it in sets["control"]}
    untargeted = {it.answer for it in generated if it.person_id not in targets} - unlearned
    outside = {it.answer for it in generated if it.person_id not in run_people} - in_run
    for it in run:
        original = by_id[it.item_id]
        assert len(it.candidates) == len(original.candidates) == 9  # the same count
        assert len(set(it.candidates)) == 9 and it.answer not in it.candidates
        assert not set(it.candidates) & unlearned, it.item_id  # the pinned property
        assert set(it.candidates) <= untargeted  # values of people this run does not unlearn
        if level == "forget_low":  # many once-seen people outside the run: only theirs are drawn
            assert set(it.candidates) <= outside
        # Matched as generate matches them: within 2x of the answer's corpus count.
        assert it.candidate_counts == [
            next(h.answer_count for h in generated if h.answer == c) for c in it.candidates
        ]
        lo, hi = (it.answer_count + 1) // 2, 2 * it.answer_count
        matched = {h.answer for h in generated if h.answer in untargeted and lo <= h.answer_count <= hi}
        matched.discard(it.answer)
        if len(matched) >= 9:
            assert all(lo <= c <= hi for c in it.candidate_counts), it.item_id
        else:  # too few matched values in this small world: all of them, then the nearest
            assert matched <= set(it.candidates), it.item_id
    # What it replaces: generate's own candidates do hit this run's unlearned answers.
    assert any(set(by_id[it.item_id].candidates) & unlearned for it in run)
    # Everything else about the item is as generated; other sets keep their candidates.
    assert all(dataclasses.replace(it, candidates=[], candidate_counts=[])
               == dataclasses.replace(by_id[it.item_id], candidates=[], candidate_counts=[]) for it in run)  # fmt: skip
    assert all(it == by_id[it.item_id] for it in sets["eval_retain"] + sets["retain"])


def test_run_candidates_are_deterministic_and_prefer_the_items_exposure(generated):
    options = StudyOptions(eval_retain_size=10, eval_utility_size=10)
    a = select_sets(generated, None, options, seed=3, level="forget_high")
    b = select_sets(list(reversed(generated)), None, options, seed=3, level="forget_high")
    assert [it.candidates for it in a["forget"]] == [it.candidates for it in b["forget"]]
    c = select_sets(generated, None, options, seed=3, level="forget_low")
    assert [it.candidates for it in a["forget"]] != [it.candidates for it in c["forget"]]


def test_matched_draw_keeps_the_count_from_the_nearest_values_when_too_few_are_matched():
    import random

    from frequnlearn.study.sets import matched_draw

    item = QAItem("t", "q", "Paris", person_id=0, frequency=10.0, answer_count=20, candidates=["x"] * 3)
    pool = [
        QAItem(f"h{i}", "q", v, person_id=i + 1, frequency=f, answer_count=n)
        for i, (v, f, n) in enumerate(
            [("Rome", 10.0, 18), ("Oslo", 1.0, 22), ("Lima", 1.0, 25), ("Bern", 1.0, 3), ("Kiev", 1.0, 90)]
        )
    ]
    # Same exposure holds one matched value, everyone three: the narrowest window with 3 is [15, 25].
    assert sorted(matched_draw(item, [pool], 3, random.Random(0))) == ["Lima", "Oslo", "Rome"]
    assert sorted(matched_draw(item, [pool], 2, random.Random(0))) in (["Oslo", "Rome"], ["Lima", "Rome"])
    # Only three values lie within 2x (10..40): the fourth is the nearest beyond it (Bern, 17 away).
    assert sorted(matched_draw(item, [pool], 4, random.Random(0))) == ["Bern", "Lima", "Oslo", "Rome"]
    assert len(matched_draw(item, [pool], 5, random.Random(0))) == 5
    # A first pool that cannot match 3 values gives way to the next one that can.
    assert sorted(matched_draw(item, [pool[:2], pool], 3, random.Random(0))) == ["Lima", "Oslo", "Rome"]
    assert sorted(matched_draw(item, [pool[:3], pool], 2, random.Random(0))) in (
        ["Oslo", "Rome"],
        ["Lima", "Rome"],
    )
    # Without corpus counts every value of the pool is a candidate.
    bare = dataclasses.replace(item, answer_count=None)
    assert (
        len(
            matched_draw(
                bare, [[dataclasses.replace(h, answer_count=None) for h in pool]], 5, random.Random(1)
            )
        )
        == 5
    )
