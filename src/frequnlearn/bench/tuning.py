"""Retain-only tuning: each method's learning rate (and its one main setting) chosen so that it pays
the benchmark's retain cost, from retain and utility items alone.

For each tuned model (a pretraining seed of the study) a tuning set is drawn from the retain people
the study never evaluates: known items of retain people, never in a forget or a control set (those
come from the forget groups) and never evaluated as targets by the study. Every grid point unlearns it
from the pretrained weights with the study's own `unlearn:` settings (step budget, stopping fields,
schedule; only the tuned values replaced) and the study's retain-loss people, evaluated on the very
retain and utility people the study's runs of that seed evaluate. Its cost is the drop of normalised
retain (and utility) accuracy at the run's stopping point (its last evaluated step). The point closest
to the target cost is chosen (or, with `bench.prefer: largest_rate`, the largest rate within the
tolerance; with `most_forgotten`, the point within it that forgets most of the tuning set). Nothing
here reads a forget or control item, so changing them cannot
change the choice (`tests/test_bench.py` checks it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn import progress
from frequnlearn.config import to_dict
from frequnlearn.config.study import StudyOptions
from frequnlearn.errors import DataError, TrainingError
from frequnlearn.layout import TIMINGS
from frequnlearn.records import QAItem, read_json, read_parquet, stage_done, stage_key, write_json

# Bumped whenever the tuning draws other sets or measures differently (part of every tuning run's key).
TUNING_FORMAT = 1
# Roles of the tuning runs' evaluated sets, as their trajectories name them.
TUNING_ROLES = (("tuning", "forget"), ("eval_retain", "retain"), ("eval_utility", "utility"))


_NO_TRAJECTORY = pd.DataFrame(columns=["family", "probe", "role", "step", "item_id", "known"])


class TooFewTuningItems(DataError):
    """The model knows fewer retain items outside the evaluated people than the tuning set needs."""


@dataclass(frozen=True)
class GridPoint:
    """One setting tried for one method: a learning rate and, if the method has one tuned, its value."""

    spec: str
    lr: float
    param: str | None = None
    value: Any = None

    @property
    def label(self) -> str:
        return f"lr={self.lr:g}" + (f",{self.param}={self.value}" if self.param else "")

    @property
    def overrides(self) -> dict[str, Any]:
        return {"lr": self.lr, **({self.param: self.value} if self.param else {})}


def grid(
    methods: list[str], lr_grid: list[float], param_grid: dict[str, dict[str, list[Any]]]
) -> list[GridPoint]:
    """Every point of every method's grid, in config order (the order that breaks ties)."""
    points = []
    for spec in methods:
        ((param, values),) = param_grid[spec].items() if spec in param_grid else [(None, [None])]
        points += [GridPoint(spec, lr, param, v) for lr, v in itertools.product(lr_grid, values)]
    return points


def refinements(runs: pd.DataFrame, target: float, tolerance: float) -> list[GridPoint]:
    """The next bisection points: for each method and value of its tuned setting, the geometric
    midpoint of the first two neighbouring rates whose mean retain drop (over the tuned seeds) goes
    from below `target` to at least `target`, rounded to three significant digits.

    None for a method whose closest point is already within half the tolerance, whose drops never
    cross the target (all below: the grid ends too low; all above: too high), or whose bracket is too
    narrow to hold another rounded rate. Reads only the retain columns; a run with no cost (a diverged
    loss that measured nothing) is left out of the bracket."""
    if runs.empty:
        return []
    points = []
    for (spec, param, value), g in runs.groupby(["method", "param", "value"], sort=False, dropna=False):
        mean = g.groupby("lr")["retain_drop"].mean().dropna().sort_index()
        if mean.empty or (mean - target).abs().min() <= tolerance / 2 + 1e-9:
            continue
        lrs, drops = list(mean.index), list(mean.values)
        for a, b, da, db in zip(lrs, lrs[1:], drops, drops[1:]):
            if da < target <= db:
                mid = float(f"{math.sqrt(a * b):.3g}")
                if a < mid < b:
                    points.append(GridPoint(str(spec), mid, param or None, value if param else None))
                break
    return points


