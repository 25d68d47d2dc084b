"""The robustness stages of a study: an oracle per pretrained model, attacks per unlearning run.

`oracle` (MODEL_DIR/oracle/): pretrain the same preset with the same recipe and seed on the corpus
without the studied levels' biographies (RUN_DIR/data-oracle/), with the original model's tokenizer so
token ids match, then score every studied item (scores.parquet). `attack` (UNLEARN_DIR/attacks/):
relearning and quantization attacks on one unlearned model; scores.parquet holds the measured items'
rows before (`attacked` False) and after each attack, attacks.json what was run and what was skipped.
Both are keyed like every other stage, so a rerun skips them when nothing they depend on changed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from frequnlearn.attacks.quantize import QuantizationUnavailable, check_available, describe, quantize_model
from frequnlearn.attacks.relearn import (
    benign_items,
    bio_texts,
    qa_examples,
    relearn,
    split_targeted,
    text_examples,
)
from frequnlearn.config import to_dict
from frequnlearn.config.attacks import bio_attribute
from frequnlearn.records import QAItem, read_json, write_json

ORACLE_DATA = "data-oracle"
ATTACKS_DIR = "attacks"


def oracle_dir(study: Any, tag: str) -> Path:
    return study.model_dir(tag) / "oracle"


def _oracle_model_key(study: Any, params: dict[str, Any]) -> str:
    from frequnlearn.records import stage_key

    return stage_key("oracle", study.model_key(params), study.s.compare_by, study.s.levels)


def oracle_key(study: Any, params: dict[str, Any]) -> str:
    from frequnlearn.records import stage_key

    return stage_key(
        "oracle-scores", _oracle_model_key(params=params, study=study), study.baseline_key(params)
    )


def excluded_people(study: Any) -> set[Any]:
    """Every person with an item in one of the studied levels: their biographies leave the corpus."""
    from frequnlearn.data.generate import load_data_dir

    return {it.person_id for it in load_data_dir(study.data_dir).qa if _in_studied_level(study, it)}


def _in_studied_level(study: Any, item: Any) -> bool:
    """Whether an item belongs to a studied level (in the synthetic setting, only forget groups make levels)."""
    from frequnlearn.records import FORGET_GROUPS
    from frequnlearn.study.sets import level_of

    if study.s.setting == "synthetic" and item.group not in FORGET_GROUPS:
        return False
    return level_of(item, study.s.compare_by) in set(study.s.levels)


def run_oracle(study: Any, task: Any) -> None:
    import torch
    from transformers import AutoTokenizer

    from frequnlearn.attacks.oracle import write_oracle_data
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.pretrain import pretrain
    from frequnlearn.records import clear_if_stale, mark_done, run_info, stage_done, stage_key, write_parquet

    data_dir = study.run_dir / ORACLE_DATA
    data_key = stage_key("oracle-data", study.corpus_hash(), study.s.compare_by, study.s.levels)
    if not stage_done(data_dir, data_key):
        counts = write_oracle_data(study.data_dir, data_dir, excluded_people(study))
        mark_done(data_dir, data_key, counts)
    path = oracle_dir(study, task.name)
    clear_if_stale(path, _oracle_model_key(study, task.params))
    if not (path / "tokenizer_config.json").is_file():
        # The original model's tokenizer: the oracle must read the same token ids, not a BPE
        # trained on a corpus that lacks some names.
        AutoTokenizer.from_pretrained(study.model_dir(task.name), trust_remote_code=False).save_pretrained(
            path
        )
    threads = torch.get_num_threads()
    try:
        pretrain(data_dir, study.pretrain_cfg(task.params["size"], task.params["seed"]), path)
    finally:
        torch.set_num_threads(threads)
    model, tok = load_model_and_tokenizer(path, dtype=study.s.dtype)
    items, bios = study.all_items()
    scores = study.score_items(model, tok, items, bios, 0, f"{task.name}-oracle", f"{task.name}/oracle")
    write_parquet(scores, path / "scores.parquet", run_info(study.cfg, task.params.get("seed")))
    mark_done(path, oracle_key(study, task.params), {"model": task.name, **task.params})


def attack_key(study: Any, task: Any) -> str:
    from frequnlearn.records import stage_key
    from frequnlearn.study.plan import Task

    _, unlearn_key = study.path_and_key(Task("unlearn", task.name, params=task.params))
    # Which runs are attacked and whether there is an oracle do not change one run's attacks.
    own = {k: v for k, v in to_dict(study.cfg.attacks).items() if k not in ("oracle", "selections")}
    return stage_key("attack", unlearn_key, own, study.cfg.generate.n_templates)


def _eval_config(study: Any) -> Any:
    """The study's evaluation, restricted to the families the 'known' verdict reads (prob and gen)."""
    metrics = [m for m in study.cfg.evaluate.metrics if m in ("prob", "gen")]
    return dataclasses.replace(study.cfg.evaluate, metrics=metrics)


