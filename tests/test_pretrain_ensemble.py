"""Seeds trained together: each model of a batched ensemble equals its solo run within float tolerance,
is saved as an ordinary model directory, and a killed ensemble resumes or finishes as a solo run does."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from frequnlearn.errors import ConfigError
from frequnlearn.pretrain import ensemble as ens
from frequnlearn.pretrain import pretrain, run_key
from frequnlearn.pretrain import settings as pretrain_settings
from frequnlearn.pretrain.ensemble import StackedAdamW, clip_grad_norms, pretrain_ensemble, stack_params
from frequnlearn.records import stage_done, stage_key, stage_record
from test_pretrain import make_data_dir, tiny_cfg

SEEDS = (0, 1)


def weights(path):
    return load_file(path / "model.safetensors")


def losses(path):
    return [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]


def ens_cfgs(**overrides):
    return [tiny_cfg(seed=s, ensemble=True, **overrides) for s in SEEDS]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def solo_runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("solo")
    for s in SEEDS:
        pretrain(data_dir, tiny_cfg(seed=s), root / f"s{s}")
    return [root / f"s{s}" for s in SEEDS]


@pytest.fixture(scope="module")
def ensemble_runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    dirs = [root / f"s{s}" for s in SEEDS]
    pretrain_ensemble(data_dir, ens_cfgs(), dirs)
    return dirs


def test_each_model_equals_its_solo_run(solo_runs, ensemble_runs):
    for solo, together in zip(solo_runs, ensemble_runs):
        a, b = weights(solo), weights(together)
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4)
        # The seeds are different models: the tolerance is far below what tells them apart.
        assert losses(together) == pytest.approx(losses(solo), abs=1e-5)
    a0, a1 = weights(solo_runs[0]), weights(solo_runs[1])
    assert max((a0[n] - a1[n]).abs().max().item() for n in a0) > 1e-2


def test_a_model_is_the_same_in_any_ensemble(data_dir, ensemble_runs, tmp_path):
    # Alone through the batched loop (pretrain with ensemble: true), seed 0 is bit for bit the seed 0 of
    # the two-model ensemble, so a study may group its seeds as it likes.
    pretrain(data_dir, tiny_cfg(seed=0, ensemble=True), tmp_path / "one")
    a, b = weights(tmp_path / "one"), weights(ensemble_runs[0])
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_models_are_saved_as_solo_runs_save_them(solo_runs, ensemble_runs, data_dir):
    from transformers import GPT2LMHeadModel

    for solo, together, cfg in zip(solo_runs, ensemble_runs, ens_cfgs()):
        names = {p.name for p in together.iterdir()}
        assert names == {p.name for p in solo.iterdir()}
        record = json.loads((together / "run.json").read_text())
        from frequnlearn.pretrain.data import corpus_sha256

        assert record["key"] == run_key(cfg, corpus_sha256(data_dir))
        assert stage_done(together, record["key"])
        assert record["summary"]["ensemble_size"] == 2
        assert record["summary"]["steps"] == json.loads((solo / "run.json").read_text())["summary"]["steps"]
        assert "cpu_bf16_supported" in record["summary"]
        assert GPT2LMHeadModel.from_pretrained(together).num_parameters() > 0
        assert (together / "README.md").is_file()
        assert (together / "knowledge.jsonl").read_text().count("\n") == 2  # eval_every 6 of 12, and the end


def test_rerun_is_a_no_op(data_dir, ensemble_runs):
    before = [(d / "model.safetensors").stat().st_mtime_ns for d in ensemble_runs]
    pretrain_ensemble(data_dir, ens_cfgs(), ensemble_runs)
    assert [(d / "model.safetensors").stat().st_mtime_ns for d in ensemble_runs] == before


def test_the_key_names_the_ensemble_and_keeps_solo_keys():
    solo, together = tiny_cfg(), tiny_cfg(ensemble=True)
    assert run_key(solo, "x") != run_key(together, "x")
    assert run_key(tiny_cfg(compile=True), "x") != run_key(solo, "x")
    # A solo run's key is what it was before the switches existed: they enter only when on.
    from frequnlearn.pretrain.checkpoint import trained_settings

    settings = trained_settings(solo)
    assert "ensemble" not in settings and "compile" not in settings
    assert run_key(solo, "x") == stage_key("pretrain", "x", settings)


def test_steps_differ_by_seed_and_each_model_keeps_its_own_schedule(data_dir, tmp_path):
    """By epochs, seeds pack their epochs into different numbers of sequences: each model of the
    ensemble trains its own step count under its own schedule, as alone."""
    cfgs = [tiny_cfg(seed=s, ensemble=True, max_steps=None, epochs=3.0, eval_every=0) for s in SEEDS]
    dirs = [tmp_path / f"e{s}" for s in SEEDS]
    pretrain_ensemble(data_dir, cfgs, dirs)
    for s, d in zip(SEEDS, dirs):
        pretrain(data_dir, tiny_cfg(seed=s, max_steps=None, epochs=3.0, eval_every=0), tmp_path / f"solo{s}")
        solo = json.loads((tmp_path / f"solo{s}" / "run.json").read_text())["summary"]["steps"]
        assert json.loads((d / "run.json").read_text())["summary"]["steps"] == solo
        a, b = weights(tmp_path / f"solo{s}"), weights(d)
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4)


def test_a_killed_ensemble_resumes_to_the_same_models(data_dir, ensemble_runs, tmp_path, monkeypatch):
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    real = ens.BatchStream.batch

    def killed(self, step):
        if step == 8:  # after the checkpoint of step 5
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(ens.BatchStream, "batch", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain_ensemble(data_dir, ens_cfgs(), dirs)
    assert not any(stage_record(d).get("key") for d in dirs)
    monkeypatch.setattr(ens.BatchStream, "batch", real)
    pretrain_ensemble(data_dir, ens_cfgs(), dirs)
    for d, whole in zip(dirs, ensemble_runs):
        a, b = weights(d), weights(whole)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert losses(d) == losses(whole)


def test_done_markers_wait_for_every_model(data_dir, ensemble_runs, tmp_path, monkeypatch):
    dirs = [tmp_path / f"s{s}" for s in SEEDS]
    real = ens._finish
    calls = []

    def second_fails(m, *args, **kwargs):
        calls.append(m.cfg.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(m, *args, **kwargs)

    monkeypatch.setattr(ens, "_finish", second_fails)
    with pytest.raises(KeyboardInterrupt):
        pretrain_ensemble(data_dir, ens_cfgs(), dirs)
    saved = dirs[calls[0]]
    assert (saved / "run.json").is_file() and not stage_record(saved).get("key")
    monkeypatch.setattr(ens, "_finish", real)
    trained = []
    monkeypatch.setattr(
        ens, "_train", lambda members, *a, **k: (trained.append(len(members)), real_train(members, *a, **k))
    )
    pretrain_ensemble(data_dir, ens_cfgs(), dirs)
    assert trained == [1]  # the model saved before the kill is not trained again
    for d, whole in zip(dirs, ensemble_runs):
        assert stage_done(d, stage_record(d)["key"])
        a, b = weights(d), weights(whole)
        assert all(torch.equal(a[n], b[n]) for n in a)


real_train = ens._train


def test_stacked_step_is_torch_adamw_and_clip_per_model():
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LayerNorm(4)) for _ in range(3)]
    params = stack_params(models)
    opts = [
        torch.optim.AdamW(
            [
                {"params": [p for p in m.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                {"params": [p for p in m.parameters() if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=lr,
            betas=(0.9, 0.95),
            eps=1e-8,
        )
        for m, lr in zip(models, (1e-2, 3e-3, 1e-3))
    ]
    stacked = StackedAdamW(params, 0.1)
    for _ in range(3):
        x = torch.randn(3, 6, 5)
        for k, (m, opt) in enumerate(zip(models, opts)):
            m(x[k]).pow(2).sum().backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()
            opt.zero_grad()
        out = torch.stack(
            [torch.nn.functional.linear(x[k], params["0.weight"][k], params["0.bias"][k]) for k in range(3)]
        )
        out = torch.nn.functional.layer_norm(out, (4,)) * params["1.weight"].unsqueeze(1) + params[
            "1.bias"
        ].unsqueeze(1)
        out.pow(2).sum().backward()
        clip_grad_norms(params, 0.5)
        stacked.step(torch.tensor([1e-2, 3e-3, 1e-3], dtype=torch.float64))
        stacked.zero_grad()
    for k, m in enumerate(models):
        for name, p in m.named_parameters():
            torch.testing.assert_close(params[name][k], p.detach(), rtol=0, atol=1e-6)


def test_bad_ensembles(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="differ only by seed"):
        pretrain_ensemble(
            data_dir,
            [tiny_cfg(seed=0, ensemble=True), tiny_cfg(seed=1, ensemble=True, lr=1e-3)],
            [tmp_path / "a", tmp_path / "b"],
        )
    with pytest.raises(ConfigError, match="same model"):
        pretrain_ensemble(data_dir, [tiny_cfg(seed=0, ensemble=True)] * 2, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="ensemble: true"):
        pretrain_ensemble(data_dir, [tiny_cfg(seed=0), tiny_cfg(seed=1)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="own output directory"):
        pretrain_ensemble(data_dir, ens_cfgs(), [tmp_path / "a", tmp_path / "a"])
    with pytest.raises(ConfigError, match="dropout"):
        tiny_cfg(ensemble=True, dropout=0.1)


def test_cpu_bf16_is_refused_where_the_cpu_lacks_it(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain_settings, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="mixed_precision: bf16"):
        pretrain(data_dir, tiny_cfg(mixed_precision="bf16"), tmp_path / "m")


STUDY = """
generate: {n_people: 24, seed: 3}
pretrain: {preset: tiny, n_layer: 2, n_embd: 32, n_head: 2, vocab_size: 400, seq_len: 64, max_steps: 6,
           save_every: 4, eval_per_group: 1, num_threads: 1, ensemble: true}
