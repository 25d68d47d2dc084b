"""The plan is a DAG: each task reads exactly the outputs it needs, in a valid order, and asks for the
resources its stage declares."""

from __future__ import annotations

from pathlib import Path

from frequnlearn.config.study import load_study_config
from frequnlearn.study import inputs_of, plan

CONFIG = """
generate: {n_people: 48, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, epochs: 3}
study: {model_sizes: [tiny], seeds: [0, 1], methods: [ga+gd], selections: [all], eval_retain_size: 4,
        eval_utility_size: 4}
attacks: {oracle: true, relearn: [targeted], relearn_steps: [1], selections: [all]}
"""


def _tasks(tmp_path: Path, *overrides: str, threads: int = 1):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return plan(load_study_config(path, list(overrides)), threads)


def test_every_task_reads_only_what_it_needs_and_comes_after_it(tmp_path):
    tasks = _tasks(tmp_path)
    by = {t.id: t for t in tasks}
    assert len(by) == len(tasks)  # ids are unique
    unlearn = next(t for t in tasks if t.kind == "unlearn" and t.params["model"] == "tiny-s1")
    assert set(unlearn.inputs) == {"generate:data", "pretrain:tiny-s1", "baseline:tiny-s1"}
    assert by["baseline:tiny-s0"].inputs == ("generate:data", "pretrain:tiny-s0")
    assert by["oracle_data:data-oracle"].inputs == ("generate:data",)
    assert set(by["oracle:tiny-s0"].inputs) == {
        "generate:data",
        "pretrain:tiny-s0",
        "baseline:tiny-s0",
        "oracle_data:data-oracle",
    }
    attack = by[f"attack:{unlearn.name}"]
    assert set(attack.inputs) == {*unlearn.inputs, "oracle:tiny-s1", unlearn.id}
    assert set(by["report:report"].inputs) == {t.id for t in tasks} - {"report:report"}
    for i, task in enumerate(tasks):  # plan order is a valid order
        assert all(tasks.index(d) < i for d in inputs_of(task, tasks))
    # One reduced corpus for the world, read by both models' oracles.
    assert [t.id for t in tasks if t.kind == "oracle_data"] == ["oracle_data:data-oracle"]


def test_a_pretraining_task_names_the_models_it_makes(tmp_path):
    tasks = _tasks(tmp_path)
    pretrain = [t for t in tasks if t.kind == "pretrain"]
    assert [(t.params["tags"], t.params["seeds"]) for t in pretrain] == [
        (["tiny-s0"], [0]),
        (["tiny-s1"], [1]),
    ]
    # A reader finds its model by tag, not by the task's name.
    baseline = next(t for t in tasks if t.id == "baseline:tiny-s1")
    assert [t.id for t in inputs_of(baseline, tasks) if t.kind == "pretrain"] == ["pretrain:tiny-s1"]


def test_model_stages_ask_for_their_threads_and_a_gpu(tmp_path):
    tasks = _tasks(tmp_path, threads=3)
    for task in tasks:
        expected = (
            (3, 1.0) if task.kind in ("pretrain", "baseline", "oracle", "unlearn", "attack") else (1, 0.0)
        )
        assert (task.resources.cpus, task.resources.gpus) == expected, task.id


def test_worlds_name_their_data_and_models_and_one_world_names_none(tmp_path):
    from frequnlearn.layout import RunLayout
    from frequnlearn.study.run import study_layout

    one = _tasks(tmp_path)
    assert [t.name for t in one if t.kind in ("generate", "pretrain")] == ["data", "tiny-s0", "tiny-s1"]
    assert {t.params["world"] for t in one if "world" in t.params} == {3}  # generate.seed, recorded
    two = _tasks(tmp_path, "study.worlds=[3,4]", "study.seeds=[0]")
    assert [t.name for t in two if t.kind in ("generate", "pretrain")] == [
        "data-w3",
        "tiny-s0-w3",
        "data-w4",
        "tiny-s0-w4",
    ]
    unlearn = [t for t in two if t.kind == "unlearn"]
    assert {(t.params["model"], t.params["world"]) for t in unlearn} == {("tiny-s0-w3", 3), ("tiny-s0-w4", 4)}
    assert by_id(two)["baseline:tiny-s0-w4"].inputs == ("generate:data-w4", "pretrain:tiny-s0-w4")
    assert [t.name for t in two if t.kind == "oracle_data"] == ["data-oracle-w3", "data-oracle-w4"]
    lay = study_layout(load_study_config(tmp_path / "c.yaml", ["study.worlds=[3,4]"]), tmp_path / "run")
    assert (lay.data(4).name, lay.oracle_data(4).name) == ("data-w4", "data-oracle-w4")
    assert RunLayout(tmp_path / "run").data(3).name == "data"  # one world: the plain name


def by_id(tasks):
    return {t.id: t for t in tasks}


def test_the_thread_count_of_pretraining_is_part_of_the_model_key(tmp_path):
    from frequnlearn.layout import RunLayout
    from frequnlearn.study import Keys

    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)

    def key(threads: int, *overrides: str) -> str:
        keys = Keys(load_study_config(path, list(overrides)), RunLayout(tmp_path), threads)
        return keys.model({"size": "tiny", "seed": 0, "world": 3})

    assert key(1) != key(2)  # a model trained with other threads is another model
    assert key(2) == key(1, "study.num_threads=2") == key(1, "pretrain.num_threads=2")
    # How the study runs is no part of it.
    assert key(1) == key(1, "study.executor=ray", "study.max_retries=0")


def test_a_pretrain_task_names_the_models_it_makes(tmp_path):
    """The report counts an ensemble's one timed task for all its models: the names must invert."""
    from frequnlearn.layout import pretrained_tags

    for overrides in ([], ["pretrain.ensemble=true"], ["pretrain.ensemble=true", "study.worlds=[3,4]"]):
        for task in _tasks(tmp_path, *overrides):
            if task.kind == "pretrain":
                assert pretrained_tags(task.name) == task.params["tags"], task.name


def test_an_ensemble_counts_its_pretraining_time_once():
    from types import SimpleNamespace

    from frequnlearn.report.build import wall_time

    logged = [{"tokens_seen": 1000, "tokens_per_s": 10.0}]  # 100 s by each member's own log
    models = [SimpleNamespace(tag=f"tiny-s{s}-w0", metrics=logged) for s in (0, 1)]
    models.append(SimpleNamespace(tag="tiny-s0-w1", metrics=logged))  # trained outside the study
    data = SimpleNamespace(timings={"pretrain:tiny-s0+s1-w0": 60.0, "unlearn:x": 5.0}, models=models)
    wall = wall_time(data)
    assert wall["by_kind_s"] == {"pretrain": 160.0, "unlearn": 5.0}
    assert wall["pretrain_from_metrics_log"] == ["tiny-s0-w1"]
