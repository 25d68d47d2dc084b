"""`frequnlearn report RUN_DIR`: collect every unlearning run's per-item records and write the report.

Outputs in RUN_DIR/report/: report.html (self-contained, plots embedded), report.md, headline.csv,
curves.csv, summaries.csv, findings.json and the PNG figures. All numbers are recomputed from the
per-item trajectories, never carried over from a run's own log.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.errors import DataError
from frequnlearn.records import atomic_open, read_json, run_info, write_json
from frequnlearn.report import analysis, attacks, plots

STAGE_FILE = ".stage.json"


def load_trajectories(run_dir: Path) -> pd.DataFrame:
    """All complete unlearning runs' trajectories, with the run's identity as columns."""
    frames = []
    for marker in sorted((run_dir / "unlearn").glob(f"**/{STAGE_FILE}")):
        info = read_json(marker)
        traj = marker.parent / "trajectory.parquet"
        if info.get("skipped") or not traj.is_file():
            continue
        df = pd.read_parquet(traj)
        df["run_id"] = info["task"]
        df["model"] = info["model"]
        df["size"] = info.get("size") or info["model"].rsplit("-s", 1)[0]
        df["seed"] = int(info["seed"])
        df["method"] = info["method"]
        df["level"] = str(info["level"])
        df["selection"] = info["selection"]
        frames.append(df)
    if not frames:
        raise DataError(
            f"{run_dir}: no finished unlearning runs to report on (run `frequnlearn study` first)"
        )
    return pd.concat(frames, ignore_index=True)


def skipped_runs(run_dir: Path) -> list[str]:
    """Unlearning runs the study could not make, with the reason (e.g. no known items)."""
    return [
        f"{info['task']}: {info['skipped']}"
        for info in (read_json(m) for m in sorted((run_dir / "unlearn").glob(f"**/{STAGE_FILE}")))
        if info.get("skipped")
    ]


def load_utility(run_dir: Path) -> pd.DataFrame:
    """lm-eval utility scores before (each model's baseline) and after (each unlearning run)."""
    rows = []
    for path in sorted(run_dir.glob("models/*/baseline/utility.json")):
        for task, metrics in read_json(path)["tasks"].items():
            rows += [
                {"run_id": f"{path.parent.parent.name}/baseline", "task": task, "metric": m, "value": v}
                for m, v in metrics.items()
            ]
    for marker in sorted((run_dir / "unlearn").glob(f"**/{STAGE_FILE}")):
        path = marker.parent / "utility.json"
        if path.is_file():
            for task, metrics in read_json(path)["tasks"].items():
                rows += [
                    {"run_id": read_json(marker)["task"], "task": task, "metric": m, "value": v}
                    for m, v in metrics.items()
                ]
    return pd.DataFrame(rows, columns=["run_id", "task", "metric", "value"])


def item_verdicts(traj: pd.DataFrame, gen_threshold: float) -> pd.DataFrame:
    """Per (run, step, item, probe): generation and probability verdicts, with role and run identity."""
    from frequnlearn.evaluate.misalignment import verdicts

    v = verdicts(traj, gen_threshold=gen_threshold)
    keys = ["run_id", "step", "item_id", "probe"]
    extra = [c for c in analysis.RUN_COLUMNS + ["role", "frequency"] if c not in v.columns or c in keys]
    ident = traj[list(dict.fromkeys(keys + extra))].drop_duplicates(keys)
    v = v.drop(columns=[c for c in extra if c in v.columns and c not in keys]).merge(
        ident, on=keys, how="left"
    )
    v["gen_known"] = v["gen_known"].astype(bool)
    v["prob_known"] = v["prob_known"].astype(bool)
    return v


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


def _ordered(values: Any, preferred: list[str]) -> list[str]:
    present = [str(v) for v in pd.unique(values)]
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def build_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"RUN_DIR {run_dir}: no such directory")
    study = read_json(run_dir / "study.json") if (run_dir / "study.json").is_file() else {"config": {}}
    scfg = study["config"].get("study", {})
    ecfg = study["config"].get("evaluate", {})
    threshold = float(scfg.get("forget_threshold", 0.1))
    tolerance = float(scfg.get("retain_tolerance", 0.1))
    n_boot = int(scfg.get("n_boot", 1000))
    gen_threshold = float(ecfg.get("gen_threshold", 0.5))

    traj = load_trajectories(run_dir)
    v = item_verdicts(traj, gen_threshold)
    levels = _ordered(v["level"], [str(x) for x in scfg.get("levels", [])])
    sizes = _ordered(v["size"], list(scfg.get("model_sizes", [])))
    methods = _ordered(v["method"], list(scfg.get("methods", [])))
    selections = _ordered(v["selection"], ["known", "all"])
    probes = _ordered(v["probe"], ["question", "paraphrase", "bio"])
    high, low = (levels[0], levels[-1]) if len(levels) >= 2 else (levels[0], levels[0])

    c = analysis.curves(v)
    summaries = analysis.run_summaries(c, threshold, tolerance)
    aucs = analysis.item_aucs(v)
    head = analysis.headline(summaries, aucs, levels, n_boot=n_boot)
    effect = analysis.frequency_effect(head, high, low)
    seeds = analysis.seed_differences(summaries, high, low)
    mis = analysis.misalignment_by_size(v)
    findings = analysis.describe_findings(effect, seeds, mis, sizes, high, low)
    findings += [f"Skipped {s}" for s in skipped_runs(run_dir)]
    utility = load_utility(run_dir)

    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, df in [
        ("curves", c),
        ("summaries", summaries),
        ("headline", head),
        ("frequency_effect", effect),
        ("seed_differences", seeds),
        ("misalignment", mis),
        ("utility", utility),
    ]:
        with atomic_open(out / f"{name}.csv") as fh:
            df.to_csv(fh, index=False)

    figures: list[tuple[str, str, bytes]] = []
    for selection in selections:
        for probe in probes:
            fig = plots.trajectories(c, levels, sizes, methods, selection, probe)
            name = f"trajectories_{selection}_{probe}.png"
            figures.append(
                (
                    name,
                    f"Forget and retain accuracy over steps: {selection} items, {probe} probe",
                    plots.save(fig, out / name),
                )
            )
    points = scatter_points(traj)
    if len(points):
        figures.append(
            (
                "scatter.png",
                "Probability vs generation score per forget item, before and after",
                plots.save(plots.scatter(points, levels), out / "scatter.png"),
            )
        )
    figures.append(
        (
            "misalignment.png",
            "Misalignment by model size and frequency level",
            plots.save(plots.misalignment_bars(mis, levels, sizes), out / "misalignment.png"),
        )
    )

    info = run_info(study["config"], scfg.get("seeds"))
    write_json(
        out / "findings.json",
        {
            "findings": findings,
            "high_level": high,
            "low_level": low,
            "frequency_effect": _records(effect),
            "seed_differences": _records(seeds),
            "misalignment": _records(mis),
            "run_info": info,
        },
    )
    md = _markdown(findings, head, effect, seeds, mis, utility, figures, info)
    with atomic_open(out / "report.md") as fh:
        fh.write(md)
    with atomic_open(out / "report.html") as fh:
        fh.write(_html(findings, head, effect, seeds, mis, utility, figures, info))
    attacks.add_to_report(run_dir, out)
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()}
        for row in df.to_dict(orient="records")
    ]