def tuning_sets(
    items: list[QAItem], known_ids: set[str] | None, options: StudyOptions, seed: int, size: int
) -> dict[str, list[QAItem]]:
    """The sets of one seed's tuning runs: `tuning` (unlearned), `retain` (the retain loss's people),
    `eval_retain` and `eval_utility` (measured). Only retain and utility people are read.

    The evaluated people are drawn exactly as `study.sets.select_sets` draws them for the same seed,
    so a grid point's cost is measured on the people the study's runs are measured on. The tuning set
    is `size` items of the other retain people, known ones (in `known_ids`; None: any, as the study's
    selection `all`); the retain loss takes the rest (capped by `retain_size` as in the study)."""
    retain_pool = sorted((it for it in items if it.group == "retain"), key=_id)
    utility_pool = sorted((it for it in items if it.group == "utility"), key=_id)
    rng_eval = random.Random(f"eval-{seed}")
    eval_retain = rng_eval.sample(retain_pool, min(options.eval_retain_size, len(retain_pool)))
    eval_utility = rng_eval.sample(utility_pool, min(options.eval_utility_size, len(utility_pool)))
    evaluated = {it.item_id for it in eval_retain}
    rest = [it for it in retain_pool if it.item_id not in evaluated]
    candidates = [it for it in rest if known_ids is None or it.item_id in known_ids]
    if len(candidates) < size:
        raise TooFewTuningItems(
            f"bench.tuning_size: the model of seed {seed} knows {len(candidates)} retain items outside the "
            f"evaluated people, fewer than the {size} asked; lower bench.tuning_size or raise generate.n_people"
        )
    tuning = sorted(random.Random(f"tuning-{seed}").sample(candidates, size), key=_id)
    chosen = {it.item_id for it in tuning}
    retain = [it for it in rest if it.item_id not in chosen]
    if options.retain_size is not None:
        retain = sorted(
            random.Random(f"retain-{seed}").sample(retain, min(options.retain_size, len(retain))), key=_id
        )
    return {"tuning": tuning, "retain": retain, "eval_retain": eval_retain, "eval_utility": eval_utility}


def stopping_cost(traj: pd.DataFrame, role: str, probe: str = "question") -> tuple[float, int, float]:
    """(drop, items known at the start, last step) of one role in one run: 1 - the share of the
    role's items generated at the first step that are still generated at the last (the stopping point)."""
    g = traj[(traj["family"] == "gen") & (traj["probe"] == probe) & (traj["role"] == role)]
    if g.empty:
        return math.nan, 0, math.nan
    first, last = g["step"].min(), g["step"].max()
    start = g[g["step"] == first]
    known0 = set(start.loc[start["known"] == 1.0, "item_id"])
    end = g[(g["step"] == last) & g["item_id"].isin(known0)]
    if not known0:
        return math.nan, 0, float(last)
    return 1.0 - float((end["known"] == 1.0).sum()) / len(known0), len(known0), float(last)


def choose(runs: pd.DataFrame, target: float, tolerance: float, prefer: str = "closest") -> pd.DataFrame:
    """One row per method: the grid point whose mean retain drop over the tuned seeds is closest to
    `target` (ties: the smaller utility drop, then the earlier point of the grid). Reads only the
    retain and utility columns; `matched` says whether the drop lies within `tolerance` of the target.

    `prefer="largest_rate"` takes, among the points within `tolerance`, the one with the largest
    learning rate (then the closest, as above), and the closest point where none is within it. With a
    retain-drop stopping rule every rate past the cost stops near it, so "closest" is a near-tie
    decided by rounding, and its winner is the smallest rate that just reaches the cost in S_max
    steps: a set that costs less per step than the tuning set then ends below the band. The largest
    matched rate reaches the cost well before S_max and leaves the rule to end the run.

    `prefer="most_forgotten"` takes, among the points within `tolerance`, the one whose mean share of
    the tuning set no longer generated at the stopping point (`tuning_set_forgotten`) is largest
    (then the closest, as above): each method at the setting that forgets most for the matched
    cost, as a method's own authors would tune it. Rates that jump past the budget in a step or two
    reach the same cost having forgotten less than rates that spend the budget over many steps, so
    the largest rate is not the most effective one. The tuning set is retain people's items; no
    forget or control item is read."""
    by = ["method", "point"]
    mean = (
        runs.groupby(by, sort=False)
        .agg(
            grid_index=("grid_index", "first"),
            lr=("lr", "first"),
            param=("param", "first"),
            value=("value", "first"),
            retain_drop=("retain_drop", "mean"),
            utility_drop=("utility_drop", "mean"),
            tuning_set_forgotten=("tuning_set_forgotten", "mean"),
            seeds=("seed", "nunique"),
        )
        .reset_index()
    )
    mean["distance"] = (mean["retain_drop"] - target).abs()
    rows = []
    for _, g in mean.groupby("method", sort=False):
        # Drops are shares of a few items: distances equal but for rounding are a tie.
        g = g.assign(_u=g["utility_drop"].fillna(math.inf), _d=g["distance"].round(9).fillna(math.inf))
        g = g.sort_values(["_d", "_u", "grid_index"], kind="stable")
        within = g[g["_d"] <= tolerance + 1e-9]
        if prefer == "largest_rate" and len(within):
            g = within.sort_values("lr", ascending=False, kind="stable")
        elif prefer == "most_forgotten" and len(within):
            forgotten = within["tuning_set_forgotten"].round(9).fillna(-math.inf)
            g = (
                within.assign(_f=forgotten)
                .sort_values("_f", ascending=False, kind="stable")
                .drop(columns="_f")
            )
        rows.append(g.iloc[0].drop(["_u", "_d"]))
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["matched"] = out["distance"] <= tolerance + 1e-9
    return out


