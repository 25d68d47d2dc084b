"""The report's robustness section: what came back after each attack, and how far from never-learned.

Reads the per-item scores the study's `oracle` and `attack` stages wrote, turns them into verdicts with
the one "known" definition, and writes attacks.csv, forget_quality.csv and attacks.png into the report
directory; the section is appended to report.md and report.html. A study without attacks or oracle
adds nothing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.attacks.quality import above_oracle, forget_quality, recovery
from frequnlearn.records import atomic_open, read_json, read_parquet
from frequnlearn.report import estimands, plots, prose
from frequnlearn.report.runs import ATTACKS_DIR, UnlearnRun, study_option, unlearn_runs

RELEARN_ORDER = ["targeted", "benign", "bio"]
ATTACK_ORDER = [*RELEARN_ORDER, "int8", "int4", "nf4"]
IDENT = ["size", "method", "selection", "level"]
# Columns the attack stage adds to evaluation rows.
ATTACK_COLUMNS = ["attack", "scheme", "k", "attacked"]


def _known(scores: pd.DataFrame, probe: str, gen_threshold: float) -> pd.DataFrame:
    """Verdicts of one model's rows (one attack step, or one model's baseline) on `probe`."""
    from frequnlearn.evaluate.misalignment import verdicts

    v = verdicts(
        scores.drop(columns=[c for c in ATTACK_COLUMNS if c in scores.columns]), gen_threshold=gen_threshold
    )
    return v[v["probe"] == probe]


def load_attack_scores(runs: list[UnlearnRun]) -> pd.DataFrame:
    """Every attacked run's per-item rows, with the unlearning run's identity (its record) as columns."""
    frames = [
        estimands.with_run_identity(read_parquet(run.path / ATTACKS_DIR / "scores.parquet"), run.identity)
        for run in runs
        if (run.path / ATTACKS_DIR / "scores.parquet").is_file()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _model_known(run_dir: Path, kind: str, probe: str, gen_threshold: float) -> pd.DataFrame:
    """(model, item_id) -> known and truth_ratio, from each model's baseline or oracle scores."""
    frames = []
    for path in sorted(run_dir.glob(f"models/*/{kind}/scores.parquet")):
        v = _known(read_parquet(path), probe, gen_threshold)
        frames.append(
            pd.DataFrame(
                {
                    "model": path.parent.parent.name,
                    "item_id": v["item_id"].to_numpy(),
                    "known": v["gen_known"].astype(bool).to_numpy(),
                    "truth_ratio": v["truth_ratio"].to_numpy(),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "item_id", "known", "truth_ratio"])
    )


