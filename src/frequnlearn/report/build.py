"""`frequnlearn report RUN_DIR`: the report of a study run, built once from one load of the run.

`rundata.load_run` reads the run; the analysis computes the tables and verdicts from the per-item
trajectories (never from a run's own log); the robustness tables come from the attack and oracle
scores; then `figures` draws every declared figure, `sections` lays out every section and `page`
writes them as report.md and report.html (self-contained, plots embedded), in the same order: one
headline box per finding, the two lead figures, the terms, the verdicts, the robustness sections, the
full tables, more figures, and the command, commit and hardware the study ran on. The CSV tables,
findings.json and the PNG figures go beside them; files an earlier build wrote that this one does not
are removed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from frequnlearn.errors import DataError
from frequnlearn.layout import RunLayout
from frequnlearn.records import atomic_open, output_set, read_json, run_info, write_json
from frequnlearn.report import attacks, estimands, prose
from frequnlearn.report.context import Context, Layout, high_and_low
from frequnlearn.report.figures import BuiltFigure, build_figures
from frequnlearn.report.headline import Headline
from frequnlearn.report.page import Page
from frequnlearn.report.rundata import RunData, load_run
from frequnlearn.report.runs import measured_probe, study_option
from frequnlearn.report.sections import build_sections, glossary_section, stages

__all__ = ["Layout", "build_report", "high_and_low"]


def skipped_runs(data: RunData) -> list[str]:
    """Unlearning runs the study could not make, with the reason (e.g. no known items)."""
    return [f"{run.identity['task']}: {run.skipped}" for run in data.runs if run.skipped]


def utility_table(data: RunData) -> pd.DataFrame:
    """lm-eval utility scores before (each model's baseline) and after (each unlearning run)."""
    sources = [(f"{m.tag}/baseline", m.utility) for m in data.models if m.utility]
    sources += sorted(data.run_utility.items())
    rows = [
        {"run_id": run_id, "task": task, "metric": m, "value": v}
        for run_id, record in sources
        for task, metrics in record["tasks"].items()
        for m, v in metrics.items()
    ]
    return pd.DataFrame(rows, columns=["run_id", "task", "metric", "value"])


def item_verdicts(traj: pd.DataFrame, gen_threshold: float) -> pd.DataFrame:
    """Per (run, step, item, probe): generation and probability verdicts, with role and run identity."""
    from frequnlearn.evaluate.misalignment import verdicts

    v = verdicts(traj, gen_threshold=gen_threshold)
    keys = ["run_id", "step", "item_id", "probe"]
    extra = [c for c in estimands.RUN_COLUMNS + ["role", "frequency"] if c not in v.columns or c in keys]
    ident = traj[list(dict.fromkeys(keys + extra))].drop_duplicates(keys)
    v = v.drop(columns=[c for c in extra if c in v.columns and c not in keys]).merge(
        ident, on=keys, how="left"
    )
    v["gen_known"] = v["gen_known"].astype(bool)
    v["prob_known"] = v["prob_known"].astype(bool)
    return v


def pretraining_knowledge(data: RunData, params: dict[str, float]) -> pd.DataFrame:
    """Per pretrained model: its size, seed, epochs and the knowledge check's accuracy per group, from
    the model's own run record."""
    rows = []
    for model in data.models:
        rec = model.record or {}
        summary = rec.get("summary")
        if not isinstance(summary, dict):
            continue
        size = rec.get("config", {}).get("preset")  # the model's own record names its size
        groups = summary.get("knowledge", {}).get("by_group", {})
        row: dict[str, Any] = {
            "model": model.tag,
            "size": size,
            "seed": rec.get("seed"),
            "parameters": summary.get("n_params", params.get(size)),
            "epochs": summary.get("epochs"),
        }
        row.update({f"known {g}": round(float(v["accuracy"]), 3) for g, v in sorted(groups.items())})
        row.update({f"n {g}": int(v["n"]) for g, v in sorted(groups.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def frequency_only_baseline(data: RunData) -> pd.DataFrame:
    """The data manifest's top-1 rate of ranking candidates by corpus count alone, per group."""
    base = data.manifest.get("frequency_only_baseline")
    if not base:
        return pd.DataFrame()
    return pd.DataFrame([{"group": g, **vals} for g, vals in base.items()])


def build_info(config: dict[str, Any], seeds: Any, study: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run info plus the command and commit that ran the study, and the command and commit of this report."""
    from frequnlearn.records import code_commit, command_line

    info = run_info(config, seeds)
    study = study or {}
    info["report_commit"] = code_commit()
    info["report_command"] = command_line()
    info["command"] = study.get("command") or info["report_command"]
    info["commit"] = study.get("commit") or info["report_commit"]
    # The machine, threads and libraries that ran the study, not those of this report's process.
    for key in ("hardware", "versions"):
        if study.get(key):
            info[key] = study[key]
    return info


def wall_time(data: RunData) -> dict[str, Any]:
    """Seconds each kind of stage took, summed over every part of a study that ran in several parts.

    The study times each stage it runs (timings.json); a model pretrained outside it (copied in, or
    before timings were kept) contributes the time its own metrics log measured (tokens over tokens/s).
    The models of an ensemble share one timed task, so its time counts once, not once per model.
    """
    from frequnlearn.layout import pretrained_tags

    times = data.timings
    by_kind: dict[str, float] = {}
    timed_models: set[str] = set()
    for name, seconds in times.items():
        kind, _, task = name.partition(":")
        by_kind[kind] = by_kind.get(kind, 0.0) + float(seconds)
        if kind == "pretrain":
            timed_models.update(pretrained_tags(task))
    from_logs = []
    for model in data.models:
        if model.tag in timed_models:
            continue
        seen, seconds = 0.0, 0.0
        for row in model.metrics:
            if row.get("tokens_per_s") and row.get("tokens_seen"):
                seconds += (float(row["tokens_seen"]) - seen) / float(row["tokens_per_s"])
                seen = float(row["tokens_seen"])
        if seconds:
            by_kind["pretrain"] = by_kind.get("pretrain", 0.0) + seconds
            from_logs.append(model.tag)
    return {
        "total_s": round(sum(by_kind.values()), 1),
        "by_kind_s": {k: round(v, 1) for k, v in by_kind.items()},
        "pretrain_from_metrics_log": from_logs,
    }


def subtitle(data: RunData, lay: Layout) -> str:
    """One line: what the study compared."""

    def size(s: str) -> str:
        return f"{s} ({lay.params[s] / 1e6:.2f}M)" if s in lay.params else s

    seeds = sorted(data.trajectories["seed"].unique()) if "seed" in data.trajectories else []
    parts = [
        f"{study_option(data.study, 'setting')} setting",
        "sizes " + ", ".join(size(s) for s in lay.sizes),
        "methods " + ", ".join(lay.methods),
        "levels " + ", ".join(lay.levels),
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
    ]
    worlds = data.trajectories["world"].nunique() if "world" in data.trajectories else 1
    if worlds > 1:  # each world's seeds are its own models: say how many there are
        parts[-1] += f" on each of {worlds} generated worlds"
    return " · ".join(parts)


# Files earlier versions of the report wrote under names this one no longer writes.
FORMER_FILES = ("attacks.png",)


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report of the study in `run_dir` into `out_dir` (default RUN_DIR/report); return it."""
    ctx = context(load_run(run_dir))
    have = stages(ctx)
    figures = build_figures(ctx, have)
    sections = build_sections(ctx, figures)
    lead = [f for f in figures if f.lead]
    draft = Page(subtitle(ctx.data, ctx.lay), ctx.headlines, lead, sections).markdown()
    sections.insert(1 if ctx.notes else 0, glossary_section(ctx, draft))
    page = Page(subtitle(ctx.data, ctx.lay), ctx.headlines, lead, sections)
    csvs = list(TABLES)
    csvs += ["attacks"] if have & {"relearning", "quantization"} else []
    csvs += ["forget_quality"] if "oracle" in have else []
    final = Path(out_dir) if out_dir is not None else RunLayout(ctx.data.root).report
    write_report(final, ctx, csvs, [f for f in figures if f.rendered is not None], page)
    return final


def context(data: RunData) -> Context:
    """Every table, verdict and headline of the report, computed from the loaded run."""
    study = data.study
    gen_threshold = float(study_option(study, "gen_threshold", section="evaluate"))
    v = item_verdicts(data.trajectories, gen_threshold)
    lay = Layout.of(v, study, data.runs)
    t, headlines, findings = analyse(v, lay, study)
    t["frequency_only_baseline"] = frequency_only_baseline(data)
    t["parameters"] = pd.DataFrame({"size": list(lay.params), "parameters": list(lay.params.values())})
    t["pretraining_knowledge"] = pretraining_knowledge(data, lay.params)
    t["utility"] = utility_table(data)
    probe = measured_probe(study)
    t.update(attacks.tables(data, probe, gen_threshold))
    info = build_info(study["config"], study["config"].get("study", {}).get("seeds"), study)
    info["wall_time"] = wall_time(data)
    notes = [f"Skipped {s}" for s in skipped_runs(data)] + _non_finite_note(data.trajectories) + data.notes
    return Context(data, lay, t, findings, headlines, notes, info, probe)


def write_report(final: Path, ctx: Context, csvs: list[str], pngs: list[BuiltFigure], page: Page) -> None:
    """The CSV tables, figures, findings.json and both pages, written as one set (report.html last): a
    full disk or a kill leaves the previous report whole, and the files the previous report wrote that
    this one does not are removed with it."""
    files = (
        [f"{n}.csv" for n in csvs] + [f.name for f in pngs] + ["report.md", "findings.json", "report.html"]
    )
    names = sorted(set(files) | set(_previous_files(final)))
    with output_set(final, names, "report.html", kind="report") as out:
        for name in csvs:
            with atomic_open(out / f"{name}.csv") as fh:
                ctx.lay.sorted(ctx.tables[name]).to_csv(fh, index=False)
        for f in pngs:
            with atomic_open(out / f.name, "wb") as fh:
                fh.write(f.rendered.png)
        _write_findings(out, ctx, page, files)
        with atomic_open(out / "report.md") as fh:
            fh.write(page.markdown())
        with atomic_open(out / "report.html") as fh:
            fh.write(page.html())


def _previous_files(out: Path) -> list[str]:
    """The files the last report written into `out` wrote (none when `out` holds no report of ours)."""
    path = out / "findings.json"
    if not path.is_file():
        return []
    try:
        files = read_json(path).get("files")
    except (DataError, OSError, ValueError):
        return []
    if files is None:  # written before reports listed their files: the names they could have written
        return [name for name in FORMER_FILES if (out / name).is_file()]
    return [f for f in files if isinstance(f, str) and "/" not in f and not f.startswith(".")]


# The CSV tables a report writes, in this order.
TABLES = (
    "verdicts",
    "frequency_effect",
    "mediation",
    "mediation_points",
    "hazard_ratio",
    "survival",
    "exploratory",
    "duplicates",
    "misalignment",
    "misalignment_curve",
    "forgetting_reach",
    "size_trend",
    "headline",
    "summaries",
    "items",
    "curves",
    "frequency_only_baseline",
    "parameters",
    "pretraining_knowledge",
    "dose_response",
    "dose_points",
    "utility",
)


class Analysis(NamedTuple):
    """What `analyse` returns: the tables (names stable), one `Headline` per finding (its declared
    primary endpoint) and the sentences (each headline's, then the exploratory ones)."""

    tables: dict[str, pd.DataFrame]
    headlines: list[Headline]
    findings: list[str]


def analyse(v: pd.DataFrame, lay: Layout, study: dict[str, Any]) -> Analysis:
    """The report's tables computed from the per-item verdicts, the headline of each finding and the
    sentences that state them.

    Finding 1's primary endpoint is the total frequency effect (on a grid of >= 3 exposures, the slope
    against log frequency) and Finding 2's the misalignment slope against log parameters, both as
    `study.primary` declares them; every other comparison is exploratory and Holm-adjusted within its
    finding (`estimands.families`)."""
    n_boot = int(study_option(study, "n_boot"))
    threshold = float(study_option(study, "forget_threshold"))
    tolerance = float(study_option(study, "retain_tolerance"))
    declared = study_option(study, "primary")
    declared = asdict(declared) if is_dataclass(declared) else dict(declared or {})
    primary = estimands.resolve_primary(declared, lay.methods, lay.sizes, lay.levels)
    high, low = lay.high, lay.low
    pool = len(lay.sizes) > 1
    v = estimands.ensure_identity(v)
    c = estimands.curves(v)
    summaries = estimands.run_summaries(c, threshold, tolerance)
    items = estimands.item_table(v)
    head = estimands.level_summary(summaries, items, lay.levels, n_boot=n_boot)
    effect = estimands.frequency_effect(items, high, low, n_boot=n_boot, pool_sizes=pool)
    matched = estimands.frequency_effect(items, high, low, n_boot=n_boot, matched=True)
    med, med_points = estimands.mediation(items, high, low, n_boot=n_boot, pool_sizes=pool)
    surv, hazard = estimands.survival(items, high, low, pool_sizes=pool)
    dose_points, dose = estimands.dose_response(items, n_boot=n_boot, pool_sizes=pool)
    reach = estimands.forgetting_reach(v)
    mi = estimands.misalignment_items(v)
    mis = estimands.misalignment(mi, reach, n_boot=n_boot)
    trend = estimands.size_trend(mi, reach, lay.params, n_boot=n_boot)
    dups = pd.concat(
        [estimands.near_identical(items, "method"), estimands.near_identical(items, "probe")],
        ignore_index=True,
    )
    tables = {
        "frequency_effect": pd.concat([effect, matched], ignore_index=True),
        "mediation": med,
        "mediation_points": med_points,
        "hazard_ratio": hazard,
        "survival": surv,
        "duplicates": dups,
        "misalignment": mis,
        "misalignment_curve": estimands.misalignment_curve(v),
        "forgetting_reach": reach,
        "size_trend": trend,
        "headline": head,
        "summaries": summaries,
        "items": items,
        "curves": c,
        "dose_response": dose,
        "dose_points": dose_points,
    }
    primaries, family = estimands.families(tables, primary, dups, lay.sizes, lay.methods)
    tables["exploratory"] = family
    eff = tables["frequency_effect"]
    tables["verdicts"] = prose.verdict_table(
        eff[~eff["matched"].astype(bool)] if len(eff) else eff, med, matched_rows(eff), mis, primary.probe
    )
    budget = prose.budget(
        study.get("config", {}).get("unlearn", {}), items["last_step"] if len(items) else ()
    )
    headlines = [
        prose.headline_frequency(primary, primaries["1"], tables, family, high, low, budget),
        prose.headline_misalignment(
            primary, primaries["2"], trend, family, lay.sizes, len(lay.params), budget, reach
        ),
    ]
    findings = [prose.sentence(h) for h in headlines] + prose.exploratory_sentences(family)
    return Analysis(tables, headlines, findings)


def matched_rows(effect: pd.DataFrame) -> pd.DataFrame:
    """The margin-matched rows of the frequency-effect table (exploratory)."""
    return effect[effect["matched"].astype(bool)] if len(effect) else effect


def _non_finite_note(traj: pd.DataFrame) -> list[str]:
    if "finite" not in traj.columns:
        return []
    bad = traj.loc[~traj["finite"].astype(bool), ["run_id", "step", "item_id", "probe"]].drop_duplicates()
    if not len(bad):
        return []
    return [f"{len(bad)} item evaluations had non-finite logits and are left out of every number."]


def _write_findings(out: Path, ctx: Context, page: Page, files: list[str]) -> None:
    t, lay, items = ctx.tables, ctx.lay, ctx.tables["items"]
    write_json(
        out / "findings.json",
        {
            "headlines": [h.record() for h in ctx.headlines],
            "findings": ctx.findings,
            "notes": ctx.notes,
            "high_level": lay.high,
            "low_level": lay.low,
            "known_items": int(items["known0"].sum()) if len(items) else 0,
            "verdicts": _records(t["verdicts"]),
            "frequency_effect": _records(t["frequency_effect"]),
            "size_trend": _records(t["size_trend"]),
            "mediation": _records(t["mediation"]),
            "exploratory": _records(t["exploratory"]),
            "dose_response": _records(t["dose_response"]),
            "pretraining_knowledge": _records(t["pretraining_knowledge"]),
            "sections": page.headings(),
            "files": files,
            "run_info": ctx.info,
        },
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()}
        for row in df.to_dict(orient="records")
    ]
