"""Which items each unlearning run unlearns, controls, keeps and evaluates: pure functions of the items,
the items the model knows, the study options and the seed (no files, no model)."""

from __future__ import annotations

import random

from frequnlearn.config.study import StudyOptions
from frequnlearn.errors import DataError
from frequnlearn.records import FORGET_GROUPS, QAItem

# Bumped whenever `select_sets` draws different sets from the same inputs (part of each unlearn run's key).
SETS_FORMAT = 2


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
    the rest (`retain_size` of them, or all). Evaluation and retain sets depend on the seed only, so
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