def recovery_table(
    attacks: pd.DataFrame, before: pd.DataFrame, oracle: pd.DataFrame, probe: str, gen_threshold: float
) -> pd.DataFrame:
    """One row per (run, attack, k): the recovery shares of `quality.recovery` plus the oracle floor."""
    rows = []
    if attacks.empty:
        return pd.DataFrame()
    before_by = before.set_index(["model", "item_id"])["known"]
    oracle_by = oracle.set_index(["model", "item_id"])["known"] if len(oracle) else pd.Series(dtype=bool)
    for (run_id, attack), grp in attacks.groupby(["run_id", "attack"], sort=False):
        model = grp["model"].iloc[0]
        ident = {c: grp[c].iloc[0] for c in ["size", "seed", "method", "selection", "level"]}
        known = {
            (int(k), bool(attacked)): _known(sub, probe, gen_threshold)
            .set_index("item_id")["gen_known"]
            .astype(bool)
            for (k, attacked), sub in grp.groupby(["k", "attacked"], sort=True)
        }
        unlearned = next(v for (_, attacked), v in known.items() if not attacked)
        for (k, attacked_flag), attacked in known.items():
            if not attacked_flag:
                continue
            ids = attacked.index
            known_before = pd.Series([before_by.get((model, i), math.nan) for i in ids], index=ids)
            rec = recovery(known_before, unlearned.reindex(ids), attacked)
            known_oracle = _share(oracle_by, model, list(ids))
            rows.append(
                {
                    **ident,
                    "run_id": run_id,
                    "attack": attack,
                    "k": k,
                    **rec,
                    "known_oracle": known_oracle,
                    "above_oracle": above_oracle(rec["known_attacked"], rec["known_before"], known_oracle),
                }
            )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (size, method, selection, level, attack, k)."""
    if table.empty:
        return table
    num = [
        "n_items",
        "known_before",
        "known_unlearned",
        "known_attacked",
        "known_oracle",
        "n_lost",
        "n_recovered",
        "recovered_share",
        "recovered_of_known",
        "above_oracle",
    ]
    out = table.groupby([*IDENT, "attack", "k"], sort=False)[num].mean().reset_index()
    for col in ("n_items", "n_lost", "n_recovered"):  # counts stay integers with a single seed
        if (out[col] == out[col].round()).all():
            out[col] = out[col].astype(int)
    out.insert(len(IDENT) + 2, "seeds", table.groupby([*IDENT, "attack", "k"], sort=False).size().to_numpy())
    return out


def _share(flags: pd.Series, model: str, ids: Sequence[str]) -> float:
    """Mean of a (model, item_id)-indexed flag over `ids` (NaN when none is there)."""
    got = [float(flags[(model, i)]) for i in ids if (model, i) in flags.index]
    return sum(got) / len(got) if got else math.nan


def quality_table(
    run_dir: Path, oracle: pd.DataFrame, before: pd.DataFrame, probe: str, gen_threshold: float
) -> pd.DataFrame:
    """Per run, the forget items against the never-learned floor: known before, at the end of unlearning
    and by the oracle, and forget quality: KS test of their truth ratios against the oracle's, at the
    end of unlearning and (as a reference the test must reject) before it."""
    rows = []
    if oracle.empty:
        return pd.DataFrame()
    tr_oracle = oracle.set_index(["model", "item_id"])["truth_ratio"]
    tr_before = before.set_index(["model", "item_id"])["truth_ratio"]
    known_oracle = oracle.set_index(["model", "item_id"])["known"]
    known_before = before.set_index(["model", "item_id"])["known"]
    for run in unlearn_runs(run_dir):
        traj = run.path / "trajectory.parquet"
        if run.skipped or not traj.is_file():
            continue
        info = run.identity
        t = read_parquet(traj)
        t = t[(t["role"] == "forget") & (t["step"] == t["step"].max())]
        end = _known(t, probe, gen_threshold)
        model = info["model"]
        ids = list(end["item_id"])
        orc = [tr_oracle.get((model, i), math.nan) for i in ids]
        bef = [tr_before.get((model, i), math.nan) for i in ids]
        ks_end, p_end, n = forget_quality(end["truth_ratio"], orc)
        ks_bef, p_bef, _ = forget_quality(bef, orc)
        rows.append(
            {
                "size": info["size"],
                "method": info["method"],
                "selection": info["selection"],
                "level": str(info["level"]),
                "seed": int(info["seed"]),
                "n_items": n,
                "known_before": _share(known_before, model, ids),
                "known_unlearned": float(end["gen_known"].mean()) if len(end) else math.nan,
                "known_oracle": _share(known_oracle, model, ids),
                "truth_ratio_before": float(pd.Series(bef, dtype=float).median()),
                "truth_ratio_unlearned": float(end["truth_ratio"].median()),
                "truth_ratio_oracle": float(pd.Series(orc, dtype=float).median()),
                "ks_before": ks_bef,
                "p_before": p_bef,
                "ks_unlearned": ks_end,
                "forget_quality": p_end,
            }
        )
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, levels: Sequence[str], sizes: Sequence[str]) -> Any:
    """Known after each attack (relearning at its largest step count), by level, oracle floor dashed."""
    import matplotlib.pyplot as plt

    last = summary[summary["k"] == summary.groupby(["attack"])["k"].transform("max")]
    attacks = [a for a in ATTACK_ORDER if a in set(last["attack"])]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(1.5 + 1.1 * len(attacks) * len(sizes), 3.4), squeeze=False
    )
    width = 0.8 / max(1, len(levels))
    for j, size in enumerate(sizes):
        ax = axes[0][j]
        sub = last[last["size"] == size]
        for n, level in enumerate(levels):
            color = plots._color(levels, level)
            lv = sub[sub["level"] == level]
            xs = [i + n * width for i in range(len(attacks))]
            vals = [float(lv[lv["attack"] == a]["known_attacked"].mean()) for a in attacks]
            before = [float(lv[lv["attack"] == a]["known_unlearned"].mean()) for a in attacks]
            ax.bar(xs, vals, width=width, color=color, label=f"{level}: after attack")
            ax.scatter(
                xs,
                before,
                marker="_",
                s=200,
                color="black",
                zorder=3,
                label="right after unlearning" if n == 0 else None,
            )
            floor = lv["known_oracle"].mean()
            if not math.isnan(floor):
                ax.axhline(floor, color=color, ls="--", lw=1, label=f"{level}: never-learned")
        labels = [
            f"{a} ({int(last[last['attack'] == a]['k'].max())})" if a in RELEARN_ORDER else a for a in attacks
        ]
        ax.set_xticks([i + width * (len(levels) - 1) / 2 for i in range(len(attacks))])
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylim(0, 1.03)
        ax.set_title(size, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if j == 0:
            ax.set_ylabel("forget items known")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("Recovered after attack (relearning: steps in brackets)", fontsize=11)
    fig.tight_layout()
    return fig


def add_to_report(run_dir: str | Path, out: str | Path) -> None:
    """Write the robustness tables and plot into `out` and append the section to report.md/.html."""
    run_dir, out = Path(run_dir), Path(out)
    study = read_json(run_dir / "study.json") if (run_dir / "study.json").is_file() else {"config": {}}
    gen_threshold = float(study_option(study, "gen_threshold", section="evaluate"))
    probe = "paraphrase" if study_option(study, "setting") == "real" else "question"
    attacks = load_attack_scores(unlearn_runs(run_dir))
    oracle = _model_known(run_dir, "oracle", probe, gen_threshold)
    if attacks.empty and oracle.empty:
        return
    before = _model_known(run_dir, "baseline", probe, gen_threshold)
    table = summarise(recovery_table(attacks, before, oracle, probe, gen_threshold))
    quality = quality_table(run_dir, oracle, before, probe, gen_threshold)
    schemes = {}
    for path in sorted(run_dir.glob("unlearn/**/attacks/attacks.json")):
        schemes.update(read_json(path).get("schemes", {}))
    for name, df in [("attacks", table), ("forget_quality", quality)]:
        with atomic_open(out / f"{name}.csv") as fh:
            df.to_csv(fh, index=False)
    figure = None
    if len(table):
        levels = [lv for lv in study_option(study, "levels") if lv in set(table["level"])] or sorted(
            set(table["level"])
        )
        sizes = [s for s in study_option(study, "model_sizes") if s in set(table["size"])] or sorted(
            set(table["size"])
        )
        plots.save(plot(table, levels, sizes), out / "attacks.png")
        figure = "attacks.png"
    md = _markdown(table, quality, schemes, figure, probe)
    page = _html(table, quality, schemes, out / figure if figure else None, probe)
    for name, text in [("report.md", md), ("report.html", page)]:
        path = out / name
        if not path.is_file():
            continue
        old = path.read_text()
        new = (
            old.replace("</body>", text + "</body>")
            if name.endswith(".html")
            else old.rstrip("\n") + "\n\n" + text
        )
        with atomic_open(path) as fh:
            fh.write(new)


EXPLAIN = (
    "Items: the forget items of each run known before unlearning is what `known_before` counts; the targeted "
    "attack measures the half it did not train on. An item is lost when it was known before and not right "
    "after unlearning, recovered when it is lost and known again after the attack. `recovered_share` = "
    "recovered / lost; `recovered_of_known` = recovered / known before; `known_oracle` = the share a model "
    "pretrained without these biographies knows; `above_oracle` = (known after attack - oracle) / (known "
    "before - oracle). Probe: {probe}."
)
QUALITY = (
    "Forget items at the end of each unlearning run beside the never-learned floor (`known_oracle`: the "
    "share a model pretrained without their biographies knows). Forget quality (as in TOFU): p-value of a two-sample Kolmogorov-Smirnov test between the forget items' "
    "truth ratios under the unlearned model (last step) and under the never-learned model; high means the two "
    "cannot be told apart. `p_before` is the same test before unlearning."
)


def _markdown(
    table: pd.DataFrame, quality: pd.DataFrame, schemes: dict[str, str], figure: str | None, probe: str
) -> str:
    parts = ["## Recovered after attack", "", EXPLAIN.format(probe=probe), ""]
    parts += [prose.as_markdown(table), ""]
    if schemes:
        parts += ["Quantization schemes:", ""] + [f"- {k}: {v}" for k, v in schemes.items()] + [""]
    if len(quality):
        parts += [
            "## Forget quality against the never-learned model",
            "",
            QUALITY,
            "",
            prose.as_markdown(quality),
            "",
        ]
    if figure:
        parts += [f"![Recovered after attack]({figure})", ""]
    return "\n".join(parts)


def _html(
    table: pd.DataFrame, quality: pd.DataFrame, schemes: dict[str, str], figure: Path | None, probe: str
) -> str:
    import base64

    def t(df: pd.DataFrame) -> str:
        return df.to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="", border=0, classes="t")

    parts = [f"<h2>Recovered after attack</h2><p>{html.escape(EXPLAIN.format(probe=probe))}</p>"]
    if len(table):
        parts.append(t(table))
    if schemes:
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in schemes.items())
            + "</ul>"
        )
    if len(quality):
        parts.append(
            f"<h2>Forget quality against the never-learned model</h2><p>{html.escape(QUALITY)}</p>{t(quality)}"
        )
    if figure:
        data = base64.b64encode(figure.read_bytes()).decode()
        parts.append(
            f'<figure><img alt="Recovered after attack" src="data:image/png;base64,{data}"></figure>'
        )
    return "\n".join(parts) + "\n"
