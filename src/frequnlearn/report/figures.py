"""Every figure of the report, declared once: its file, the section it belongs to, its caption and the
function that draws it from the `Context` (None when there is no data: the page then shows the spec's
`missing` line instead of empty axes).

Captions use the glossary's terms without defining them again. The two lead slots (`LEAD`) take the
first figure of their list that has data; the others follow under "More figures".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from frequnlearn.report import plots
from frequnlearn.report.context import ATTACK_ORDER, Context
from frequnlearn.report.estimands import READ_LEVELS

RELEARN = ["targeted", "benign", "bio"]
QUANT = [a for a in ATTACK_ORDER if a not in RELEARN]


@dataclass(frozen=True)
class FigureSpec:
    name: str  # the PNG's file name in the report directory
    section: str  # "lead", "relearning", "quantization" or "more"
    caption: str  # formatted with the context's words and what `draw` returns
    draw: Callable[[Context], tuple[Any, dict[str, Any]]]  # (figure or None, caption fields)
    missing: str  # the line shown when `draw` has nothing to draw


@dataclass
class BuiltFigure:
    spec: FigureSpec
    caption: str
    missing: str  # the line shown instead when there is no data
    rendered: plots.Rendered | None  # None: no data
    lead: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


def words(ctx: Context) -> dict[str, Any]:
    """The names captions are formatted with."""
    n = len(ctx.lay.sizes)
    return {
        "high": ctx.lay.high,
        "low": ctx.lay.low,
        "matched": READ_LEVELS[0],
        "probe": ctx.probe,
        "sizes": f"{n} model size{'s' if n != 1 else ''}",
    }


def _dose(ctx: Context) -> tuple[Any, dict[str, Any]]:
    t = ctx.tables
    return plots.dose_response(t["dose_points"], t["dose_response"], ctx.lay.sizes, ctx.lay.methods), {}


def _trend(ctx: Context) -> tuple[Any, dict[str, Any]]:
    t = ctx.tables
    return plots.size_trend(t["misalignment"], t["size_trend"], ctx.lay.params, ctx.lay.methods), {}


def _effect(ctx: Context) -> tuple[Any, dict[str, Any]]:
    lay = ctx.lay
    return plots.frequency_effect(
        ctx.tables["frequency_effect"], lay.high, lay.low, lay.sizes, lay.methods
    ), {}


def _mis(ctx: Context) -> tuple[Any, dict[str, Any]]:
    lay = ctx.lay
    return plots.misalignment(ctx.tables["misalignment"], lay.levels, lay.sizes, lay.methods), {}


def _attack_summary(ctx: Context, kinds: list[str]) -> pd.DataFrame:
    a = ctx.tables.get("attacks", pd.DataFrame())
    return a[a["attack"].isin(kinds)] if len(a) else a


def _relearn(ctx: Context) -> tuple[Any, dict[str, Any]]:
    lay = ctx.lay
    fig = plots.relearning(_attack_summary(ctx, RELEARN), lay.levels, lay.sizes, lay.methods, RELEARN)
    return fig, {"probe": ctx.probe}


def _quant(ctx: Context) -> tuple[Any, dict[str, Any]]:
    lay = ctx.lay
    fig = plots.quantization(_attack_summary(ctx, QUANT), lay.levels, lay.sizes, lay.methods, QUANT)
    return fig, {"probe": ctx.probe}


def _scatter(ctx: Context) -> tuple[Any, dict[str, Any]]:
    points = scatter_points(ctx.data.trajectories)
    return plots.scatter(points, ctx.lay.levels), {"n": points["item_id"].nunique() if len(points) else 0}


def _trajectories(selection: str, probe: str) -> Callable[[Context], tuple[Any, dict[str, Any]]]:
    def draw(ctx: Context) -> tuple[Any, dict[str, Any]]:
        lay = ctx.lay
        fig, n = plots.trajectories(
            ctx.tables["curves"], lay.levels, lay.sizes, lay.methods, selection, probe
        )
        return fig, {"n": n}

    return draw


def scatter_points(traj: pd.DataFrame) -> pd.DataFrame:
    """Forget items' p_norm and ROUGE-L recall on the question probe at the first and last step."""
    f = traj[(traj["role"] == "forget") & (traj["probe"] == "question")]
    if f.empty:
        return pd.DataFrame(columns=["run_id", "item_id", "level", "when", "p_norm", "rougeL_recall"])
    keys = ["run_id", "item_id", "level", "step"]
    prob = f[f["family"] == "prob"][keys + ["p_norm"]]
    gen = f[f["family"] == "gen"][keys + ["rougeL_recall"]]
    both = prob.merge(gen, on=keys)
    first = both.groupby("run_id")["step"].transform("min")
    last = both.groupby("run_id")["step"].transform("max")
    both = both[(both["step"] == first) | (both["step"] == last)].copy()
    both["when"] = ["before" if s == a else "after" for s, a in zip(both["step"], first[both.index])]
    return both


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "dose_response.png",
        "lead",
        "Finding 1 as a dose-response: each level's net drop against its pre-training frequency (log axis), "
        "one colour per method, one marker per model size, 95% CIs and the least-squares line; the legend "
        "gives each slope per e-fold of frequency with its 95% CI. A falling line: frequent facts are "
        "harder to unlearn.",
        _dose,
        "No dose-response: it needs a known cell with two or more levels at distinct frequencies.",
    ),
    FigureSpec(
        "size_trend.png",
        "lead",
        "Finding 2 as a curve: the share of forgotten items still ranked first, read at forgetting level "
        "{matched} (frequency levels averaged), against parameters (log axis), one colour per method, 95% "
        "CIs and the least-squares line; the legend gives each slope per e-fold of parameters with its 95% "
        "CI. A rising line: misalignment grows with size.",
        _trend,
        "No size trend: it needs two or more model sizes whose target items reached forgetting level "
        "{matched}; this run has {sizes}.",
    ),
    FigureSpec(
        "frequency_effect.png",
        "more",
        "Frequency effect ({high} minus {low}) per model size, one colour per method: all known items "
        "(circles) and items matched on baseline margin (squares), 95% CIs; hollow: descriptive. Below "
        "zero: frequent facts are harder to unlearn.",
        _effect,
        "No frequency effect: no cell has both levels with known items.",
    ),
    FigureSpec(
        "misalignment.png",
        "more",
        "Misalignment at forgetting level {matched} per model size (the raw share), in its three views; "
        "one colour per method, one marker per level (diamond: levels averaged), 95% CIs; numbers: target "
        "items no longer generated.",
        _mis,
        "No misalignment: no known target items reached forgetting level {matched}.",
    ),
    FigureSpec(
        "relearning.png",
        "relearning",
        "Forget items known after each number of relearning steps (0: right after unlearning), per attack "
        "and model size; one colour per method, one line style per level; grey: the never-learned model. "
        "Probe: {probe}.",
        _relearn,
        "No relearning results: the attack stage wrote no relearning scores.",
    ),
    FigureSpec(
        "quantization.png",
        "quantization",
        "Forget items known with the weights quantized (filled) and right after unlearning (hollow), per "
        "scheme and model size; one colour per method, one marker per level. Probe: {probe}.",
        _quant,
        "No quantization results: the attack stage wrote no quantized scores.",
    ),
)

