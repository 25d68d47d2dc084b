"""`frequnlearn report RUN_DIR`: collect every unlearning run's per-item records and write the report.

Outputs in RUN_DIR/report/: report.html (self-contained, plots embedded), report.md, the CSV tables,
findings.json and the PNG figures. All numbers are recomputed from the per-item trajectories, never
carried over from a run's own log. Both pages lead with the findings, then the two figures that carry
them, then a compact verdict table; the full tables follow (collapsed in the HTML) and the page ends
with the command, commit and hardware it was built from.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from frequnlearn.errors import DataError
from frequnlearn.records import (
    atomic_open,
    check_outputs,
    output_set,
    read_json,
    read_jsonl,
    read_parquet,
    run_info,
    write_json,
)
from frequnlearn.report import attacks, estimands, plots, prose
from frequnlearn.report.headline import Headline
from frequnlearn.report.runs import UnlearnRun, study_option, unlearn_runs


def load_trajectories(runs: list[UnlearnRun]) -> pd.DataFrame:
    """All finished unlearning runs' trajectories, with each run's identity (from its record) as columns.

    A run whose trajectory is missing, cut, or not what its done marker recorded stops the report with
    one line naming the file: a report that silently dropped a level would compare the wrong things."""
    frames = []
    for run in runs:
        if run.skipped:
            continue
        path = run.path / "trajectory.parquet"
        why = check_outputs(run.path) or (None if path.is_file() else "trajectory.parquet is missing")
        if why is not None:
            raise DataError(f"{run.path}: {why}; rerun `frequnlearn study` to make this run again")
        frames.append(estimands.with_run_identity(read_parquet(path), run.identity))
    if not frames:
        raise DataError("no finished unlearning runs to report on (run `frequnlearn study` first)")
    return pd.concat(frames, ignore_index=True)


def skipped_runs(runs: list[UnlearnRun]) -> list[str]:
    """Unlearning runs the study could not make, with the reason (e.g. no known items)."""
    return [f"{run.identity['task']}: {run.skipped}" for run in runs if run.skipped]


def load_utility(run_dir: Path, runs: list[UnlearnRun]) -> pd.DataFrame:
    """lm-eval utility scores before (each model's baseline) and after (each unlearning run)."""
    sources = [
        (f"{path.parent.parent.name}/baseline", path)
        for path in sorted(run_dir.glob("models/*/baseline/utility.json"))
    ]
    sources += [(run.identity["task"], run.path / "utility.json") for run in runs]
    rows = [
        {"run_id": run_id, "task": task, "metric": m, "value": v}
        for run_id, path in sources
        if path.is_file()
        for task, metrics in read_json(path)["tasks"].items()
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


def pretraining_knowledge(run_dir: Path, params: dict[str, float]) -> pd.DataFrame:
    """Per pretrained model: its size, seed, epochs and the knowledge check's accuracy per group, from
    the model's own run record (`models/<tag>/run.json`)."""
    rows = []
    for path in sorted(run_dir.glob("models/*/run.json")):
        try:
            rec = read_json(path)
            summary = rec["summary"]
        except (DataError, KeyError):
            continue
        size = rec.get("config", {}).get("preset")  # the model's own record names its size
        groups = summary.get("knowledge", {}).get("by_group", {})
        row: dict[str, Any] = {
            "model": path.parent.name,
            "size": size,
            "seed": rec.get("seed"),
            "parameters": summary.get("n_params", params.get(size)),
            "epochs": summary.get("epochs"),
        }
        row.update({f"known {g}": round(float(v["accuracy"]), 3) for g, v in sorted(groups.items())})
        row.update({f"n {g}": int(v["n"]) for g, v in sorted(groups.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def frequency_only_baseline(run_dir: Path) -> pd.DataFrame:
    """The data manifest's top-1 rate of ranking candidates by corpus count alone, per group."""
    path = run_dir / "data" / "manifest.json"
    base = read_json(path).get("frequency_only_baseline") if path.is_file() else None
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


def wall_time(run_dir: Path) -> dict[str, Any]:
    """Seconds each kind of stage took, summed over every part of a study that ran in several parts.

    The study times each stage it runs (`timings.json`); a model pretrained outside it (copied in, or
    before timings were kept) contributes the time its own metrics log measured (tokens over tokens/s).
    """
    path = run_dir / "timings.json"
    times: dict[str, float] = read_json(path) if path.is_file() else {}
    by_kind: dict[str, float] = {}
    for name, seconds in times.items():
        kind = name.split(":", 1)[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + float(seconds)
    from_logs = []
    for metrics in sorted(run_dir.glob("models/*/metrics.jsonl")):
        tag = metrics.parent.name
        if f"pretrain:{tag}" in times:
            continue
        seen, seconds = 0.0, 0.0
        for row in read_jsonl(metrics):
            if row.get("tokens_per_s") and row.get("tokens_seen"):
                seconds += (float(row["tokens_seen"]) - seen) / float(row["tokens_per_s"])
                seen = float(row["tokens_seen"])
        if seconds:
            by_kind["pretrain"] = by_kind.get("pretrain", 0.0) + seconds
            from_logs.append(tag)
    return {
        "total_s": round(sum(by_kind.values()), 1),
        "by_kind_s": {k: round(v, 1) for k, v in by_kind.items()},
        "pretrain_from_metrics_log": from_logs,
    }


@dataclass
class Layout:
    """What the report compares: levels, sizes, methods, selections and probes in reading order, the two
    levels of the frequency effect, and parameters per size."""

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
        return cls(
            levels=levels,
            sizes=sizes,
            methods=_ordered(v["method"], list(scfg.get("methods", []))),
            selections=_ordered(v["selection"], ["known", "all"]),
            probes=_ordered(v["probe"], ["question", "paraphrase", "bio"]),
            high=high_and_low(levels)[0],
            low=high_and_low(levels)[1],
            params=parameter_counts(runs, sizes),
        )


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"RUN_DIR {run_dir}: no such directory")
    study = read_json(run_dir / "study.json") if (run_dir / "study.json").is_file() else {"config": {}}
    runs = unlearn_runs(run_dir)
    try:
        traj = load_trajectories(runs)
    except DataError as err:
        raise DataError(f"{run_dir}: {err}") from None
    v = item_verdicts(traj, float(study_option(study, "gen_threshold", section="evaluate")))
    lay = Layout.of(v, study, runs)
    t, headlines, findings = analyse(v, lay, study)
    t["frequency_only_baseline"] = frequency_only_baseline(run_dir)
    t["parameters"] = pd.DataFrame({"size": list(lay.params), "parameters": list(lay.params.values())})
    t["pretraining_knowledge"] = pretraining_knowledge(run_dir, lay.params)
    t["utility"] = load_utility(run_dir, runs)
    notes = [f"Skipped {s}" for s in skipped_runs(runs)] + _non_finite_note(traj)

    final = Path(out_dir) if out_dir is not None else run_dir / "report"
    # Written as one set (report.html last): a full disk or a kill leaves the previous report whole.
    with output_set(final, None, "report.html", kind="report") as out:
        for name in TABLES:
            with atomic_open(out / f"{name}.csv") as fh:
                t[name].to_csv(fh, index=False)
        lead, more = _lead_figures(t, lay, out), _more_figures(t, traj, lay, out)
        info = build_info(study["config"], study["config"].get("study", {}).get("seeds"), study)
        info["wall_time"] = wall_time(run_dir)
        _write_findings(out, t, findings, notes, lay, info, headlines)
        page = Page(
            findings, notes, lead, t["verdicts"], t["frequency_only_baseline"], _full_tables(t), more, info
        )
        with atomic_open(out / "report.md") as fh:
            fh.write(page.markdown())
        with atomic_open(out / "report.html") as fh:
            fh.write(page.html())
        attacks.add_to_report(run_dir, out)
    return final


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


def _lead_figures(t: dict[str, pd.DataFrame], lay: Layout, out: Path) -> list[tuple[str, str, bytes]]:
    """The figures that carry the findings, first on the page."""
    lead: list[tuple[str, str, bytes]] = [
        (
            "frequency_effect.png",
            f"Frequency effect per model size and method: net drop of {lay.high} minus net drop of {lay.low} "
            "(net drop = 1 - normalised AUC of the target items minus that of the control items of the same "
            "level), all items known at the start and margin-matched items, with 95% bootstrap intervals "
            "over items; below zero = frequent facts are harder to unlearn. n = target items (high + low).",
            plots.save(
                plots.frequency_effect(t["frequency_effect"], lay.high, lay.low), out / "frequency_effect.png"
            ),
        ),
        (
            "misalignment.png",
            "Misalignment by model size: among items generated before unlearning and no longer generated at "
            f"the first step where the targets' normalised accuracy is <= {estimands.READ_LEVELS[0]}, the share "
            "still preferred by likelihood (three views; raw share, frequency levels averaged in black), with "
            "95% hierarchical bootstrap intervals; n = target items no longer generated.",
            plots.save(
                plots.misalignment(t["misalignment"], lay.levels, lay.sizes), out / "misalignment.png"
            ),
        ),
    ]
    curves_first: list[tuple[str, str, bytes]] = []
    if len(t["dose_response"]):
        curves_first.append(
            (
                "dose_response.png",
                "Finding 1 as a dose-response: per level, net drop (1 - normalised AUC of the target items "
                "minus that of the control items of the same level) against the level's pre-training "
                "frequency on a log axis, per model size and method, with 95% bootstrap intervals over items "
                "and the least-squares line whose slope (per e-fold of frequency) and 95% interval the legend "
                "gives; a falling line means frequent facts are harder to unlearn.",
                plots.save(
                    plots.dose_response(t["dose_points"], t["dose_response"], lay.sizes),
                    out / "dose_response.png",
                ),
            )
        )
    if len(t["size_trend"]):
        curves_first.append(
            (
                "size_trend.png",
                "Finding 2 as a curve: the share of known items no longer generated but still ranked first, "
                f"read where the targets' normalised accuracy first is <= {estimands.READ_LEVELS[0]} (frequency "
                "levels averaged), against parameters on a log axis, per method, with 95% hierarchical bootstrap "
                "intervals and the least-squares slope per e-fold of parameters; a rising line means "
                "misalignment grows with size.",
                plots.save(
                    plots.size_trend(t["misalignment"], t["size_trend"], lay.params), out / "size_trend.png"
                ),
            )
        )
    return curves_first + lead


def _more_figures(
    t: dict[str, pd.DataFrame], traj: pd.DataFrame, lay: Layout, out: Path
) -> list[tuple[str, str, bytes]]:
    """Trajectories per selection and probe, and the item scatter."""
    more: list[tuple[str, str, bytes]] = []
    for selection in lay.selections:
        for probe in lay.probes:
            name = f"trajectories_{selection}_{probe}.png"
            fig, n_items = plots.trajectories(
                t["curves"], lay.levels, lay.sizes, lay.methods, selection, probe
            )
            more.append(
                (
                    name,
                    f"Normalised generation accuracy over unlearning steps ({selection} selection, {probe} probe): "
                    "target (solid), control (dotted) and retain (dashed) items known at the start, pooled over "
                    f"seeds, with 95% Wilson bands; {n_items} item trajectories in all.",
                    plots.save(fig, out / name),
                )
            )
    points = scatter_points(traj)
    if len(points):
        more.append(
            (
                "scatter.png",
                "Probability vs generation score per target item, before and after unlearning "
                f"({points['item_id'].nunique()} items, question probe).",
                plots.save(plots.scatter(points, lay.levels), out / "scatter.png"),
            )
        )

    return more


def _write_findings(
    out: Path,
    t: dict[str, pd.DataFrame],
    findings: list[str],
    notes: list[str],
    lay: Layout,
    info: dict[str, Any],
    headlines: list[Headline],
) -> None:
    items = t["items"]
    write_json(
        out / "findings.json",
        {
            "headlines": [h.record() for h in headlines],
            "findings": findings,
            "notes": notes,
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
            "run_info": info,
        },
    )


def _full_tables(t: dict[str, pd.DataFrame]) -> list[tuple[str, pd.DataFrame, str]]:
    """The full tables, collapsed in the HTML page: (title, table, note)."""
    full = [
        ("Frequency effect (all cells; matched = margin-matched)", t["frequency_effect"], EFFECT_NOTE),
        ("Misalignment by cell and level", t["misalignment"], MIS_NOTE),
        ("Misalignment against model size", t["size_trend"], TREND_NOTE),
        ("Per level (normalised curves)", t["headline"], HEAD_NOTE),
        ("Frequency as a dose-response (slopes)", t["dose_response"], DOSE_NOTE),
        ("Frequency as a dose-response (points)", t["dose_points"], ""),
        ("Model sizes", t["parameters"], ""),
        ("Pretraining knowledge per model", t["pretraining_knowledge"], KNOWLEDGE_NOTE),
    ]
    if len(t["utility"]):
        full.append(("Utility (lm-eval)", t["utility"], ""))
    return full


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()}
        for row in df.to_dict(orient="records")
    ]


VERDICT_NOTE = (
    "One row per model size and method, `known` selection, trained question. Net drop = 1 - normalised AUC "
    "of the target items minus the same for control items of the level; effect = high minus low (negative: "
    "frequent facts are harder to unlearn), 95% bootstrap interval over items; matched = items paired on "
    "baseline margin; misaligned = control-subtracted P(still ranked first | no longer generated), levels pooled."
)
EFFECT_NOTE = (
    "`effect_lo`..`effect_hi`: 95% expanded percentile bootstrap over items; `effect_seed_lo`..`_hi`: "
    "t-interval over seeds. `all` selections and runs without a control arm are descriptive."
)
MIS_NOTE = "Shares among items no longer generated at the matched forgetting step; `diff` = target - control."
DOSE_NOTE = (
    "Least-squares slope of each level's net drop (target minus control) against log frequency; 95% "
    "bootstrap interval over items, seed interval a t-interval of per-seed slopes."
)
KNOWLEDGE_NOTE = (
    "Share of each group's birth cities the pretrained model generated (the shared `known` rule): sizes "
    "compared for Finding 2 should know forget_high about equally, or size is confounded with how well "
    "the people were learned."
)
TREND_NOTE = "Least-squares slope of `diff` against log(parameters); 95% bootstrap interval over items."
HEAD_NOTE = (
    "`forget_start` and `forget_auc_raw`: raw accuracy over all items (descriptive). `forget_auc`: normalised "
    "AUC over items known at the start. `km_median_steps`: Kaplan-Meier median steps to the threshold, runs "
    "that never reached it censored (empty: not reached)."
)


def _wall_line(wall: dict[str, Any] | None) -> str:
    if not wall or not wall.get("total_s"):
        return "not recorded"
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in wall["by_kind_s"].items())
    line = f"{wall['total_s'] / 60:.1f} min of stage work ({parts} min)"
    if wall.get("pretrain_from_metrics_log"):
        line += f"; pretraining of {', '.join(wall['pretrain_from_metrics_log'])} from its metrics log"
    return line


class Page:
    """The report's content in its reading order, written as markdown or as one HTML page."""

    def __init__(self, findings, notes, lead, table, baseline, full, more, info) -> None:
        self.findings, self.notes, self.lead, self.table = findings, notes, lead, table
        self.baseline, self.full, self.more, self.info = baseline, full, more, info

    def _run_lines(self) -> list[str]:
        i = self.info
        return [
            f"command: {i['command']}",
            f"commit: {i['commit']}",
            f"report: {i.get('report_command', '')} at {i.get('report_commit', '')}",
            f"wall time: {_wall_line(i.get('wall_time'))}",
            f"hardware: {i['hardware']}",
            f"versions: {i['versions']}",
        ]

    def markdown(self) -> str:
        parts = ["# frequnlearn study report", "", "## Findings", ""]
        parts += [f"- {f}" for f in self.findings] + [f"- {n}" for n in self.notes]
        parts += [""] + [f"![{cap}]({name})\n\n_{cap}_\n" for name, cap, _ in self.lead]
        parts += ["## Verdicts", "", VERDICT_NOTE, "", prose.as_markdown(self.table), ""]
        if len(self.baseline):
            parts += [
                "## Frequency-only baseline",
                "",
                BASELINE_NOTE,
                "",
                prose.as_markdown(self.baseline),
                "",
            ]
        for title, df, note in self.full:
            parts += [f"## {title}", ""] + ([note, ""] if note else []) + [prose.as_markdown(df), ""]
        parts += ["## More figures", ""] + [f"![{cap}]({name})\n\n_{cap}_\n" for name, cap, _ in self.more]
        parts += ["## Run", "", "```", *self._run_lines(), "```", ""]
        return "\n".join(parts)

    def html(self) -> str:
        esc = html.escape

        def fig(cap: str, data: bytes) -> str:
            return (
                f'<figure><img alt="{esc(cap)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                f"<figcaption>{esc(cap)}</figcaption></figure>"
            )

        def details(title: str, body: str) -> str:
            return f"<details><summary>{esc(title)}</summary>{body}</details>"

        findings = "".join(f"<li>{esc(f)}</li>" for f in self.findings + self.notes)
        full = "".join(
            details(title, (f"<p>{esc(note)}</p>" if note else "") + _table_html(df))
            for title, df, note in self.full
        )
        baseline = (
            f"<h2>Frequency-only baseline</h2><p>{esc(BASELINE_NOTE)}</p>{_table_html(self.baseline)}"
            if len(self.baseline)
            else ""
        )
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>frequnlearn study report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; margin: 0.3em 0; }} h2 {{ font-size: 1.2em; }}
ul.findings {{ font-size: 14px; line-height: 1.35; padding-left: 1.2em; }}
.lead {{ display: flex; flex-wrap: wrap; gap: 1em; }} .lead figure {{ flex: 1 1 420px; margin: 0; }}
.lead figure + figure {{ flex: 1.7 1 560px; }} p {{ font-size: 14px; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
table.t {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1em; }}
table.t th, table.t td {{ border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }}
table.t th {{ background: #f4f4f4; position: sticky; top: 0; }}
details {{ margin: 0.4em 0; }} summary {{ cursor: pointer; font-weight: 600; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; height: auto; }} figcaption {{ font-size: 13px; color: #555; }}
pre {{ white-space: pre-wrap; word-break: break-all; font-size: 12px; }}
@media print {{ figure {{ page-break-inside: avoid; }} details {{ display: block; }} }}
</style></head><body>
<h1>frequnlearn study report</h1>
<ul class="findings">{findings}</ul>
<div class="lead">{"".join(fig(cap, data) for _, cap, data in self.lead)}</div>
<h2>Verdicts</h2><p>{esc(VERDICT_NOTE)}</p>{_table_html(self.table)}
{baseline}
<h2>Full tables</h2>{full}
{details("More figures: trajectories and item scatter", "".join(fig(cap, data) for _, cap, data in self.more))}
<h2>Run</h2><pre>{esc(chr(10).join(self._run_lines()))}</pre>
</body></html>
"""


BASELINE_NOTE = (
    "Top-1 rate of ranking each question's candidates by their corpus count alone (no model), against "
    "chance: how much of the ranking a model could get from value frequencies without knowing the person."
)


def _table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(no rows)</em></p>"
    table = df.to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="", border=0, classes="t")
    return f'<div class="scroll">{table}</div>'
