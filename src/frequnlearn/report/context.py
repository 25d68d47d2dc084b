"""What every section of the report is computed from: the loaded run, what it compares in reading
order (`Layout`), the tables of the analysis and the headlines.

Reading order everywhere: model sizes by parameters (sizes without a count after, as configured),
methods, levels, selections and probes as the study lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from frequnlearn.report.headline import Headline
from frequnlearn.report.rundata import RunData
from frequnlearn.report.runs import UnlearnRun

ATTACK_ORDER = ["targeted", "benign", "bio", "int8", "int4", "nf4"]


def _ordered(values: Any, preferred: list[str]) -> list[str]:
    present = [str(v) for v in pd.unique(values)]
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def high_and_low(levels: list[str]) -> tuple[str, str]:
    """The two levels compared: the largest and smallest exposure of a numeric grid, else the first and
    last configured level (forget_high, forget_low)."""
    try:
        numeric = sorted(levels, key=float)
    except ValueError:
        return levels[0], levels[-1]
    return numeric[-1], numeric[0]


def parameter_counts(runs: list[UnlearnRun], sizes: list[str]) -> dict[str, float]:
    """Parameters per model size, as the unlearning runs' records state them; a run recorded without
    a count takes its size's preset, and sizes with neither (a given model in the real setting) are
    left out (they cannot enter the size trend)."""
    from frequnlearn.models.presets import PRESETS

    out: dict[str, float] = {}
    for run in runs:
        size, n = str(run.identity.get("size")), run.identity.get("n_params")
        if size in sizes and n:
            out.setdefault(size, float(n))
    for size in sizes:
        if size not in out and size in PRESETS:
            out[size] = float(PRESETS[size].n_params())
    return {size: out[size] for size in sizes if size in out}


def by_parameters(sizes: list[str], params: dict[str, float]) -> list[str]:
    """Sizes in order of parameters; sizes without a count keep their order, after the others."""
    counted = sorted((s for s in sizes if s in params), key=lambda s: (params[s], sizes.index(s)))
    return counted + [s for s in sizes if s not in params]


@dataclass
class Layout:
    """What the report compares: levels, sizes (by parameters), methods, selections and probes in
    reading order, the two levels of the frequency effect, and parameters per size."""

    levels: list[str]
    sizes: list[str]
    methods: list[str]
    selections: list[str]
    probes: list[str]
    high: str
    low: str
    params: dict[str, float]

    @classmethod
    def of(cls, v: pd.DataFrame, study: dict[str, Any], runs: list[UnlearnRun]) -> Layout:
        scfg = study["config"].get("study", {})
        levels = _ordered(v["level"], [str(x) for x in scfg.get("levels", [])])
        sizes = _ordered(v["size"], list(scfg.get("model_sizes", [])))
        params = parameter_counts(runs, sizes)
        return cls(
            levels=levels,
            sizes=by_parameters(sizes, params),
            methods=_ordered(v["method"], list(scfg.get("methods", []))),
            selections=_ordered(v["selection"], ["known", "all"]),
            probes=_ordered(v["probe"], ["question", "paraphrase", "bio"]),
            high=high_and_low(levels)[0],
            low=high_and_low(levels)[1],
            params={s: params[s] for s in by_parameters(sizes, params) if s in params},
        )

    def order(self, column: str) -> list[str] | None:
        """The reading order of a column's values (None: a column without one)."""
        return {
            "size": self.sizes,
            "method": self.methods,
            "level": [*self.levels, "both"],
            "selection": self.selections,
            "probe": self.probes,
            "attack": ATTACK_ORDER,
        }.get(column)

    def sorted(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows in reading order: by size, method, selection, level, probe and attack where present
        (values outside the order after the others, as they came); other columns keep their order."""
        if df.empty:
            return df
        keys = [c for c in ("size", "method", "selection", "level", "probe", "attack") if c in df.columns]
        if not keys:
            return df

        def rank(col: pd.Series) -> pd.Series:
            order = {v: i for i, v in enumerate(self.order(str(col.name)) or [])}
            return col.astype(str).map(lambda x: order.get(x, math.inf))

        return df.sort_values(keys, key=rank, kind="stable").reset_index(drop=True)


@dataclass
class Context:
    """Everything the sections are built from."""

    data: RunData
    lay: Layout
    tables: dict[str, pd.DataFrame]
    findings: list[str]  # the analysis's sentences
    headlines: list[Headline]
    notes: list[str]
    info: dict[str, Any]
    probe: str  # the probe the robustness numbers are read on