# The two figures of the first screen, one per finding: the first of each list that has data (each is
# drawn `plots.LEAD_WIDTH` wide); a slot with none shows the first one's `missing` line.
LEAD = (("dose_response.png", "frequency_effect.png"), ("size_trend.png",))


def more_specs(ctx: Context) -> tuple[FigureSpec, ...]:
    """The trajectory figures (one per selection and probe) and the item scatter."""
    specs = tuple(
        FigureSpec(
            f"trajectories_{sel}_{probe}.png",
            "more",
            f"Normalised accuracy over unlearning steps ({sel} selection, {probe} probe): target (solid), "
            "control (dotted) and retain (dashed) items known at the start, one colour per level, seeds "
            "pooled, 95% Wilson bands; {n} item trajectories in all.",
            _trajectories(sel, probe),
            f"No trajectories for the {sel} selection on the {probe} probe.",
        )
        for sel in ctx.lay.selections
        for probe in ctx.lay.probes
    )
    return specs + (
        FigureSpec(
            "scatter.png",
            "more",
            "Probability against generation score per target item, before and after unlearning ({n} "
            "items, question probe).",
            _scatter,
            "No item scatter: no target items on the question probe.",
        ),
    )


def build_figures(ctx: Context, sections: set[str]) -> list[BuiltFigure]:
    """Draw every declared figure whose section the report has; the lead slots marked `lead`."""
    built = []
    for spec in FIGURES + more_specs(ctx):
        if spec.section in ("relearning", "quantization") and spec.section not in sections:
            continue
        fig, extra = spec.draw(ctx)
        fields = {**words(ctx), **extra}
        rendered = plots.render(fig) if fig is not None else None
        built.append(
            BuiltFigure(spec, spec.caption.format(**fields), spec.missing.format(**fields), rendered)
        )
    by_name = {b.name: b for b in built}
    for slot in LEAD:
        drawn = [by_name[n] for n in slot if n in by_name and by_name[n].rendered is not None]
        (drawn[0] if drawn else by_name[slot[0]]).lead = True
    return built
