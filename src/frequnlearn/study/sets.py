"""Which items each unlearning run unlearns, controls, keeps and evaluates: pure functions of the items,
the items the model knows, the study options and the seed (no files, no model)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from frequnlearn.config.study import StudyOptions
from frequnlearn.errors import DataError
from frequnlearn.records import FORGET_GROUPS, QAItem

# Bumped whenever `select_sets` draws different sets (or candidates) from the same inputs (part of
# each unlearn run's key). 3: the run's target and control candidates are redrawn from people the run
# neither unlearns nor controls.
SETS_FORMAT = 3


class NothingToUnlearn(DataError):
    """A level has no eligible items for one model (e.g. it knows none of them)."""


# The role each evaluated set carries in a run's trajectory (`retain` and `utility` are the people
# evaluated along the way, never the retain-loss set).
EVAL_ROLES = {"forget": "forget", "control": "control", "eval_retain": "retain", "eval_utility": "utility"}


def level_of(item: QAItem, compare_by: str) -> str | None:
    """The level an item belongs to when levels are compared by `compare_by`."""
    if compare_by == "group":
        return item.group
    if compare_by == "bucket":
        return item.bucket
    return None if item.frequency is None else f"{item.frequency:g}"


def level_pools(
    items: list[QAItem], known_ids: set[str] | None, options: StudyOptions
) -> dict[str, list[QAItem]]:
    """Eligible items of each studied level, sorted by id.

    In the synthetic setting only the forget groups make levels: retain and utility people are seen
    once too, but they are the retain and evaluation sets, never unlearned. `known_ids` None means
    selection `all`.
    """
    pools: dict[str, list[QAItem]] = {lv: [] for lv in options.levels}
    for it in items:
        if options.setting == "synthetic" and it.group not in FORGET_GROUPS:
            continue
        lv = level_of(it, options.compare_by)
        if lv in pools and (known_ids is None or it.item_id in known_ids):
            pools[lv].append(it)
    return {lv: sorted(its, key=_id) for lv, its in pools.items()}


def select_sets(
    items: list[QAItem],
    known_ids: set[str] | None,
    options: StudyOptions,
    seed: int,
    *,
    level: str,
    retain_items: list[QAItem] | None = None,
) -> dict[str, list[QAItem]]:
    """The item sets of the run that unlearns `level`: forget, control, retain, eval_retain, eval_utility.

    Each level's eligible items (those in `known_ids`, or all when it is None) are shuffled and split
    into a target half (`forget`, unlearned) and a `control` half of the same size (evaluated, never
    unlearned), so that the control drop measures what unlearning does to untouched items of the same
    frequency. Every level gets the same n = min over levels of half its eligible items (capped by
    `forget_size`), so levels are compared on equal-size sets. The retain people evaluated along the
    way (`eval_retain`) are drawn first and are never in the retain-loss set (`retain`), which takes
    the rest (`retain_size` of them, or all). In the synthetic setting the targets' and controls'
    wrong candidates are redrawn for the run (`run_candidates`), so none is an answer the run unlearns. Evaluation and retain sets depend on the seed only, so
    every level and selection of a seed is evaluated on the same retain and utility people.
    """
    selection = "all" if known_ids is None else "known"
    pools = level_pools(items, known_ids, options)
    if level not in pools:
        raise ValueError(f"level {level!r} is not one of the studied levels {options.levels}")
    n = min(len(pool) // 2 for pool in pools.values())
    if options.forget_size is not None:
        n = min(n, options.forget_size)
    if n == 0:
        short = [lv for lv, pool in pools.items() if len(pool) < 2]
        raise NothingToUnlearn(
            f"fewer than 2 {selection} items in level {short} (a target and a control half are needed): "
            "the model knows too few of them before unlearning (train longer, add people, or use selections: [all])"
        )
    shuffled = random.Random(f"{seed}-{selection}-{level}").sample(pools[level], len(pools[level]))
    forget = sorted(shuffled[:n], key=_id)
    control = sorted(shuffled[n : 2 * n], key=_id)
    if options.setting == "synthetic":
        forget, control = run_candidates(forget, control, items, f"{seed}-{selection}-{level}")

    if options.setting == "synthetic":
        retain_pool = [it for it in items if it.group == "retain"]
        utility_pool = [it for it in items if it.group == "utility"]
    else:
        others = [it for it in items if level_of(it, options.compare_by) not in pools]
        retain_pool = retain_items if retain_items is not None else others[: len(others) // 2]
        retain_ids = {it.item_id for it in retain_pool}
        utility_pool = [it for it in others if it.item_id not in retain_ids]
    retain_pool = sorted(retain_pool, key=_id)
    utility_pool = sorted(utility_pool, key=_id)
    rng_eval = random.Random(f"eval-{seed}")
    eval_retain = rng_eval.sample(retain_pool, min(options.eval_retain_size, len(retain_pool)))
    eval_utility = rng_eval.sample(utility_pool, min(options.eval_utility_size, len(utility_pool)))
    evaluated = {it.item_id for it in eval_retain}
    rest = [it for it in retain_pool if it.item_id not in evaluated]
    if options.retain_size is not None:
        rest = sorted(
            random.Random(f"retain-{seed}").sample(rest, min(options.retain_size, len(rest))), key=_id
        )
    return {
        "forget": forget,
        "control": control,
        "retain": rest,
        "eval_retain": eval_retain,
        "eval_utility": eval_utility,
    }


def _id(item: QAItem) -> str:
    return item.item_id


def run_candidates(
    forget: list[QAItem], control: list[QAItem], items: Sequence[QAItem], tag: str
) -> tuple[list[QAItem], list[QAItem]]:
    """The run's targets and controls with their wrong candidates redrawn, never equal to an answer the
    run unlearns, preferably from the values of people who are neither targets nor controls.

    The candidates `generate` drew are other same-exposure people's answers, some of them this run's
    targets: unlearning a target then moves another item's candidate, and the likelihood verdicts
    (rank, truth ratio) move for reasons that have nothing to do with that item. Each item keeps its
    number of candidates and is matched as `generate` matches them (`matched_draw`): values stated in
    the corpus about as often as its answer (within 2x), preferably held by people of its own
    exposure. A frequency-matched set comes from people outside the run when they hold enough such
    values; else controls' values may join (they are evaluated, never unlearned), since unmatched
    candidates would let a ranker by corpus count alone find the answer. Targets' answers never do.
    Seeded by `tag` (the run's seed, selection and level): the same run always gets the same ones.
    """
    targets = {it.person_id for it in forget}
    run = targets | {it.person_id for it in control}
    unlearned = {(it.attribute, it.answer) for it in forget}
    in_run = unlearned | {(it.attribute, it.answer) for it in control}
    outside: dict[str | None, list[QAItem]] = {}
    untargeted: dict[str | None, list[QAItem]] = {}
    for it in sorted(items, key=_id):
        if it.person_id not in run and (it.attribute, it.answer) not in in_run:
            outside.setdefault(it.attribute, []).append(it)
        if it.person_id not in targets and (it.attribute, it.answer) not in unlearned:
            untargeted.setdefault(it.attribute, []).append(it)
    rng = random.Random(f"candidates-{tag}")
    count_of = {(it.attribute, it.answer): it.answer_count for it in items}

    def redrawn(part: list[QAItem]) -> list[QAItem]:
        out = []
        for it in part:
            if not it.candidates:
                out.append(it)
                continue
            pools = [outside.get(it.attribute, []), untargeted.get(it.attribute, [])]
            chosen = matched_draw(it, pools, len(it.candidates), rng)
            counts = [count_of[(it.attribute, c)] for c in chosen]
            out.append(
                dataclasses.replace(
                    it, candidates=chosen, candidate_counts=counts if None not in counts else []
                )
            )
        return out

    return redrawn(forget), redrawn(control)


def matched_draw(item: QAItem, pools: Sequence[Sequence[QAItem]], k: int, rng: random.Random) -> list[str]:
    """k distinct answers for `item`, from the first of `pools` that can match them, drawn as `generate`
    draws candidates: from the narrowest window of corpus counts around the item's answer count
    (within 2x of it) that holds k distinct values, among people of the item's exposure if they
    suffice at that width, else among everyone of the pool; each value drawn as often as people hold
    it; never the item's own answer. When no pool has k values within 2x, the last one gives what it
    has within 2x and then the values nearest in count, so the item keeps its number of candidates.
    Without counts
    (`answer_count` unset) every value of a pool is in the window."""
    count = item.answer_count
    pools = [[h for h in pool if h.answer != item.answer] for pool in pools]  # never its own answer
    for pool in pools:
        same = [h for h in pool if h.frequency == item.frequency]
        best: tuple[float, list[str]] | None = None
        for table in (same, list(pool)):
            width = _window_width(table, count, k)
            if width is not None and (best is None or width < best[0]):
                best = (width, _in_window(table, count, width))
        if best is not None:
            return _distinct_draw(best[1], k, set(), rng)
    last = list(pools[-1]) if pools else []
    picked: list[str] = []
    for table in ([h for h in last if h.frequency == item.frequency], last):
        picked += _distinct_draw(_in_window(table, count, None), k - len(picked), set(picked), rng)
    if len(picked) < k:
        rest = sorted(
            {h.answer: _distance(h, count) for h in last if h.answer not in picked}.items(),
            key=lambda kv: (kv[1], kv[0]),
        )
        picked += [v for v, _ in rest[: k - len(picked)]]
    return picked


def _distance(holder: QAItem, count: int | None) -> float:
    return 0.0 if count is None or holder.answer_count is None else abs(holder.answer_count - count)


def _within_2x(holder: QAItem, count: int | None) -> bool:
    if count is None or holder.answer_count is None:
        return count is None
    return (count + 1) // 2 <= holder.answer_count <= 2 * count


def _window_width(table: Sequence[QAItem], count: int | None, k: int) -> float | None:
    """The smallest distance from `count` whose window (within 2x) holds k distinct values; None when
    the 2x limit holds fewer."""
    nearest: dict[str, float] = {}
    for h in table:
        if _within_2x(h, count):
            nearest[h.answer] = min(nearest.get(h.answer, float("inf")), _distance(h, count))
    if len(nearest) < k:
        return None
    return sorted(nearest.values())[k - 1]


def _in_window(table: Sequence[QAItem], count: int | None, width: float | None) -> list[str]:
    """The values held within `width` of `count` (None: the whole 2x window), once per holder."""
    return [
        h.answer for h in table if _within_2x(h, count) and (width is None or _distance(h, count) <= width)
    ]


def _distinct_draw(held: list[str], n: int, exclude: set[str], rng: random.Random) -> list[str]:
    """Up to n distinct values of `held` not in `exclude`, each as likely as the people who hold it."""
    chosen: list[str] = []
    for value in rng.sample(held, len(held)):
        if len(chosen) >= n:
            break
        if value not in exclude and value not in chosen:
            chosen.append(value)
    return chosen
