"""Utility: how much general ability survives, through lm-evaluation-harness used as a library.

The in-memory model is wrapped in lm-eval's `HFLM`, so a model mid-unlearning needs no save and no
subprocess. Hub tasks (tinyMMLU, tinyHellaswag) work by name where the hub is reachable; the tasks in
`tasks/` beside this file run offline, and `write_qa_task` turns any QA table (e.g. the synthetic
world's utility group) into a multiple-choice task.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frequnlearn.errors import ConfigError, DataError
from frequnlearn.models.prompts import PromptFormat
from frequnlearn.records import QAItem, atomic_open, write_json

TASKS_DIR = Path(__file__).parent / "tasks"
UTILITY_FILE = "utility.json"


def utility_scores(
    model: Any,
    tokenizer: Any,
    cfg: Any,
    items: Sequence[QAItem] = (),
    fmt: PromptFormat | None = None,
) -> dict[str, dict[str, float]] | None:
    """{task: {metric: value}} when `cfg.metrics` (an `EvalConfig`) has `utility`, else None.

    The tasks are `cfg.utility_tasks` plus, when `items` hold a utility group with candidates, multiple
    choice over that group (in `fmt`). The study passes no items: its utility people are scored per
    item along the trajectory instead.
    """
    if "utility" not in cfg.metrics:
        return None
    tasks = list(cfg.utility_tasks)
    group = [it for it in items if it.group == "utility" and it.candidates]
    batch = cfg.batch_size if isinstance(cfg.batch_size, int) else 16
    with tempfile.TemporaryDirectory() as tmp:
        if group and fmt is not None:
            tasks.append(write_qa_task(group, tmp, "frequnlearn_utility_qa", fmt, tokenizer, seed=cfg.seed))
        if not tasks:
            raise ConfigError("utility_tasks: empty, and the items have no utility group; name a task")
        return run_utility(
            model,
            tokenizer,
            tasks,
            batch_size=batch,
            limit=cfg.utility_limit,
            seed=cfg.seed,
            include_paths=[tmp],
        )


def write_utility(model: Any, tokenizer: Any, cfg: Any, out_dir: Path) -> None:
    """`utility_scores` of the model into out_dir/utility.json, when the config asks for utility."""
    scores = utility_scores(model, tokenizer, cfg)
    if scores is not None:
        write_json(out_dir / UTILITY_FILE, {"tasks": scores})


def run_utility(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    *,
    batch_size: int = 16,
    limit: int | None = None,
    seed: int = 0,
    include_paths: Sequence[str | Path] = (),
) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from lm-eval's evaluation of the model as it is in memory."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            "metrics: 'utility' needs lm-eval; install it with pip install 'frequnlearn[eval]'"
        ) from None

    paths = [str(TASKS_DIR), *map(str, include_paths)]
    # Indexing lm-eval's own few hundred task folders takes seconds: only when a task is not local.
    manager = TaskManager(include_path=paths, include_defaults=False)
    if any(not manager.match_tasks([t]) for t in tasks):
        manager = TaskManager(include_path=paths)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        raise ConfigError(
            f"utility_tasks: unknown task(s) {', '.join(unknown)}; local tasks are in {TASKS_DIR}, "
            "hub tasks need lm-eval's task registry and network access"
        )
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with _quiet_lm_eval():
            results = _evaluate(_in_memory_lm(model, tokenizer, batch_size), manager, tasks, limit, seed)
    finally:
        model.train(was_training)
    out: dict[str, dict[str, float]] = {}
    for task, metrics in (results or {}).get("results", {}).items():
        out[task] = {
            name.removesuffix(",none"): float(value)
            for name, value in metrics.items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not name.endswith("_stderr,none")
        }
    return out


def _evaluate(lm: Any, manager: Any, tasks: Sequence[str], limit: int | None, seed: int) -> Any:
    """lm-eval's `evaluate` on the loaded tasks, seeded and set up as `simple_evaluate` sets them up,
    without what `simple_evaluate` adds for its own run logs: the environment report and the `git
    describe` call (whose "fatal: not a git repository" reaches stderr outside a checkout)."""
    import random

    import torch
    from lm_eval.evaluator import evaluate

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    loaded = manager.load(list(tasks))
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    return evaluate(lm=lm, task_dict=loaded, limit=limit, bootstrap_iters=0, log_samples=False)


def _in_memory_lm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's HFLM around the model in memory, with its progress bars off (the caller's bar says
    where the run is) and an explicit attention mask on every forward pass: lm-eval passes none, and
    transformers then warns that the padding might be attended to (it is not: lm-eval pads on the
    right of causal inputs, and a mask of ones is what no mask means)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    class InMemoryLM(HFLM):
        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> Any:
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> Any:
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> Any:
            return super().generate_until(requests, disable_tqdm=True)

        def _model_call(self, inps: Any, attn_mask: Any = None, labels: Any = None) -> Any:
            if attn_mask is not None or labels is not None:  # encoder-decoder models pass both
                return super()._model_call(inps, attn_mask, labels)
            precision = self.mixed_precision_dtype
            with (
                torch.no_grad(),
                torch.autocast(device_type=self.device.type, dtype=precision, enabled=precision is not None),
            ):
                return self.model(input_ids=inps, attention_mask=torch.ones_like(inps)).logits

    return InMemoryLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


@contextlib.contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval's log lines (notes for its own command line: a model passed in memory, task metadata),
    its request-building bar and the bars of the datasets it loads off while inside."""
    import functools

    import lm_eval.api.task
    from tqdm import tqdm

    from frequnlearn.progress import quiet_third_party

    logger = logging.getLogger("lm_eval")
    level, bar = logger.level, lm_eval.api.task.tqdm
    logger.setLevel(logging.ERROR)
    lm_eval.api.task.tqdm = functools.partial(tqdm, disable=True)
    try:
        with quiet_third_party():  # datasets is imported by now: its "Generating ... split" bars
            yield
    finally:
        logger.setLevel(level)
        lm_eval.api.task.tqdm = bar


def write_qa_task(
    items: Sequence[QAItem],
    directory: str | Path,
    name: str,
    fmt: PromptFormat,
    tokenizer: Any = None,
    seed: int = 0,
) -> str:
    """Write `name.yaml` and its data into `directory`: multiple choice of the true answer among candidates.

    Prompts start with the tokenizer's BOS text as evaluation prompts do, and choices are the format's
    completions (leading separator included), so lm-eval scores the text per-item evaluation scores;
    the true answer's slot is drawn per item from `seed`.
    """
    bos = ""
    if tokenizer is not None:
        bos = tokenizer.bos_token or tokenizer.eos_token or ""
    rows = []
    rng = np.random.default_rng(seed)
    for item in items:
        if not item.candidates:
            continue
        choices = [fmt.completion(c) for c in item.candidates]
        label = int(rng.integers(len(choices) + 1))
        choices.insert(label, fmt.completion(item.answer))
        prompt = fmt.prompt(item.question, tokenizer)
        if bos and not prompt.startswith(bos):
            prompt = bos + prompt
        rows.append({"item_id": item.item_id, "prompt": prompt, "choices": choices, "label": label})
    if not rows:
        raise DataError(f"utility task {name}: no item has candidates to choose from")
    directory = Path(directory)
    data = directory / f"{name}.jsonl"
    with atomic_open(data) as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "target_delimiter": "",
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")
        ],
        "metadata": {"version": 1.0},
    }
    with atomic_open(directory / f"{name}.yaml") as fh:
        json.dump(config, fh, indent=2)  # JSON is YAML, and needs no YAML writer for lm-eval's tags
    return name
