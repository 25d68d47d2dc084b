"""The benchmark's figure and report: the leaderboard first (report.md, and report.html with the
figure embedded), then how each method was tuned, then what the columns mean."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import numpy as np
import pandas as pd

from frequnlearn.config import to_dict
from frequnlearn.report.prose import as_markdown, budget

# The leaderboard's columns the report's first table shows (all of them are in leaderboard.csv).
SHOWN = (
    "rank",
    "method",
    "frequency_gap",
    "gap_lo",
    "gap_hi",
    "forgetting_",
    "retain_cost",
    "utility_cost",
    "cost_matched",
    "forget_quality_",
    "relearn_",
    "int4_",
    "mia_auc_",
    "extract_",
    "lr",
    "tuned",
)


def shown(board: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in board.columns if any(c == s or (s.endswith("_") and c.startswith(s)) for s in SHOWN)]
    cols = [c for c in cols if not c.endswith(("_lo", "_hi")) or c in ("gap_lo", "gap_hi")]
    return board[cols]


def figure(board: pd.DataFrame, high: str, low: str) -> bytes | None:
    """Left: each method's frequency gap with its 95% interval, in leaderboard order; right: its
    forgetting of each level (net of control) with intervals. None when no method has an estimate."""
    from frequnlearn.report.plots import FONT, LEVEL_COLORS, _yerr, plt, render

    b = (
        board[np.isfinite(board["frequency_gap"].to_numpy(dtype=float))]
        if "frequency_gap" in board
        else board
    )
    if b.empty:
        return None
    y = np.arange(len(b))[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 0.4 * len(b) + 1.6), sharey=True)
    ax1.errorbar(
        b["frequency_gap"],
        y,
        xerr=_yerr(b["frequency_gap"], b["gap_lo"], b["gap_hi"]),
        fmt="o",
        color="#333333",
        capsize=3,
    )
    ax1.axvline(0, color="#999999", lw=0.8)
    ax1.set_yticks(y, b["method"], fontsize=FONT)
    ax1.set_xlabel(f"frequency gap: forgetting of {high} minus {low}", fontsize=FONT)
    for k, (lv, color) in enumerate(zip((high, low), LEVEL_COLORS)):
        col = f"forgetting_{lv}"
        if col in b:
            ax2.errorbar(
                b[col],
                y + (0.12 if k == 0 else -0.12),
                xerr=_yerr(b[col], b[f"{col}_lo"], b[f"{col}_hi"]),
                fmt="o",
                color=color,
                capsize=3,
                label=lv,
            )
    ax2.set_xlabel("forgetting at the matched cost (net drop)", fontsize=FONT)
    ax2.legend(fontsize=FONT, frameon=False, loc="lower right")
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=FONT)
    fig.tight_layout()
    return render(fig).png


def markdown(cfg: Any, board: pd.DataFrame, record: dict[str, Any], ctx: Any) -> str:
    b = cfg.bench
    high, low = ctx.lay.high, ctx.lay.low
    n_cols = [c for c in board.columns if c.startswith("n_")]
    seeds = int(board["seeds"].max()) if "seeds" in board and board["seeds"].notna().any() else 0
    per_seed = {c: int(board[c].min() // max(seeds, 1)) for c in n_cols if board[c].notna().any()}
    matched = int(board["cost_matched"].sum())
    lines = [
        "# Frequency-aware unlearning benchmark",
        "",
        f"{len(board)} methods, each at its own retain-tuned settings, ranked by how unequally they forget "
        f"frequent ({high}) and rare ({low}) knowledge: the frequency gap is forgetting of {high} minus "
        f"forgetting of {low} (each a net drop: 1 - normalised AUC of greedy generation of the known target "
        "items over the run, minus that of never-unlearned control items of the same level), with a 95% "
        "interval from the hierarchical bootstrap over seeds, people and items. Rank 1 forgets the two levels "
        "most equally (smallest |gap|). "
        f"Seeds: {seeds}; known target items per level per seed: "
        + (", ".join(f"{k[2:]} {v}" for k, v in per_seed.items()) or "none")
        + f". Budget: {budget(to_dict(cfg.unlearn))}; lr chosen on retain items alone "
        f"(target retain drop {b.target_retain_drop} +- {b.tolerance}; {matched} of {len(board)} methods "
        "within it in the study itself).",
        "",
        "![leaderboard](leaderboard.png)",
        "",
        "## Leaderboard",
        "",
        as_markdown(shown(board)),
        "",
        "Every column, with intervals and item counts: `leaderboard.csv`. Per-run membership AUCs (four "
        "scores) and extraction probabilities: `mia.csv`, `extraction.csv`. The study's own report: "
        "`study/report/report.html`.",
        "",
        "## Tuning (retain and utility items only)",
        "",
        f"Each method unlearned a tuning set of {b.tuning_size} known items of retain people (never a forget "
        f"or control item, never evaluated by the study) on the models of seeds {cfg.seeds_tuned}, at every "
        f"point of its grid (lr {b.lr_grid}"
        + (f"; tuned settings {b.param_grid}" if b.param_grid else "")
        + (
            f"; then up to {b.refine_steps} bisection rounds of the rate where the mean retain drop crosses "
            "the target between two neighbouring rates"
            if b.refine_steps
            else ""
        )
        + "). The cost is the drop of normalised retain accuracy at the stopping point on the study's own "
        "evaluated retain people; "
        + (
            "the largest rate within the tolerance was chosen (the closest point where none was). "
            if b.prefer == "largest_rate"
            else "the point within the tolerance that forgot the largest share of the tuning set was chosen "
            "(the closest point where none was). "
            if b.prefer == "most_forgotten"
            else "the point closest to the target was chosen (ties: smaller utility drop). "
        )
        + "Every run: `tuning.csv`; the grid, the sets and the choice: `tuning.json`.",
        "",
        as_markdown(_chosen(record)),
        "",
        "## Columns",
        "",
        "- `frequency_gap` (`gap_lo`, `gap_hi`): forgetting of the frequent level minus the rare one; negative: "
        "frequent knowledge is harder to remove. `gap_verdict` in the CSV applies the report's rule.",
        "- `forgetting_<level>`: net drop of the level (target minus control); `forgotten_end_<level>`: share "
        "of the known targets no longer generated at the stopping point.",
        "- `retain_cost`, `utility_cost`: drop of normalised retain / utility accuracy at the stopping point, "
        "mean over the study's runs; `cost_matched`: within the target band.",
        "- `forget_quality_<level>`: p-value of the KS test of the forget items' truth ratios against the "
        "never-learned oracle's (high: indistinguishable from never learned).",
        "- `relearn_targeted_`, `relearn_benign_`, `int4_<level>`: share of the known items that came back "
        "after the largest relearning budget / int4 weight quantization.",
        "- `mia_auc_<level>`: Min-K%++ membership AUC of the forget items against the same items under the "
        "oracle (0.5: they look never seen); `extract_<level>`: mean probability that n samples at "
        f"temperature 1 give the answer (n = {cfg.evaluate.extraction_samples}).",
        "",
        "## Run",
        "",
        "\n".join(run_lines(record, ctx.info)),
        "",
    ]
    return "\n".join(lines)


def run_lines(record: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """What ran the benchmark and what it took: the study's Run section (command, commit, stage work,
    hardware) plus the tuning runs' wall time, which the study's timings do not hold."""
    from frequnlearn.report.sections import run_lines as study_run_lines

    runs = pd.DataFrame(record.get("runs") or [])
    secs = pd.to_numeric(runs["seconds"], errors="coerce") if "seconds" in runs else pd.Series(dtype=float)
    timed = int(secs.notna().sum())
    if len(runs) and timed:
        tuning = f"{secs.sum() / 60:.1f} min for {timed} of {len(runs)} runs"
        if timed < len(runs):
            tuning += f" ({len(runs) - timed} run before tuning times were kept)"
    else:
        tuning = "not recorded"
    return study_run_lines(info, wall_label="study wall time", before_wall=[f"tuning wall time: {tuning}"])


def _chosen(record: dict[str, Any]) -> pd.DataFrame:
    rows = []
    runs = pd.DataFrame(record["runs"])
    for method, c in record["chosen"].items():
        g = runs[runs["method"] == method] if len(runs) else runs
        rows.append(
            {
                "method": method,
                "chosen": c["point"],
                "retain_drop": c["retain_drop"],
                "utility_drop": c["utility_drop"],
                "matched": c["matched"],
                "grid (point: retain drop / share of the tuning set forgotten)": "; ".join(
                    f"{p}: {_num(d, 3)} / {_num(f, 2)}"
                    for p, (d, f) in g.groupby("point", sort=False)[["retain_drop", "tuning_set_forgotten"]]
                    .mean()
                    .iterrows()
                ),
            }
        )
    return pd.DataFrame(rows)


def _num(x: Any, digits: int) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) and math.isfinite(x) else "n/a"


def page_html(md: str, png: bytes | None) -> str:
    """A self-contained page of the markdown: its tables as tables, the figure embedded."""
    out, table = [], []

    def flush() -> None:
        if table:
            head, *body = [r.strip().strip("|").split(" | ") for r in table if not r.startswith("|---")]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</table>"
            )
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            if png is not None:
                data = base64.b64encode(png).decode()
                out.append(
                    f'<img alt="leaderboard" style="max-width:100%" src="data:image/png;base64,{data}">'
                )
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Benchmark</title><style>{style}</style>"
        f"</head><body>{''.join(out)}</body></html>"
    )
