"""Figures for the report (matplotlib, Agg backend): readable on screen and in print.

Every function takes the model sizes and methods in reading order (sizes by parameters) and returns
None when there is nothing to draw, so the page can say so in a line instead of showing empty axes.
Methods keep one colour each across all figures (`method_color`); levels are told apart by colour in
the per-run figures and by marker or line style where methods are coloured. The two lead figures are
`LEAD_WIDTH` inches wide: at `DPI` they are shown at their natural size in a half-width column of a
1280-pixel window, so their smallest text stays above 10 pixels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from frequnlearn.report.estimands import VIEWS  # noqa: E402
from frequnlearn.report.prose import short_ci  # noqa: E402
from frequnlearn.report.stats import wilson  # noqa: E402

DPI = 110
LEAD_WIDTH = 5.5  # inches: 605 px at DPI
FONT = 9  # points: 13.75 px at DPI, the smallest text of a lead figure
LEVEL_COLORS = ["#c0392b", "#2471a3", "#239b56", "#b9770e", "#7d3c98", "#17a589", "#566573"]
METHOD_COLORS = ["#1f77b4", "#e67e22", "#8e44ad", "#16a085", "#c0392b", "#7f8c8d"]
SIZE_MARKERS = "os^Dvp"
SIZE_LINES = ["-", "--", ":", "-."]
LEVEL_MARKERS = "os^vp"


def level_color(levels: Sequence[str], level: str) -> str:
    return LEVEL_COLORS[list(levels).index(level) % len(LEVEL_COLORS)] if level in levels else "#333333"


def method_color(methods: Sequence[str], method: str) -> str:
    return METHOD_COLORS[list(methods).index(method) % len(METHOD_COLORS)] if method in methods else "#333333"


@dataclass
class Rendered:
    """A figure as PNG bytes, with its natural width and its smallest text, both in pixels."""

    png: bytes
    width_px: int
    min_font_px: float


def render(fig: plt.Figure) -> Rendered:
    """The figure as a PNG at `DPI`, and the size of its smallest visible text (the page checks that
    it stays readable at the width the figure is shown)."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    width = int.from_bytes(data[16:20], "big")  # the PNG header's IHDR width
    return Rendered(data, width, min(sizes, default=FONT) * DPI / 72)


def _yerr(y: object, lo: object, hi: object) -> np.ndarray:
    """Error bar lengths below and above `y` for an interval [lo, hi]: NaN bounds draw no bar, and a
    point outside its own interval (possible for percentile intervals) draws none on that side."""
    y, lo, hi = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (y, lo, hi))
    err = np.vstack([y - np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi) - y])
    return np.clip(err, 0, None)


def _legend_room(fig: plt.Figure, rows: int) -> float:
    """The share of the figure's height a legend of `rows` rows at the bottom needs."""
    return min(0.5, (0.15 + 0.22 * rows) / fig.get_figheight())


def _legend_below(fig: plt.Figure, ax: plt.Axes, ncol: int = 2) -> None:
    """One legend under the axes, one entry per label (the first handle of each)."""
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(
            uniq.values(),
            uniq.keys(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.18),
            ncol=min(ncol, len(uniq)),
            fontsize=FONT,
            frameon=False,
            columnspacing=1.0,
            handletextpad=0.4,
            handlelength=1.6,
        )


def _known_cells(df: pd.DataFrame, probe: str) -> pd.DataFrame:
    """Rows of `probe`, `known` selection when there is one (the cells that carry verdicts)."""
    d = df[df["probe"] == probe] if len(df) else df
    if len(d) and (d["selection"] == "known").any():
        d = d[d["selection"] == "known"]
    return d


