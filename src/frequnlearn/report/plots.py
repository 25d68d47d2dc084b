"""Figures for the report (matplotlib, Agg backend): readable on screen and in print."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from frequnlearn.report.prose import short_ci  # noqa: E402
from frequnlearn.report.stats import wilson  # noqa: E402

LEVEL_STYLES = ["#c0392b", "#2471a3", "#239b56", "#b9770e", "#7d3c98", "#17a589", "#566573"]


def _color(levels: Sequence[str], level: str) -> str:
    return LEVEL_STYLES[list(levels).index(level) % len(LEVEL_STYLES)] if level in levels else "#333333"


def save(fig: plt.Figure, path: Path) -> bytes:
    """Write a PNG and return its bytes (to embed in the HTML page)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def trajectories(
    c: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    methods: Sequence[str],
    selection: str,
    probe: str,
) -> tuple[plt.Figure, int]:
    """Normalised generation accuracy over unlearning steps: target (solid), control (dotted) and
    retain (dashed), one panel per method x model size, one colour per level; items of all seeds pooled,
    95% Wilson bands. Returns the figure and the number of item trajectories under it."""
    sub = c[(c["selection"] == selection) & (c["probe"].isin([probe, "question"]))]
    fig, axes = plt.subplots(
        len(methods), len(sizes), figsize=(4.2 * len(sizes), 3.0 * len(methods)), squeeze=False, sharey=True
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
                color = _color(levels, level)
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
            ax.set_title(f"{method} | {size}", fontsize=10)
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel("unlearning step")
            if j == 0:
                ax.set_ylabel("accuracy / accuracy at start")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(3, len(labels)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(labels) > 3)),
        )
    fig.suptitle(
        f"Normalised generation accuracy ({selection} selection, {probe} probe, {n_items} items)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig, n_items


def scatter(points: pd.DataFrame, levels: Sequence[str]) -> plt.Figure:
    """Per forget item: probability score (x) against generation score (y), before and after."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, when in zip(axes, ["before", "after"]):
        sub = points[points["when"] == when]
        for level in levels:
            p = sub[sub["level"] == level]
            ax.scatter(
                p["p_norm"], p["rougeL_recall"], s=14, alpha=0.6, color=_color(levels, level), label=level
            )
        ax.axhline(0.5, color="#888", lw=0.8, ls=":")
        ax.set_title(f"{when} unlearning", fontsize=10)
        ax.set_xlabel("length-normalised answer probability")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ROUGE-L recall of the greedy answer")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def frequency_effect(effect: pd.DataFrame, high: str, low: str, probe: str = "question") -> plt.Figure:
    """Net drop of `high` minus `low` per model size and method, all known items and margin-matched,
    95% intervals as bars; cells without a verdict (no control arm, `all` selection) drawn hollow."""
    e = effect[effect["probe"] == probe] if len(effect) else effect
    known = e[e["selection"] == "known"] if len(e) and (e["selection"] == "known").any() else e
    cells = (
        known[["size", "method", "selection"]].drop_duplicates().itertuples(index=False) if len(known) else []
    )
    cells = list(cells)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(cells) + 2), 3.6))
    for k, matched in enumerate((False, True)):
        rows = [
            known[
                (known["size"] == c.size)
                & (known["method"] == c.method)
                & (known["selection"] == c.selection)
                & (known["matched"] == matched)
            ]
            for c in cells
        ]
        xs = [x + (k - 0.5) * 0.3 for x in range(len(cells))]
        for x, r in zip(xs, rows):
            if r.empty:
                continue
            r = r.iloc[0]
            verdict = r["verdict"] != "descriptive"
            color = "#2471a3" if not matched else "#b9770e"
            ax.errorbar(
                [x],
                [r["effect"]],
                yerr=[[r["effect"] - r["effect_lo"]], [r["effect_hi"] - r["effect"]]],
                fmt="o",
                color=color,
                mfc=color if verdict else "white",
                capsize=4,
                label="margin-matched" if matched else "all known",
            )
            ax.annotate(
                f"n={int(r['n_high'])}+{int(r['n_low'])}",
                (x, r["effect_hi"]),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=7,
            )
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(
        [f"{c.size}\n{c.method}" + ("" if c.selection == "known" else f"\n({c.selection})") for c in cells],
        fontsize=8,
    )
    ax.set_ylabel(f"net drop {high} - {low}")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_title(
        f"Frequency effect, control-subtracted ({probe} probe; below 0: frequent facts harder to unlearn)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def misalignment(
    mis: pd.DataFrame,
    levels: Sequence[str],
    sizes: Sequence[str],
    probe: str = "question",
    forgetting: float = 0.5,
) -> plt.Figure:
    """P(still preferred | no longer generated) at a level of forgetting by model size, one panel per
    view, one colour per level (and both averaged, black), methods side by side; 95% intervals as bars."""
    from frequnlearn.report.estimands import VIEWS

    m = mis[(mis["probe"] == probe) & (mis["forgetting"] == forgetting)] if len(mis) else mis
    if len(m) and (m["selection"] == "known").any():
        m = m[m["selection"] == "known"]
    views = [v for v in VIEWS if len(m) and (m["view"] == v).any()] or list(VIEWS)
    methods = sorted(m["method"].unique()) if len(m) else []
    fig, axes = plt.subplots(1, len(views), figsize=(4.0 * len(views), 3.4), squeeze=False, sharey=True)
    groups = [*levels, "both"]
    width = 0.8 / max(1, len(groups) * max(1, len(methods)))
    for ax, view in zip(axes[0], views):
        for gi, level in enumerate(groups):
            for mj, method in enumerate(methods):
                sub = m[(m["view"] == view) & (m["level"] == level) & (m["method"] == method)]
                off = (gi * len(methods) + mj) * width - 0.4 + width / 2
                for i, size in enumerate(sizes):
                    r = sub[sub["size"] == size]
                    if r.empty or pd.isna(r["share"].iloc[0]):
                        continue
                    r = r.iloc[0]
                    color = "#222222" if level == "both" else _color(levels, level)
                    ax.errorbar(
                        [i + off],
                        [r["share"]],
                        yerr=[[r["share"] - r["share_lo"]], [r["share_hi"] - r["share"]]],
                        fmt="os^dv"[mj % 5],
                        color=color,
                        capsize=3,
                        ms=4,
                        label=f"{level}" + (f", {method}" if len(methods) > 1 else ""),
                    )
                    ax.annotate(
                        str(int(r["n_forgotten"])),
                        (i + off, r["share_hi"]),
                        textcoords="offset points",
                        xytext=(0, 3),
                        ha="center",
                        fontsize=6,
                    )
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(sizes)
        ax.set_xlabel("model size")
        ax.set_title(VIEWS[view], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share still preferred")
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        fig.legend(
            uniq.values(),
            uniq.keys(),
            loc="lower center",
            ncol=min(4, len(uniq)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02),
        )
    fig.suptitle(
        f"Misalignment at forgetting level {forgetting:g} ({probe} probe; numbers: items no longer generated)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _fit_line(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, slope: float, color: str) -> None:
    """The least-squares line of a reported slope through the points' centroid, on a log x axis."""
    lx = np.log(xs)
    grid = np.linspace(lx.min(), lx.max(), 20)
    ax.plot(np.exp(grid), ys.mean() + slope * (grid - lx.mean()), color=color, lw=1.2, alpha=0.8)


def dose_response(
    points: pd.DataFrame, slopes: pd.DataFrame, sizes: Sequence[str], probe: str = "question"
) -> plt.Figure:
    """Finding 1 as a curve: net drop (target minus control) per level against its frequency (log
    axis), one colour per model size, one panel per method, with 95% intervals and the fitted slope."""
    p = points[points["probe"] == probe] if len(points) else points
    if len(p) and (p["selection"] == "known").any():
        p = p[p["selection"] == "known"]
    methods = sorted(p["method"].unique()) if len(p) else [""]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for i, size in enumerate(sizes):
            r = p[(p["method"] == method) & (p["size"] == size)].sort_values("exposure") if len(p) else p
            if r.empty:
                continue
            color = LEVEL_STYLES[i % len(LEVEL_STYLES)]
            s = (
                slopes[
                    (slopes["size"] == size)
                    & (slopes["method"] == method)
                    & (slopes["probe"] == probe)
                    & (slopes["selection"] == r["selection"].iloc[0])
                ]
                if len(slopes)
                else slopes
            )
            label = str(size)
            if len(s):
                s = s.iloc[0]
                label += f": {short_ci(s['slope'], s['slope_lo'], s['slope_hi'])}"
                _fit_line(ax, r["exposure"].to_numpy(float), r["net_drop"].to_numpy(float), s["slope"], color)
            ax.errorbar(
                r["exposure"] * (1 + 0.04 * (i - (len(sizes) - 1) / 2)),
                r["net_drop"],
                yerr=[r["net_drop"] - r["net_drop_lo"], r["net_drop_hi"] - r["net_drop"]],
                fmt="o",
                color=color,
                capsize=3,
                ms=4,
                label=label,
            )
        ax.set_xscale("log")
        ax.axhline(0, color="#555", lw=0.8)
        ax.set_xlabel("pre-training frequency (log)")
        ax.set_title(method, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="size: slope [95% CI]", title_fontsize=7)
    axes[0][0].set_ylabel("net drop (target - control)")
    fig.suptitle(
        f"Dose-response ({probe} probe; a falling line: frequent facts are harder to unlearn)", fontsize=10
    )
    fig.tight_layout()
    return fig


def size_trend(
    mis: pd.DataFrame,
    trend: pd.DataFrame,
    params: dict[str, float],
    view: str = "rank1",
    probe: str = "question",
    forgetting: float = 0.5,
) -> plt.Figure:
    """Finding 2 as a curve: the misaligned share at a level of forgetting (levels averaged) against
    parameters (log axis), one panel per method, with 95% intervals and the fitted slope per e-fold."""
    from frequnlearn.report.estimands import VIEWS

    m = (
        mis[(mis["probe"] == probe) & (mis["view"] == view) & (mis["forgetting"] == forgetting)]
        if len(mis)
        else mis
    )
    if len(m) and (m["selection"] == "known").any():
        m = m[m["selection"] == "known"]
    pooled = "both" if len(m) and (m["level"] == "both").any() else None
    if len(m):
        m = m[m["level"] == pooled] if pooled else m[m["level"] == m["level"].iloc[0]]
    m = m[m["size"].isin(list(params)) & m["share"].notna()] if len(m) else m
    where = "levels pooled" if pooled else (f"level {m['level'].iloc[0]}" if len(m) else "no level")
    methods = sorted(m["method"].unique()) if len(m) else [""]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        r = m[m["method"] == method] if len(m) else m
        if len(r):
            r = r.assign(params=r["size"].map(params)).sort_values("params")
            t = (
                trend[
                    (trend["method"] == method)
                    & (trend["view"] == view)
                    & (trend["probe"] == probe)
                    & (trend["level"] == r["level"].iloc[0])
                    & (trend["selection"] == r["selection"].iloc[0])
                    & (trend["forgetting"] == forgetting)
                    & (trend["measure"] == "share")
                ]
                if len(trend)
                else trend
            )
            label = "share"
            if len(t):
                t = t.iloc[0]
                label = f"slope {short_ci(t['slope'], t['slope_lo'], t['slope_hi'])}"
                _fit_line(ax, r["params"].to_numpy(float), r["share"].to_numpy(float), t["slope"], "#222222")
            ax.errorbar(
                r["params"],
                r["share"],
                yerr=[r["share"] - r["share_lo"], r["share_hi"] - r["share"]],
                fmt="o",
                color="#222222",
                capsize=3,
                ms=4,
                label=label,
            )
            tops = r["share_hi"].where(r["share_hi"].notna(), r["share"])
            for x, y, size, n in zip(r["params"], tops, r["size"], r["n_forgotten"]):
                ax.annotate(
                    f"{size}\nn={int(n)}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=6,
                )
            ax.legend(fontsize=7)
        ax.set_xscale("log")
        ax.axhline(0, color="#555", lw=0.8)
        ax.set_xlabel("parameters (log)")
        ax.set_title(method, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"misaligned share\n({VIEWS.get(view, view)})")
    fig.suptitle(
        f"Misalignment against model size ({probe} probe, {where}; rising: grows with size)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