def chosen_overrides(choice: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """spec -> the unlearn settings the study runs it with (lr and the tuned setting)."""
    out: dict[str, dict[str, Any]] = {}
    for r in choice.itertuples(index=False):
        values: dict[str, Any] = {"lr": float(r.lr)}
        if isinstance(r.param, str) and r.param:
            values[r.param] = _plain(r.value)
        out[str(r.method)] = values
    return out


@dataclass
class _TunedModel:
    """One tuned model (a study `baseline` task) with its tuning sets and the item ids they record."""

    task: Any
    sets: dict[str, list[QAItem]]
    bios: Any
    ids: dict[str, list[str]]


class _Tuning:
    """The tuning runs of one benchmark: each (point, model) run, or read back when done for its key,
    and its costs appended to `rows`; the wall times kept in `out_dir/timings.json` across resumed
    parts (as the study's), for the report's Run section."""

    def __init__(self, cfg: Any, runner: Any, ecfg: Any, out_dir: Path, quiet: bool) -> None:
        self.cfg, self.runner, self.ecfg, self.out_dir, self.quiet = cfg, runner, ecfg, out_dir, quiet
        self.rows: list[dict[str, Any]] = []
        self.timings_path = out_dir / TIMINGS
        self.timings = read_json(self.timings_path) if self.timings_path.is_file() else {}

    def measure(self, models: list[_TunedModel], batch: list[GridPoint], first: int, stage: str) -> None:
        """Every point of `batch` on every tuned model; grid indices from `first`."""
        for m in models:
            for i, point in enumerate(batch, start=first):
                self.rows.append(self.run(m, point, i, stage, f"{stage} {i + 1 - first} of {len(batch)}"))

    def run(self, m: _TunedModel, point: GridPoint, index: int, stage: str, where: str) -> dict[str, Any]:
        """One tuning run's row: run it unless done for its key, then read its costs back."""
        from frequnlearn.unlearn.stage import UnlearnInputs, run_unlearn

        p, runner = m.task.params, self.runner
        tag, seed = m.task.name, p["seed"]
        ucfg = dataclasses.replace(
            runner.keys.unlearn_cfg({"method": point.spec, "seed": seed}), **point.overrides
        )
        ucfg.validate()
        path = self.out_dir / point.spec / tag / point.label
        key = stage_key("bench-tuning", TUNING_FORMAT, runner.keys.baseline(p), ucfg, self.ecfg, m.ids)
        note = ""
        run_id = f"tuning/{point.spec}/{tag}/{point.label}"
        if not stage_done(path, key):
            if not self.quiet:
                progress.message(f"tuning {point.spec} on {tag}: {point.label} ({where})")
            model, tok = runner.inputs.model(runner.layout.model(tag))
            ident = {
                "run_id": run_id,
                "task": run_id,
                "model": tag,
                "size": p["size"],
                "n_params": p["n_params"],
                "seed": seed,
                "world": p["world"],
                "method": point.spec,
                "level": "tuning",
                "selection": self.cfg.selection,
            }
            inputs = UnlearnInputs(
                model=model,
                tokenizer=tok,
                forget=m.sets["tuning"],
                retain=m.sets["retain"],
                evaluated=[(role, m.sets[name]) for name, role in TUNING_ROLES],
                identity=ident,
                bios=m.bios,
                sets=m.ids,
            )
            started = time.perf_counter()
            try:
                with progress.quiet(self.quiet):
                    run_unlearn(ucfg, self.ecfg, inputs, path, key=key, keep_model=False)
            except TrainingError as err:
                # A point whose loss diverged is a point of the grid too: what it measured before it
                # stopped is its cost (none: no cost, never chosen over one that has one).
                note = str(err)
                progress.message(f"tuning {point.spec} on {tag}: {point.label} stopped: {note}")
            self.timings[run_id] = round(time.perf_counter() - started, 1)
            write_json(self.timings_path, self.timings)
        traj_path = path / "trajectory.parquet"
        traj = read_parquet(traj_path) if traj_path.is_file() else _NO_TRAJECTORY
        retain = stopping_cost(traj, "retain")
        utility = stopping_cost(traj, "utility")
        tuned = stopping_cost(traj, "forget")
        return {
            "method": point.spec,
            "point": point.label,
            "grid_index": index,
            # grid: a point of bench.lr_grid; refine-N: the N-th bisection round's midpoint.
            "stage": stage,
            "lr": point.lr,
            "param": point.param or "",
            "value": _plain(point.value) if point.param else "",
            "model": tag,
            "seed": seed,
            "retain_drop": retain[0],
            "utility_drop": utility[0],
            "tuning_set_forgotten": tuned[0],
            "n_retain_known": retain[1],
            "n_utility_known": utility[1],
            "n_tuning": tuned[1],
            "stop_step": retain[2],
            # Wall time of the run where this benchmark ran it (None: run before times were kept).
            "seconds": self.timings.get(run_id),
            "note": note,
        }


def run_tuning(
    cfg: Any, runner: Any, baselines: list[Any], out_dir: Path, quiet: bool = False
) -> dict[str, Any]:
    """Measure every grid point on every tuned model (the study's `baseline` tasks `baselines`, whose
    models and baseline scores `runner`, the study's TaskRunner, reads), each run kept in
    `out_dir/<method>/<model>/<point>/` and skipped when done for its key; returns the tuning record
    (grid, sets, every run's costs, the choice)."""
    b, s = cfg.bench, cfg.study
    points = grid(s.methods, b.lr_grid, b.param_grid)
    ecfg = tuning_eval(cfg.evaluate)
    models = []
    for task in baselines:
        p = task.params
        items, bios = runner.inputs.items(p["world"])
        known = runner.inputs.known(task.name) if cfg.selection == "known" else None
        sets = tuning_sets(items, known, s, p["seed"], b.tuning_size)
        models.append(_TunedModel(task, sets, bios, {k: [it.item_id for it in v] for k, v in sets.items()}))
    sets_record = {m.task.name: m.ids for m in models}
    tuning = _Tuning(cfg, runner, ecfg, out_dir, quiet)
    rows = tuning.rows
    tuning.measure(models, points, 0, "grid")
    for round_ in range(1, b.refine_steps + 1):
        tried = {(r["method"], r["point"]) for r in rows}
        batch = [
            q
            for q in refinements(pd.DataFrame(rows), b.target_retain_drop, b.tolerance)
            if (q.spec, q.label) not in tried
        ]
        if not batch:
            break
        tuning.measure(models, batch, len(tried), f"refine-{round_}")
    runs = pd.DataFrame(rows)
    choice = choose(runs, b.target_retain_drop, b.tolerance, b.prefer)
    return json_safe(
        {
            "target_retain_drop": b.target_retain_drop,
            "tolerance": b.tolerance,
            "bench": to_dict(b),
            "unlearn": to_dict(cfg.unlearn),
            "method_overrides": s.method_overrides,
            "evaluate": to_dict(ecfg),
            "models": sorted(sets_record),
            "sets": sets_record,
            "runs": runs.to_dict(orient="records"),
            "chosen": {
                r["method"]: {
                    "point": r["point"],
                    "settings": chosen_overrides(pd.DataFrame([r]))[r["method"]],
                    "retain_drop": r["retain_drop"],
                    "utility_drop": r["utility_drop"],
                    "matched": bool(r["matched"]),
                }
                for r in choice.to_dict(orient="records")
            },
        }
    )


def json_safe(obj: Any) -> Any:
    """`obj` with NaN as null and numpy scalars as Python's (tuning.json is strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    obj = _plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def tuning_eval(ecfg: Any) -> Any:
    """What a tuning run evaluates: the generation verdict (and the probabilities it comes with) on
    the trained question; the costs need nothing else."""
    metrics = [m for m in ecfg.metrics if m in ("prob", "gen")] or ["gen"]
    return dataclasses.replace(ecfg, metrics=metrics, probes=["question"], utility_tasks=[])


def runs_table(record: dict[str, Any]) -> pd.DataFrame:
    """tuning.csv: every tuning run, with the chosen point of each method marked."""
    runs = pd.DataFrame(record["runs"])
    if runs.empty:
        return runs
    chosen = {m: c["point"] for m, c in record["chosen"].items()}
    runs["chosen"] = [chosen.get(m) == p for m, p in zip(runs["method"], runs["point"])]
    return runs


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON and YAML write those)."""
    return value.item() if hasattr(value, "item") else value


def _id(item: QAItem) -> str:
    return item.item_id