def trajectories(
    c: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    methods: Sequence[str],
    selection: str,
    probe: str,
) -> tuple[plt.Figure | None, int]:
    """Normalised generation accuracy over unlearning steps: target (solid), control (dotted) and
    retain (dashed), one panel per method x model size, one colour per level; items of all seeds pooled,
    95% Wilson bands. Returns the figure (None without rows) and the number of item trajectories."""
    sub = c[(c["selection"] == selection) & (c["probe"].isin([probe, "question"]))]
    if sub.empty:
        return None, 0
    fig, axes = plt.subplots(
        len(methods), len(sizes), figsize=(3.6 * len(sizes), 2.8 * len(methods)), squeeze=False, sharey=True
    )
    n_items = 0
    styles = [
        ("forget", probe, "-", "target"),
        ("control", probe, ":", "control"),
        ("retain", "question", "--", "retain"),
    ]
    for i, method in enumerate(methods):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            for level in levels:
                run = sub[(sub["method"] == method) & (sub["size"] == size) & (sub["level"] == level)]
                color = level_color(levels, level)
                for role, role_probe, ls, label in styles:
                    r = run[(run["role"] == role) & (run["probe"] == role_probe)]
                    if r.empty:
                        continue
                    g = r.groupby("step")[["k_norm", "n_known0"]].sum()
                    acc = g["k_norm"] / g["n_known0"].where(g["n_known0"] > 0)
                    band = [wilson(k, n) for k, n in zip(g["k_norm"], g["n_known0"])]
                    n_items += int(g["n_known0"].iloc[0])
                    ax.plot(
                        g.index,
                        acc,
                        ls,
                        marker="o" if role == "forget" else None,
                        ms=3,
                        color=color,
                        label=f"{label}: {level}",
                    )
                    ax.fill_between(
                        g.index,
                        [b[0] for b in band],
                        [b[1] for b in band],
                        color=color,
                        alpha=0.15 if role == "forget" else 0.07,
                        lw=0,
                    )
            ax.set_title(f"{method} | {size}", fontsize=FONT)
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=FONT)
            if i == len(methods) - 1:
                ax.set_xlabel("unlearning step", fontsize=FONT)
            if j == 0:
                ax.set_ylabel("accuracy / accuracy at start", fontsize=FONT)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(3, len(labels)),
            fontsize=FONT,
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
        )
    fig.suptitle(f"Normalised generation accuracy ({selection} selection, {probe} probe, {n_items} items)")
    fig.tight_layout(rect=(0, _legend_room(fig, math.ceil(len(labels) / 3)), 1, 1))
    return fig, n_items


