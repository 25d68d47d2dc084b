"""The benchmark's config: a study config (every section as `frequnlearn study` reads it) plus `bench:`,
which says how each method's learning rate (and its one main setting) is tuned on retain and utility
items alone before the study runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from frequnlearn.config.base import check, load_config
from frequnlearn.config.study import StudyConfig


@dataclass
class BenchOptions:
    """How every method is brought to the same retain cost, never looking at a forget set.

    Each method unlearns a tuning set (`tuning_size` known items of retain people, never evaluated as
    targets, never in a forget or control set) at every point of its grid; the point whose retain
    accuracy drop at the stopping point is closest to `target_retain_drop` is the method's setting in
    the study (ties: the smaller utility drop, then the first in the grid; `prefer: largest_rate` takes
    the largest rate within `tolerance` instead, `prefer: most_forgotten` the point within it that
    forgets the largest share of the tuning set). `refine_steps` bisects the
    learning rate between the grid's two rates around the target before the choice."""

    # Learning rates tried for every method.
    lr_grid: list[float] = field(default_factory=lambda: [1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
    # One main setting per method spec tried with every rate, e.g. {npo+gd: {beta: [0.1, 1.0]}}
    # (a method not listed keeps its unlearn: value).
    param_grid: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # The retain cost every method is brought to: normalised retain accuracy drop at the stopping point ...
    target_retain_drop: float = 0.05
    # ... and how far from it a chosen point may be and still count as matched.
    tolerance: float = 0.02
    # Known items of retain people each tuning run unlearns (drawn from the retain people the study
    # does not evaluate; the study's retain loss may use them, its evaluation never does).
    tuning_size: int = 20
    # Pretraining seeds whose models the grid is measured on (empty: the first of study.seeds); a
    # point's cost is the mean over them.
    tuning_seeds: list[int] = field(default_factory=list)
    # Bisection rounds after the grid: where a method's mean retain drop first crosses the target
    # between two neighbouring rates, the geometric midpoint is tried next, up to this many times per
    # method and tuned value (a half-decade grid often steps from no cost straight past the band).
    refine_steps: int = 0
    # Which point within the tolerance is the method's setting: `closest` to the target, the
    # `largest_rate` (for a config with a retain-drop stopping rule, unlearn.stop_retain_drop, which
    # ends every run near the cost: the largest matched rate reaches it well before max_steps), or
    # the one that forgets `most_forgotten` of the tuning set (each method at its most effective
    # setting for that cost; the tuning set is retain people's, never a forget item).
    prefer: Literal["closest", "largest_rate", "most_forgotten"] = "closest"

    def validate(self) -> None:
        check(len(self.lr_grid) >= 1, "lr_grid", "give at least one learning rate")
        check(all(lr > 0 for lr in self.lr_grid), "lr_grid", "learning rates must be > 0")
        check(len(set(self.lr_grid)) == len(self.lr_grid), "lr_grid", "learning rates must be distinct")
        check(0.0 < self.target_retain_drop < 1.0, "target_retain_drop", "must be within (0, 1), e.g. 0.05")
        check(0.0 <= self.tolerance < 1.0, "tolerance", "must be within [0, 1), e.g. 0.02")
        check(self.tuning_size >= 1, "tuning_size", "must be >= 1")
        check(0 <= self.refine_steps <= 10, "refine_steps", "must be within [0, 10], e.g. 3")
        check(
            self.prefer in ("closest", "largest_rate", "most_forgotten"),
            "prefer",
            "must be closest, largest_rate or most_forgotten",
        )
        fields = {f.name for f in dataclasses.fields(_unlearn_fields())}
        for spec, grid in self.param_grid.items():
            check(
                len(grid) == 1,
                f"param_grid.{spec}",
                "tune one main setting per method, e.g. {beta: [0.1, 1.0]}",
            )
            ((name, values),) = grid.items()
            check(
                name in fields and name not in ("lr", "method", "retain_loss", "seed", "prompt_format"),
                f"param_grid.{spec}",
                f"{name!r} is not an unlearn setting that can be tuned (e.g. beta, rmu_coeff)",
            )
            check(
                isinstance(values, list) and len(values) >= 1,
                f"param_grid.{spec}.{name}",
                "give a list of values",
            )


def _unlearn_fields() -> type:
    from frequnlearn.config.unlearn import UnlearnConfig

    return UnlearnConfig


@dataclass
class BenchConfig(StudyConfig):
    """A study config with the benchmark's tuning (`bench:`)."""

    bench: BenchOptions = field(default_factory=BenchOptions)

    def validate(self) -> None:
        super().validate()
        s, b = self.study, self.bench
        check(len(s.model_sizes) == 1, "study.model_sizes", "the benchmark ranks methods on one model size")
        check(
            len(s.levels) == 2,
            "study.levels",
            "the frequency gap compares two levels, e.g. [forget_high, forget_low]",
        )
        for spec in b.param_grid:
            check(spec in s.methods, f"bench.param_grid.{spec}", f"is not in study.methods {s.methods}")
            (name,) = b.param_grid[spec]
            check(
                name not in s.method_overrides.get(spec, {}),
                f"bench.param_grid.{spec}",
                f"{name} is tuned; remove it from study.method_overrides.{spec}",
            )
        for seed in b.tuning_seeds:
            check(seed in s.seeds, "bench.tuning_seeds", f"{seed} is not in study.seeds {s.seeds}")
        check(
            s.setting == "synthetic",
            "study.setting",
            "the benchmark tunes on retain people of a generated world; use setting: synthetic",
        )
        from frequnlearn.config.generate import group_sizes

        n_retain = group_sizes(self.generate.n_people, self.generate.group_fractions)["retain"]
        check(
            s.eval_retain_size + b.tuning_size < n_retain,
            "bench.tuning_size",
            f"{b.tuning_size} tuning items and {s.eval_retain_size} evaluated retain people leave no retain "
            f"person of the {n_retain} for the retain loss; lower it or raise generate.n_people",
        )

    @property
    def selection(self) -> str:
        """The selection the leaderboard ranks: known items (the benchmark's), else all."""
        return "known" if "known" in self.study.selections else "all"

    @property
    def seeds_tuned(self) -> list[int]:
        return list(self.bench.tuning_seeds) or [self.study.seeds[0]]

    def study_config(self, chosen: dict[str, dict[str, Any]] | None = None) -> StudyConfig:
        """The study the benchmark runs: every section as given, each method's tuned settings
        (`chosen`: spec -> {lr, param}) over its `study.method_overrides`."""
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(StudyConfig)}
        overrides = {spec: dict(v) for spec, v in self.study.method_overrides.items()}
        for spec, values in (chosen or {}).items():
            overrides[spec] = {**overrides.get(spec, {}), **values}
        parts["study"] = dataclasses.replace(self.study, method_overrides=overrides)
        return StudyConfig(**parts)


def load_bench_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    return load_config(BenchConfig, path, overrides)
