"""Figures for the report (matplotlib, Agg backend): readable on screen and in print."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

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
) -> plt.Figure:
    """Forget accuracy (solid) and retain accuracy (dashed) over unlearning steps, one panel per
    method x model size, one colour per frequency level; mean over seeds."""
    sub = c[(c["selection"] == selection) & (c["probe"].isin([probe, "question"]))]
    fig, axes = plt.subplots(
        len(methods), len(sizes), figsize=(4.2 * len(sizes), 3.0 * len(methods)), squeeze=False, sharey=True
    )
    for i, method in enumerate(methods):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            for level in levels:
                run = sub[(sub["method"] == method) & (sub["size"] == size) & (sub["level"] == level)]
                f = run[(run["role"] == "forget") & (run["probe"] == probe)].groupby("step")["acc_gen"].mean()
                r = (
                    run[(run["role"] == "retain") & (run["probe"] == "question")]
                    .groupby("step")["acc_gen"]
                    .mean()
                )
                color = _color(levels, level)
                if len(f):
                    ax.plot(f.index, f.values, "-o", ms=3, color=color, label=f"forget: {level}")
                if len(r):
                    ax.plot(r.index, r.values, "--", color=color, alpha=0.7, label=f"retain ({level} run)")
            ax.set_title(f"{method} | {size}", fontsize=10)
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            if i == len(methods) - 1:
                ax.set_xlabel("unlearning step")
            if j == 0:
                ax.set_ylabel("generation accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(4, len(labels)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02 - 0.02 * (len(labels) > 4)),
        )
    fig.suptitle(f"Forget vs retain accuracy ({selection} items, {probe} probe)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


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


def misalignment_bars(mis: pd.DataFrame, levels: Sequence[str], sizes: Sequence[str]) -> plt.Figure:
    """Peak share of forget items no longer generated but still preferred by likelihood."""
    m = mis[mis["probe"] == "question"] if (mis["probe"] == "question").any() else mis
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(sizes) * max(1, len(levels)) / 2, 3.4))
    width = 0.8 / max(1, len(levels))
    for k, level in enumerate(levels):
        vals = [float(m[(m["size"] == s) & (m["level"] == level)]["misaligned_peak"].mean()) for s in sizes]
        xs = [i + k * width for i in range(len(sizes))]
        ax.bar(xs, vals, width=width, color=_color(levels, level), label=level)
    ax.set_xticks([i + width * (len(levels) - 1) / 2 for i in range(len(sizes))])
    ax.set_xticklabels(sizes)
    ax.set_ylabel("peak misaligned share")
    ax.set_xlabel("model size")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Not generated, still ranked first (peak over steps)", fontsize=10)
    fig.tight_layout()
    return fig
