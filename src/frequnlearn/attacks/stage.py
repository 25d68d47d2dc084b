"""The robustness stages: an oracle per pretrained model, attacks per unlearning run.

`run_oracle`: the never-learned reference. The same preset pretrained with the same recipe and seed
on the data directory without the studied levels' biographies (`attacks.oracle.run_oracle_data`),
with the original model's tokenizer (so token ids match), then every studied item scored as in a
baseline. `run_attack`: relearning and quantization attacks on one unlearned model; scores.parquet
holds the measured items' rows before (`attacked` False) and after each attack, attacks.json what was
run and what was skipped.

Both take what they read explicitly (paths, configs, items, keys) and write the done marker of their
own outputs; they know nothing of the study that calls them.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
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
from frequnlearn.config.attacks import AttacksConfig
from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.records import (
    STAGE_FILE,
    BioPrompt,
    Person,
    QAItem,
    clear_if_stale,
    mark_done,
    output_set,
    stage_done,
    write_json,
    write_parquet,
)

SCORES = "scores.parquet"
RECORD = "attacks.json"
# What one attack stage writes; replaced together, the done marker last.
OUTPUTS = (SCORES, RECORD, STAGE_FILE)


@dataclass
class OracleInputs:
    """What the oracle of one pretrained model reads.

    `oracle_data` is the model's data directory without the studied people's biographies
    (`attacks.oracle.run_oracle_data`), `model_dir` the model (whose tokenizer the oracle keeps) and
    `pretrain` its recipe. The oracle is scored on `items` as a baseline is (at step 0, without
    utility), with `record` (config, seed, versions; under `run` the model's identity).
    """

    oracle_data: Path
    model_dir: Path
    pretrain: PretrainConfig
    items: list[QAItem]
    bios: dict[str, BioPrompt]
    evaluate: EvalConfig
    prompt_format: str
    dtype: str
    record: dict[str, Any]


def run_oracle(inputs: OracleInputs, model_out: Path, scores_out: Path, key: str) -> Path:
    """Pretrain the never-learned model into `model_out` (resumable, marked by pretraining itself) and
    score it into `scores_out` (marked done for `key`); returns `scores_out`."""
    import torch
    from transformers import AutoTokenizer

    from frequnlearn.evaluate.stage import score
    from frequnlearn.models.loading import load_model_and_tokenizer
    from frequnlearn.pretrain import pretrain, run_key
    from frequnlearn.pretrain.data import corpus_sha256

    model_key = run_key(inputs.pretrain, corpus_sha256(inputs.oracle_data))
    if not stage_done(model_out, model_key):  # pretraining marks a finished oracle itself
        clear_if_stale(model_out, model_key)
    if not (model_out / "tokenizer_config.json").is_file():
        # The original model's tokenizer: the oracle must read the same token ids, not a BPE
        # trained on a corpus that lacks some names.
        AutoTokenizer.from_pretrained(inputs.model_dir, trust_remote_code=False).save_pretrained(model_out)
    threads = torch.get_num_threads()
    try:
        pretrain(inputs.oracle_data, inputs.pretrain, model_out)
    finally:
        torch.set_num_threads(threads)
    model, tok = load_model_and_tokenizer(model_out, dtype=inputs.dtype)
    ident = inputs.record.get("run", {})
    tag = str(ident.get("model", ""))
    scores = score(
        model,
        tok,
        inputs.items,
        inputs.evaluate,
        inputs.prompt_format,
        inputs.bios,
        step=0,
        model_name=f"{tag}-oracle",
        run_id=f"{tag}/oracle",
    )
    scores_out.mkdir(parents=True, exist_ok=True)
    write_parquet(scores, scores_out / SCORES, inputs.record)
    mark_done(scores_out, key, ident)
    return scores_out


@dataclass
class AttackInputs:
    """What the attacks on one unlearning run read.

    `model_dir` holds the unlearned weights; `forget` the run's forget items; `benign_pool` QA items of
    people never in a studied level (the benign attack trains on some); `people` the forget items'
    people (the bio attack writes sentences about `bio_attribute` of them). `identity` names the run
    in attacks.json and the marker; `record` goes into scores.parquet.
    """

    model_dir: Path
    forget: list[QAItem]
    benign_pool: list[QAItem]
    people: list[Person]
    config: AttacksConfig
    bio_attribute: str | None
    n_templates: int | None
    evaluate: EvalConfig
    prompt_format: str
    dtype: str
    seed: int
    identity: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


def run_attack(inputs: AttackInputs, out: Path, key: str) -> Path:
    """Every configured attack on the unlearned model; scores.parquet and attacks.json into `out`, then
    the done marker for `key`."""
    name = str(inputs.identity.get("task", ""))
    attacks: dict[str, Any] = {"task": name, "schemes": {}, "skipped": [], "trained_on": {}}
    measure = _measurer(inputs)
    frames = _relearn_attacks(inputs, measure, attacks)
    frames += _quantize_attacks(inputs, measure, attacks)
    out.mkdir(parents=True, exist_ok=True)
    with output_set(out, OUTPUTS, STAGE_FILE) as scratch:
        if frames:
            scores = pd.concat(frames, ignore_index=True)
            scores["scheme"] = scores["attack"].map(attacks["schemes"]).fillna("")
            write_parquet(scores, scratch / SCORES, inputs.record)
        write_json(scratch / RECORD, attacks)
        mark_done(scratch, key, inputs.identity)
    return out


def record_not_attacked(out: Path, key: str, identity: dict[str, Any], why: str) -> None:
    """The marker of a run that could not be attacked (the study could not make it) says why; an
    earlier attack's files there are removed."""
    out.mkdir(parents=True, exist_ok=True)
    with output_set(out, OUTPUTS, STAGE_FILE) as scratch:
        mark_done(scratch, key, {**identity, "not_attacked": why})


def _measurer(inputs: AttackInputs) -> Any:
    """measure(items, attack) -> eval_fn(model, tokenizer, k): the forget items' rows after k steps
    of `attack`, scored with the families the 'known' verdict reads (prob and gen)."""
    from frequnlearn.evaluate.stage import score

    ecfg = dataclasses.replace(
        inputs.evaluate, metrics=[m for m in inputs.evaluate.metrics if m in ("prob", "gen")]
    )
    model_name, run_id = str(inputs.identity.get("model", "")), str(inputs.identity.get("task", ""))

    def measure(items: list[QAItem], attack: str) -> Any:
        def fn(model: Any, tok: Any, k: int) -> pd.DataFrame:
            df = score(
                model,
                tok,
                items,
                ecfg,
                inputs.prompt_format,
                {},
                step=k,
                model_name=model_name,
                run_id=run_id,
            )
            df["attack"] = attack
            df["role"] = "forget"
            return df

        return fn

    return measure


def _relearn_attacks(inputs: AttackInputs, measure: Any, attacks: dict[str, Any]) -> list[pd.DataFrame]:
    """Each configured relearning attack from the unlearned weights, its rows at every k."""
    from frequnlearn.models.loading import load_model_and_tokenizer

    a, frames = inputs.config, []
    for kind in a.relearn:
        model, tok = load_model_and_tokenizer(inputs.model_dir, dtype=inputs.dtype)
        examples, measured, trained_on = _relearn_data(inputs, kind, tok)
        attacks["trained_on"][kind] = trained_on
        if not examples or not measured:
            attacks["skipped"].append(
                f"{kind}: {len(inputs.forget)} forget item(s) leave nothing to train on or measure"
            )
            continue
        df = relearn(
            model,
            tok,
            examples,
            a.relearn_steps,
            a.relearn_lr,
            a.relearn_batch_size,
            inputs.seed,
            measure(measured, kind),
        )
        df["attacked"] = df["k"] > 0
        frames.append(df)
    return frames


def _relearn_data(inputs: AttackInputs, kind: str, tok: Any) -> tuple[list[Any], list[QAItem], Any]:
    """(training examples, items measured, what was trained on) of one relearning attack."""
    from frequnlearn.models.prompts import get_prompt_format

    fmt, forget, seed = get_prompt_format(inputs.prompt_format), inputs.forget, inputs.seed
    if kind == "targeted":
        train, measured = split_targeted(forget, seed)
        return qa_examples(tok, fmt, train), measured, [it.item_id for it in train]
    if kind == "benign":
        train = benign_items(inputs.benign_pool, max(1, len(forget) // 2), seed)
        return qa_examples(tok, fmt, train), forget, [it.item_id for it in train]
    attr = inputs.bio_attribute
    texts = bio_texts(inputs.people, attr, inputs.n_templates, seed) if attr else []
    return text_examples(tok, texts), forget, {"attribute": attr, "texts": texts}


def _quantize_attacks(inputs: AttackInputs, measure: Any, attacks: dict[str, Any]) -> list[pd.DataFrame]:
    """Each available quantization scheme: the forget items' rows before and after."""
    from frequnlearn.models.loading import load_model_and_tokenizer

    a, schemes = inputs.config, []
    for scheme in a.quantize:
        try:
            check_available(scheme)
        except QuantizationUnavailable as why:
            attacks["skipped"].append(str(why))
            print(f"{attacks['task']}: skipping {scheme}: {why}", file=sys.stderr)
            continue
        schemes.append(scheme)
    if not schemes:
        return []
    model, tok = load_model_and_tokenizer(inputs.model_dir, dtype=inputs.dtype)
    before = measure(inputs.forget, "")(model, tok, 0)
    frames = []
    for scheme in schemes:
        attacks["schemes"][scheme] = describe(scheme, a.group_size)
        q = quantize_model(model, scheme, a.group_size, inputs.model_dir)
        after = measure(inputs.forget, scheme)(q, tok, 0)
        frames += [before.assign(attack=scheme, k=0, attacked=False), after.assign(k=0, attacked=True)]
        del q
    return frames
