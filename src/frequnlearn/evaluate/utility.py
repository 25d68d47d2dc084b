"""Utility: how much general ability survives, through lm-evaluation-harness used as a library.

The in-memory model is wrapped in lm-eval's `HFLM`, so a model mid-unlearning needs no save and no
subprocess. Hub tasks (tinyMMLU, tinyHellaswag) work by name where the hub is reachable; the tasks in
`tasks/` beside this file run offline, and `write_qa_task` turns any QA table (e.g. the synthetic
world's utility group) into a multiple-choice task.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
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
    """{task: {metric: value}} from `lm_eval.simple_evaluate` on the model as it is in memory."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
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
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(tasks),
            task_manager=manager,
            limit=limit,
            log_samples=False,
            bootstrap_iters=0,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
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