def run_attack(study: Any, task: Any) -> None:
    from frequnlearn.records import mark_done, run_info, write_parquet
    from frequnlearn.study.plan import Task

    p = task.params
    run_dir = study.unlearn_dir(task)
    path = run_dir / ATTACKS_DIR
    record = _run_record(run_dir)
    if not record.get("skipped") and not (run_dir / "model" / "config.json").is_file():
        # Unlearned without attacks, its weights were not kept: unlearn again (deterministic) to keep them.
        study.unlearn(Task("unlearn", task.name, params=p))
        record = _run_record(run_dir)
    if record.get("skipped"):
        path.mkdir(parents=True, exist_ok=True)
        mark_done(path, attack_key(study, task), {"task": task.name, **p, "not_attacked": record["skipped"]})
        return
    items, _ = study.all_items()
    by_id = {it.item_id: it for it in items}
    forget = [by_id[i] for i in read_json(run_dir / "sets.json")["forget"]]
    attacks: dict[str, Any] = {"task": task.name, "schemes": {}, "skipped": [], "trained_on": {}}
    measure = _measurer(study, task)
    frames = _relearn_attacks(study, task, forget, items, measure, attacks)
    frames += _quantize_attacks(study, task, forget, measure, attacks)
    path.mkdir(parents=True, exist_ok=True)
    if frames:
        scores = pd.concat(frames, ignore_index=True)
        scores["scheme"] = scores["attack"].map(attacks["schemes"]).fillna("")
        write_parquet(scores, path / "scores.parquet", run_info(study.cfg, p["seed"]))
    write_json(path / "attacks.json", attacks)
    mark_done(path, attack_key(study, task), {"task": task.name, **p})


def _measurer(study: Any, task: Any) -> Any:
    """measure(items, attack) -> eval_fn(model, tokenizer, k): the forget items' rows after k steps
    of `attack`, scored with the families the 'known' verdict reads."""
    from frequnlearn.evaluate.stage import score

    ecfg = _eval_config(study)

    def measure(items: list[QAItem], attack: str) -> Any:
        def fn(model: Any, tok: Any, k: int) -> pd.DataFrame:
            df = score(
                model,
                tok,
                items,
                ecfg,
                study.s.prompt_format,
                {},
                step=k,
                model_name=task.params["model"],
                run_id=task.name,
            )
            df["attack"] = attack
            df["role"] = "forget"
            return df

        return fn

    return measure


def _relearn_attacks(
    study: Any, task: Any, forget: list[QAItem], items: list[QAItem], measure: Any, attacks: dict[str, Any]
) -> list[pd.DataFrame]:
    """Each configured relearning attack from the unlearned weights, its rows at every k."""
    from frequnlearn.models.loading import load_model_and_tokenizer

    a, seed = study.cfg.attacks, task.params["seed"]
    frames = []
    for kind in a.relearn:
        model, tok = load_model_and_tokenizer(study.unlearn_dir(task) / "model", dtype=study.s.dtype)
        examples, measured, trained_on = _relearn_data(study, kind, tok, forget, items, seed)
        attacks["trained_on"][kind] = trained_on
        if not examples or not measured:
            attacks["skipped"].append(
                f"{kind}: {len(forget)} forget item(s) leave nothing to train on or measure"
            )
            continue
        df = relearn(
            model,
            tok,
            examples,
            a.relearn_steps,
            a.relearn_lr,
            a.relearn_batch_size,
            seed,
            measure(measured, kind),
        )
        df["attacked"] = df["k"] > 0
        frames.append(df)
    return frames


def _relearn_data(
    study: Any, kind: str, tok: Any, forget: list[QAItem], items: list[QAItem], seed: int
) -> tuple[list[Any], list[QAItem], Any]:
    """(training examples, items measured, what was trained on) of one relearning attack."""
    fmt = _fmt(study)
    if kind == "targeted":
        train, measured = split_targeted(forget, seed)
        return qa_examples(tok, fmt, train), measured, [it.item_id for it in train]
    if kind == "benign":
        pool = [it for it in items if not _in_studied_level(study, it)]
        train = benign_items(pool, max(1, len(forget) // 2), seed)
        return qa_examples(tok, fmt, train), forget, [it.item_id for it in train]
    from frequnlearn.data.generate import load_data_dir

    attr = bio_attribute(study.cfg.attacks, study.s.attribute, list(study.cfg.generate.attributes))
    wanted = {it.person_id for it in forget}
    people = [pr for pr in load_data_dir(study.data_dir).people if pr.person_id in wanted]
    texts = bio_texts(people, attr, study.cfg.generate.n_templates, seed)
    return text_examples(tok, texts), forget, {"attribute": attr, "texts": texts}


def _quantize_attacks(
    study: Any, task: Any, forget: list[QAItem], measure: Any, attacks: dict[str, Any]
) -> list[pd.DataFrame]:
    """Each available quantization scheme: the forget items' rows before and after."""
    from frequnlearn.models.loading import load_model_and_tokenizer

    a = study.cfg.attacks
    schemes = []
    for scheme in a.quantize:
        try:
            check_available(scheme)
        except QuantizationUnavailable as why:
            attacks["skipped"].append(str(why))
            print(f"{task.name}: skipping {scheme}: {why}", file=sys.stderr)
            continue
        schemes.append(scheme)
    if not schemes:
        return []
    model_dir = study.unlearn_dir(task) / "model"
    model, tok = load_model_and_tokenizer(model_dir, dtype=study.s.dtype)
    before = measure(forget, "")(model, tok, 0)
    frames = []
    for scheme in schemes:
        attacks["schemes"][scheme] = describe(scheme, a.group_size)
        q = quantize_model(model, scheme, a.group_size, model_dir)
        after = measure(forget, scheme)(q, tok, 0)
        frames += [before.assign(attack=scheme, k=0, attacked=False), after.assign(k=0, attacked=True)]
        del q
    return frames


def _run_record(run_dir: Path) -> dict[str, Any]:
    """The unlearning run's record (run.json), which says whether the study skipped it."""
    path = run_dir / "run.json"
    return read_json(path) if path.is_file() else {}


def _fmt(study: Any) -> Any:
    from frequnlearn.models.prompts import get_prompt_format

    return get_prompt_format(study.s.prompt_format)