def scatter(points: pd.DataFrame, levels: Sequence[str]) -> plt.Figure | None:
    """Per forget item: probability score (x) against generation score (y), before and after."""
    if points.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, when in zip(axes, ["before", "after"]):
        sub = points[points["when"] == when]
        for level in levels:
            p = sub[sub["level"] == level]
            ax.scatter(
                p["p_norm"],
                p["rougeL_recall"],
                s=14,
                alpha=0.6,
                color=level_color(levels, level),
                label=level,
            )
        ax.axhline(0.5, color="#888", lw=0.8, ls=":")
        ax.set_title(f"{when} unlearning", fontsize=FONT + 1)
        ax.set_xlabel("length-normalised answer probability", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROUGE-L recall of the greedy answer", fontsize=FONT)
    axes[0].legend(fontsize=FONT)
    fig.tight_layout()
    return fig


def frequency_effect(
    effect: pd.DataFrame,
    high: str,
    low: str,
    sizes: Sequence[str],
    methods: Sequence[str],
    probe: str = "question",
) -> plt.Figure | None:
    """Net drop of `high` minus `low` per model size (in size order), one colour per method; all known
    items (circles) and margin-matched items (squares), 95% intervals as bars; cells without a verdict
    (no control arm, `all` selection) drawn hollow."""
    known = _known_cells(effect, probe)
    if known.empty:
        return None
    shown = [s for s in sizes if (known["size"] == s).any()]
    meths = [m for m in methods if (known["method"] == m).any()]
    fig, ax = plt.subplots(figsize=(LEAD_WIDTH, 3.6 + 0.22 * math.ceil(len(meths))))
    slots = len(meths) * 2
    width = 0.8 / max(1, slots)
    for i, size in enumerate(shown):
        for mj, method in enumerate(meths):
            color = method_color(methods, method)
            for k, matched in enumerate((False, True)):
                r = known[
                    (known["size"] == size) & (known["method"] == method) & (known["matched"] == matched)
                ]
                if r.empty or pd.isna(r["effect"].iloc[0]):
                    continue
                r = r.iloc[0]
                x = i - 0.4 + width * (mj * 2 + k + 0.5)
                ax.errorbar(
                    [x],
                    [r["effect"]],
                    yerr=_yerr(r["effect"], r["effect_lo"], r["effect_hi"]),
                    fmt="s" if matched else "o",
                    color=color,
                    mfc=color if r["verdict"] != "descriptive" else "white",
                    alpha=0.6 if matched else 1.0,
                    capsize=3,
                    ms=5,
                    label=f"{method}, " + ("margin-matched" if matched else "all known"),
                )
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(shown, fontsize=FONT)
    ax.set_xlabel("model size (by parameters)", fontsize=FONT)
    ax.set_ylabel(f"net drop {high} - {low}", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, ax)
    ax.set_title(
        f"Frequency effect ({probe} probe; below 0: frequent facts harder to unlearn)", fontsize=FONT + 1
    )
    fig.tight_layout()
    return fig


def misalignment(
    mis: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    methods: Sequence[str],
    probe: str = "question",
    forgetting: float = 0.5,
) -> plt.Figure | None:
    """P(still preferred | no longer generated), the raw share at a level of forgetting, by model size,
    one panel per view, one colour per method, one marker per level (diamond: levels averaged); 95%
    intervals as bars and the number of target items no longer generated above each."""
    m = _known_cells(mis, probe)
    m = m[(m["forgetting"] == forgetting) & m["share"].notna()] if len(m) else m
    if m.empty:
        return None
    views = [v for v in VIEWS if (m["view"] == v).any()]
    meths = [x for x in methods if (m["method"] == x).any()]
    groups = [lv for lv in [*levels, "both"] if (m["level"] == lv).any()]
    fig, axes = plt.subplots(1, len(views), figsize=(3.8 * len(views), 3.9), squeeze=False, sharey=True)
    slots = len(groups) * len(meths)
    width = 0.8 / max(1, slots)
    for ax, view in zip(axes[0], views):
        for gi, level in enumerate(groups):
            marker = "D" if level == "both" else LEVEL_MARKERS[gi % len(LEVEL_MARKERS)]
            for mj, method in enumerate(meths):
                sub = m[(m["view"] == view) & (m["level"] == level) & (m["method"] == method)]
                off = (gi * len(meths) + mj) * width - 0.4 + width / 2
                for i, size in enumerate(sizes):
                    r = sub[sub["size"] == size]
                    if r.empty:
                        continue
                    r = r.iloc[0]
                    hi = r["share_hi"]
                    ax.errorbar(
                        [i + off],
                        [r["share"]],
                        yerr=_yerr(r["share"], r["share_lo"], hi),
                        fmt=marker,
                        color=method_color(methods, method),
                        capsize=3,
                        ms=5,
                        label=("levels pooled" if level == "both" else level) + f", {method}",
                    )
                    top = hi if not pd.isna(hi) else r["share"]
                    ax.annotate(
                        str(int(r["n_forgotten"])),
                        (i + off, top),
                        textcoords="offset points",
                        xytext=(0, 3),
                        ha="center",
                        fontsize=FONT - 1,
                    )
        ax.axhline(0, color="#555", lw=0.8)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(sizes, fontsize=FONT)
        ax.set_xlabel("model size (by parameters)", fontsize=FONT)
        ax.set_title(VIEWS[view], fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share still preferred", fontsize=FONT)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(
        uniq.values(),
        uniq.keys(),
        loc="lower center",
        ncol=min(4, len(uniq)),
        fontsize=FONT,
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
    )
    fig.suptitle(
        f"Misalignment at forgetting level {forgetting:g} ({probe} probe; numbers: items no longer generated)"
    )
    fig.tight_layout(rect=(0, _legend_room(fig, math.ceil(len(uniq) / 4)), 1, 1))
    return fig


def _fit_line(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, slope: float, **style) -> None:
    """The least-squares line of a reported slope through the points' centroid, on a log x axis."""
    lx = np.log(xs)
    grid = np.linspace(lx.min(), lx.max(), 20)
    ax.plot(np.exp(grid), ys.mean() + slope * (grid - lx.mean()), lw=1.2, alpha=0.8, **style)


def _slope_row(slopes: pd.DataFrame, **match: str) -> pd.Series | None:
    if slopes.empty:
        return None
    s = slopes
    for col, value in match.items():
        s = s[s[col] == value]
    return s.iloc[0] if len(s) else None


def dose_response(
    points: pd.DataFrame,
    slopes: pd.DataFrame,
    sizes: Sequence[str],
    methods: Sequence[str],
    probe: str = "question",
) -> plt.Figure | None:
    """Finding 1 as a curve, one panel: net drop (target minus control) per level against its
    frequency (log axis), one colour per method, one marker and line style per model size, with 95%
    intervals and the fitted slope per e-fold of frequency in the legend."""
    p = _known_cells(points, probe)
    if p.empty:
        return None
    shown = [(s, m) for s in sizes for m in methods if ((p["size"] == s) & (p["method"] == m)).any()]
    fig, ax = plt.subplots(figsize=(LEAD_WIDTH, 3.2 + 0.22 * math.ceil(len(shown) / 2)))
    for n, (size, method) in enumerate(shown):
        r = p[(p["method"] == method) & (p["size"] == size)].sort_values("exposure")
        color = method_color(methods, method)
        si = list(sizes).index(size)
        s = _slope_row(slopes, size=size, method=method, probe=probe, selection=r["selection"].iloc[0])
        label = f"{size}, {method}"
        if s is not None:
            label += f": {short_ci(s['slope'], s['slope_lo'], s['slope_hi'])}"
            _fit_line(
                ax,
                r["exposure"].to_numpy(float),
                r["net_drop"].to_numpy(float),
                s["slope"],
                color=color,
                ls=SIZE_LINES[si % len(SIZE_LINES)],
            )
        ax.errorbar(
            r["exposure"] * (1 + 0.08 * (n - (len(shown) - 1) / 2)),
            r["net_drop"],
            yerr=_yerr(r["net_drop"], r["net_drop_lo"], r["net_drop_hi"]),
            fmt=SIZE_MARKERS[si % len(SIZE_MARKERS)],
            color=color,
            capsize=3,
            ms=5,
            label=label,
        )
    ax.set_xscale("log")
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_xlabel("pre-training frequency (log)", fontsize=FONT)
    ax.set_ylabel("net drop (target - control)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    ax.set_title(f"Finding 1: dose-response ({probe} probe); legend: slope [95% CI]", fontsize=FONT + 1)
    fig.tight_layout()
    return fig


def size_trend(
    mis: pd.DataFrame,
    trend: pd.DataFrame,
    params: dict[str, float],
    methods: Sequence[str],
    view: str = "rank1",
    probe: str = "question",
    forgetting: float = 0.5,
) -> plt.Figure | None:
    """Finding 2 as a curve, one panel: the raw misaligned share at a level of forgetting (levels
    averaged where every level has one) against parameters (log axis), one colour per method, with 95%
    intervals and the fitted slope per e-fold of parameters in the legend."""
    m = _known_cells(mis, probe)
    m = m[(m["view"] == view) & (m["forgetting"] == forgetting)] if len(m) else m
    pooled = "both" if len(m) and (m["level"] == "both").any() else None
    if len(m):
        m = m[m["level"] == pooled] if pooled else m[m["level"] == m["level"].iloc[0]]
        m = m[m["size"].isin(list(params)) & m["share"].notna()]
    if m.empty or m["size"].nunique() < 2:
        return None
    where = "levels pooled" if pooled else f"level {m['level'].iloc[0]}"
    meths = [x for x in methods if (m["method"] == x).any()]
    fig, ax = plt.subplots(figsize=(LEAD_WIDTH, 3.2 + 0.22 * math.ceil(len(meths) / 2)))
    for j, method in enumerate(meths):
        color = method_color(methods, method)
        r = m[m["method"] == method].assign(params=lambda d: d["size"].map(params)).sort_values("params")
        t = _slope_row(
            trend,
            method=method,
            view=view,
            probe=probe,
            level=r["level"].iloc[0],
            selection=r["selection"].iloc[0],
            forgetting=forgetting,
            measure="share",
        )
        label = method
        if t is not None:
            label += f": {short_ci(t['slope'], t['slope_lo'], t['slope_hi'])}"
            _fit_line(ax, r["params"].to_numpy(float), r["share"].to_numpy(float), t["slope"], color=color)
        shift = 1 + 0.04 * (j - (len(meths) - 1) / 2)
        hi = r["share_hi"]
        ax.errorbar(
            r["params"] * shift,
            r["share"],
            yerr=_yerr(r["share"], r["share_lo"], hi),
            fmt="o",
            color=color,
            capsize=3,
            ms=5,
            label=label,
        )
        if j == 0:
            for x, y, size in zip(r["params"], hi.fillna(r["share"]), r["size"]):
                ax.annotate(
                    size, (x, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=FONT
                )
    ax.set_xscale("log")
    ax.axhline(0, color="#555", lw=0.8)
    ax.margins(y=0.15)  # room for the size labels above the points
    ax.set_xlabel("parameters (log)", fontsize=FONT)
    ax.set_ylabel(f"misaligned share\n({VIEWS.get(view, view)})", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    ax.set_title(f"Finding 2: misalignment against size ({probe} probe, {where})", fontsize=FONT + 1)
    fig.tight_layout()
    return fig


def relearning(
    summary: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    methods: Sequence[str],
    order: Sequence[str],
) -> plt.Figure | None:
    """Forget items known after each relearning step count (0: right after unlearning), one panel per
    attack and model size, one colour per method, one line style per level; the never-learned model's
    share as a grey line of the level's style."""
    if summary.empty:
        return None
    attacks = [a for a in order if (summary["attack"] == a).any()]
    shown = [s for s in sizes if (summary["size"] == s).any()]
    fig, axes = plt.subplots(
        len(shown),
        len(attacks),
        figsize=(3.2 * len(attacks), 2.8 * len(shown) + 0.6),
        squeeze=False,
        sharey=True,
    )
    for i, size in enumerate(shown):
        for j, attack in enumerate(attacks):
            ax = axes[i][j]
            sub = summary[(summary["size"] == size) & (summary["attack"] == attack)]
            for li, level in enumerate(levels):
                ls = SIZE_LINES[li % len(SIZE_LINES)]
                floor = float("nan")
                for method in methods:
                    r = sub[(sub["level"] == level) & (sub["method"] == method)].sort_values("k")
                    if r.empty:
                        continue
                    xs = [0, *r["k"]]
                    ys = [float(r["known_unlearned"].iloc[0]), *r["known_attacked"]]
                    ax.plot(
                        xs,
                        ys,
                        ls,
                        marker="o",
                        ms=4,
                        color=method_color(methods, method),
                        label=f"{level}, {method}",
                    )
                    floor = float(r["known_oracle"].mean())
                if not math.isnan(floor):
                    ax.axhline(floor, color="#888", ls=ls, lw=1, label=f"{level}: never-learned")
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{attack} | {size}", fontsize=FONT + 1)
            ax.tick_params(labelsize=FONT)
            ax.grid(alpha=0.3)
            if i == len(shown) - 1:
                ax.set_xlabel("relearning steps", fontsize=FONT)
            if j == 0:
                ax.set_ylabel("forget items known", fontsize=FONT)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(
        uniq.values(), uniq.keys(), loc="lower center", ncol=min(3, len(uniq)), fontsize=FONT, frameon=False
    )
    fig.tight_layout(rect=(0, _legend_room(fig, math.ceil(len(uniq) / 3)), 1, 1))
    return fig


def quantization(
    summary: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    methods: Sequence[str],
    order: Sequence[str],
) -> plt.Figure | None:
    """Forget items known with the weights quantized (filled) and right after unlearning (hollow), per
    scheme, one panel per model size, one colour per method, one marker per level."""
    if summary.empty:
        return None
    schemes = [a for a in order if (summary["attack"] == a).any()]
    shown = [s for s in sizes if (summary["size"] == s).any()]
    fig, axes = plt.subplots(
        1, len(shown), figsize=(max(LEAD_WIDTH, 3.4 * len(shown)), 3.6), squeeze=False, sharey=True
    )
    slots = len(levels) * len(methods)
    width = 0.8 / max(1, slots)
    for ax, size in zip(axes[0], shown):
        sub = summary[summary["size"] == size]
        for li, level in enumerate(levels):
            for mj, method in enumerate(methods):
                r = sub[(sub["level"] == level) & (sub["method"] == method)]
                if r.empty:
                    continue
                color = method_color(methods, method)
                marker = LEVEL_MARKERS[li % len(LEVEL_MARKERS)]
                xs = [schemes.index(a) - 0.4 + width * (li * len(methods) + mj + 0.5) for a in r["attack"]]
                ax.plot(
                    xs, r["known_attacked"], marker, color=color, ms=6, ls="none", label=f"{level}, {method}"
                )
                ax.plot(xs, r["known_unlearned"], marker, mfc="white", color=color, ms=6, ls="none")
        ax.set_xticks(range(len(schemes)))
        ax.set_xticklabels(schemes, fontsize=FONT)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(size, fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("forget items known", fontsize=FONT)
    _legend_below(fig, axes[0][0])
    fig.tight_layout()
    return fig