HEAD_COLS = [
    "size",
    "method",
    "selection",
    "probe",
    "level",
    "seeds",
    "n_items",
    "forget_start",
    "forget_auc",
    "forget_auc_lo",
    "forget_auc_hi",
    "steps_to_threshold",
    "forget_end",
    "misaligned_peak",
    "retain_start",
    "retain_end",
    "forget_at_matched_retain",
]


def _markdown(findings, head, effect, seeds, mis, utility, figures, info) -> str:
    parts = ["# frequnlearn study report", "", "## Findings", ""]
    parts += [f"- {f}" for f in findings]
    parts += [
        "",
        "## Headline numbers",
        "",
        "Forget accuracy AUC = mean generation accuracy over the step budget (95% bootstrap CI over "
        "items in `forget_auc_lo`..`forget_auc_hi`); lower means forgotten sooner.",
        "",
        analysis.as_markdown(head[[c for c in HEAD_COLS if c in head.columns]]),
        "",
        "## Frequency effect (high minus low)",
        "",
        analysis.as_markdown(effect),
        "",
        "## Across seeds",
        "",
        analysis.as_markdown(seeds),
        "",
        "## Misalignment by size",
        "",
        analysis.as_markdown(mis),
        "",
    ]
    if len(utility):
        parts += ["## Utility (lm-eval)", "", analysis.as_markdown(utility), ""]
    parts += ["## Figures", ""]
    parts += [f"![{cap}]({name})" for name, cap, _ in figures]
    parts += ["", "## Run", "", f"versions: {info['versions']}", "", f"hardware: {info['hardware']}", ""]
    return "\n".join(parts)


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="", border=0, classes="t")


def _html(findings, head, effect, seeds, mis, utility, figures, info) -> str:
    esc = html.escape
    imgs = "\n".join(
        f'<figure><img alt="{esc(cap)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{esc(cap)}</figcaption></figure>"
        for _, cap, data in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>frequnlearn study report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table.t {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }}
table.t th, table.t td {{ border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: right; }}
table.t th {{ background: #f4f4f4; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }} figcaption {{ font-size: 13px; color: #555; }}
@media print {{ figure {{ page-break-inside: avoid; }} }}
</style></head><body>
<h1>frequnlearn study report</h1>
<h2>Findings</h2><ul>{"".join(f"<li>{esc(f)}</li>" for f in findings)}</ul>
<h2>Headline numbers</h2>
<p>Forget accuracy AUC is the mean generation accuracy over the step budget (lower = forgotten sooner);
<code>forget_auc_lo</code>..<code>forget_auc_hi</code> is its 95% bootstrap interval over items.</p>
{_table_html(head[[c for c in HEAD_COLS if c in head.columns]])}
<h2>Frequency effect (high minus low)</h2>{_table_html(effect)}
<h2>Across seeds</h2>{_table_html(seeds)}
<h2>Misalignment by size</h2>{_table_html(mis)}
{f"<h2>Utility (lm-eval)</h2>{_table_html(utility)}" if len(utility) else ""}
<h2>Figures</h2>{imgs}
<h2>Run</h2><pre>{esc(str(info["versions"]))}\n{esc(str(info["hardware"]))}</pre>
</body></html>
"""