study: {model_sizes: [tiny], seeds: [0, 1], methods: [ga+gd], selections: [all], eval_retain_size: 4,
        eval_utility_size: 4}
"""


def test_a_study_trains_its_seeds_as_one_ensemble(tmp_path):
    from frequnlearn.config.study import load_study_config
    from frequnlearn.layout import RunLayout
    from frequnlearn.study import inputs_of, plan
    from frequnlearn.study.keys import Keys
    from frequnlearn.study.tasks import TaskRunner

    path = tmp_path / "c.yaml"
    path.write_text(STUDY)
    cfg = load_study_config(path, [])
    tasks = plan(cfg, 1)
    pretrain_tasks = [t for t in tasks if t.kind == "pretrain"]
    assert [(t.name, t.params["tags"], t.params["seeds"]) for t in pretrain_tasks] == [
        ("tiny-s0+s1", ["tiny-s0", "tiny-s1"], [0, 1])
    ]
    baseline = next(t for t in tasks if t.id == "baseline:tiny-s1")
    assert [t.id for t in inputs_of(baseline, tasks) if t.kind == "pretrain"] == ["pretrain:tiny-s0+s1"]
    solo = plan(load_study_config(path, ["pretrain.ensemble=false"]), 1)
    assert [t.params["tags"] for t in solo if t.kind == "pretrain"] == [["tiny-s0"], ["tiny-s1"]]

    layout = RunLayout(tmp_path / "run")
    runner = TaskRunner(cfg, layout, threads=1)
    runner.run_if_needed(next(t for t in tasks if t.kind == "generate"))
    assert runner.run_if_needed(pretrain_tasks[0]).ran
    assert runner.keys.done(pretrain_tasks[0])
    assert not runner.run_if_needed(pretrain_tasks[0]).ran  # both models are there for their keys
    # The ensemble is in the models' keys: a solo study never takes them for its own.
    solo_keys = Keys(load_study_config(path, ["pretrain.ensemble=false"]), layout, 1)
    p = pretrain_tasks[0].params
    for seed, tag in zip(p["seeds"], p["tags"]):
        record = json.loads((layout.model(tag) / "run.json").read_text())
        assert record["key"] == runner.keys.model({**p, "seed": seed})
        assert record["key"] != solo_keys.model({**p, "seed": seed})
