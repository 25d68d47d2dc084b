"""The stopping rule of an unlearning run: stop at the first evaluation where the targets' normalised
generation accuracy is <= L or the retain accuracy has dropped by more than T, else after S_max steps.

The evaluation here is hand-built from the model itself: an item counts as generated while its
answer's mean log-prob per token is within 0.5 nats of its value at step 0, so whether and when a run
reaches L follows from the weights, and the stopped run can be checked against an unstopped one.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from frequnlearn.config import from_dict
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.errors import ConfigError
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.records import read_json
from frequnlearn.unlearn import unlearn
from frequnlearn.unlearn.data import collate, encode_items
from frequnlearn.unlearn.loop import StopRule, token_logprobs
from test_unlearn import FORGET, RETAIN


def _cfg(**kw) -> UnlearnConfig:
    base = {
        "lr": 1e-3,
        "batch_size": 4,
        "max_steps": 12,
        "eval_steps": [],
        "eval_every": 1,
        "weight_decay": 0.0,
    }
    return from_dict(UnlearnConfig, {**base, **kw})


def _model(path):
    model, tok = load_model_and_tokenizer(path)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tok


@torch.no_grad()
def _per_item_logp(model, tok, items) -> list[float]:
    batch = collate(
        [(ex, "answer") for ex in encode_items(tok, get_prompt_format("plain"), items)], tok.pad_token_id
    )
    _, token_logp = token_logprobs(model, batch)
    mask = batch["loss_mask"]
    return ((token_logp * mask).sum(-1) / mask.sum(-1)).tolist()


def _eval_fn(levels: list[tuple[int, float, float]]):
    """An evaluation whose `known` says whether each item is still within 0.5 nats of its start;
    appends (step, level of forgetting, retain accuracy) to `levels`."""
    start: dict[str, float] = {}
    items = [("forget", it) for it in FORGET] + [("retain", it) for it in RETAIN]

    def eval_fn(model, tok, step):
        lp = _per_item_logp(model, tok, [it for _, it in items])
        if not start:
            start.update({it.item_id: v for (_, it), v in zip(items, lp)})
        rows = []
        for (role, it), v in zip(items, lp):
            known = float(v >= start[it.item_id] - 0.5)
            for probe in ("question", "paraphrase"):
                rows.append(
                    {
                        "step": step,
                        "item_id": it.item_id,
                        "role": role,
                        "probe": probe,
                        "family": "gen",
                        "known": known,
                    }
                )
            rows.append(
                {"step": step, "item_id": it.item_id, "role": role, "probe": "question", "family": "prob"}
            )
        df = pd.DataFrame(rows)
        q = df[(df["family"] == "gen") & (df["probe"] == "question")]
        levels.append(
            (step, q[q["role"] == "forget"]["known"].mean(), q[q["role"] == "retain"]["known"].mean())
        )
        return df

    return eval_fn


def _run(path, out, **kw):
    model, tok = _model(path)
    seen: list[tuple[int, float, float]] = []
    result = unlearn(model, tok, FORGET, RETAIN, _cfg(**kw), out, eval_fn=_eval_fn(seen))
    return result, read_json(out / "run.json")["summary"]["stop"], seen


def test_lr_zero_never_reaches_L_and_runs_its_budget(tiny_gpt2_dir, tmp_path):
    result, stop, seen = _run(tiny_gpt2_dir, tmp_path, lr=0.0, stop_forget_level=0.5, stop_retain_drop=0.2)
    assert result.steps == 12 and [s for s, _, _ in seen] == list(range(13))
    assert stop == {
        "reason": "max_steps",
        "step": 12,
        "forget_level_reached": False,
        "step_reached_L": None,
        "forget_level": 1.0,
        "retain_drop": 0.0,
        "n_targets_known": 4,
        "L": 0.5,
        "T": 0.2,
        "S_max": 12,
        "probe": "question",
        "restored": None,
        "backtracks": [],
    }


def test_a_big_lr_stops_at_the_first_evaluation_at_or_below_L(tiny_gpt2_dir, tmp_path):
    # The same run without a stopping rule says where L is first reached.
    _, free, seen_free = _run(tiny_gpt2_dir, tmp_path / "free", lr=1e-2)
    first = next(s for s, level, _ in seen_free if level <= 0.5)
    assert 0 < first < 12 and free["reason"] == "max_steps"
    result, stop, seen = _run(tiny_gpt2_dir, tmp_path / "stop", lr=1e-2, stop_forget_level=0.5)
    assert result.steps == first and stop["reason"] == "forget_level"
    assert stop["step"] == stop["step_reached_L"] == first and stop["forget_level_reached"]
    assert stop["forget_level"] <= 0.5 and stop["T"] is None and stop["S_max"] == 12
    # Determinism: the stopped run is the unstopped run's prefix, evaluation for evaluation.
    assert seen == seen_free[: first + 1]
    traj = pd.read_parquet(tmp_path / "stop" / "trajectory.parquet")
    assert traj["step"].max() == first


def test_a_sparse_schedule_stops_at_an_evaluated_step(tiny_gpt2_dir, tmp_path):
    _, _, seen_free = _run(tiny_gpt2_dir, tmp_path / "free", lr=1e-2, eval_every=3)
    first = next(s for s, level, _ in seen_free if level <= 0.5)
    assert first % 3 == 0
    result, stop, _ = _run(tiny_gpt2_dir, tmp_path / "stop", lr=1e-2, eval_every=3, stop_forget_level=0.5)
    assert result.steps == stop["step"] == first


def test_retain_drop_stops_the_run_before_L(tiny_gpt2_dir, tmp_path):
    _, _, seen_free = _run(tiny_gpt2_dir, tmp_path / "free", lr=1e-2)
    first_drop = next(s for s, _, acc in seen_free if seen_free[0][2] - acc > 0.0)
    result, stop, _ = _run(
        tiny_gpt2_dir, tmp_path / "stop", lr=1e-2, stop_forget_level=0.0, stop_retain_drop=0.0
    )
    level_at = dict((s, level) for s, level, _ in seen_free)
    if level_at[first_drop] <= 0.0:  # both at once: the forgetting criterion is named
        assert stop["reason"] == "forget_level"
    else:
        assert stop["reason"] == "retain_drop" and not stop["forget_level_reached"]
        assert stop["step_reached_L"] is None and stop["retain_drop"] > 0.0
    assert result.steps == stop["step"] == first_drop


def test_stop_restore_puts_back_the_last_step_within_the_retain_budget(tiny_gpt2_dir, tmp_path):
    """The retain drop first exceeds T=0 at step k: the run ends there, and with stop_restore its weights,
    trajectory and summary are those of step k-1, the last step within the budget, which the unstopped
    run's weights at k-1 confirm (determinism: a stopped run is the free run's prefix)."""
    _, _, seen_free = _run(tiny_gpt2_dir, tmp_path / "free", lr=1e-2)
    first_drop = next(s for s, _, acc in seen_free if seen_free[0][2] - acc > 0.0)
    assert first_drop >= 2
    kept = first_drop - 1
    result, stop, seen = _run(
        tiny_gpt2_dir, tmp_path / "restore", lr=1e-2, stop_retain_drop=0.0, stop_restore=True
    )
    assert stop["reason"] == "retain_drop" and result.steps == stop["step"] == kept
    assert stop["restored"] == {
        "from_step": first_drop,
        "retain_drop": pytest.approx(seen_free[0][2] - seen_free[first_drop][2]),
    }
    assert (
        stop["retain_drop"] == pytest.approx(seen_free[0][2] - seen_free[kept][2])
        and stop["retain_drop"] <= 0.0
    )
    traj = pd.read_parquet(tmp_path / "restore" / "trajectory.parquet")
    assert traj["step"].max() == kept and sorted(
        read_json(tmp_path / "restore" / "run.json")["summary"]["evaluated_steps"]
    ) == list(range(kept + 1))
    # The saved weights are the free run's at step `kept`: rerun it for exactly that many steps.
    _, _, _ = _run(tiny_gpt2_dir, tmp_path / "prefix", lr=1e-2, max_steps=kept)
    a, _ = load_model_and_tokenizer(tmp_path / "restore" / "model")
    b, _ = load_model_and_tokenizer(tmp_path / "prefix" / "model")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert seen[: kept + 1] == seen_free[: kept + 1]


def test_stop_restore_needs_a_retain_budget():
    with pytest.raises(ConfigError, match="stop_restore"):
        _cfg(stop_restore=True).validate()


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"stop_retain_drop": 0.1, "stop_backtrack": 1}, "stop_backtrack"),
        ({"stop_retain_drop": 0.1, "stop_restore": True, "stop_backtrack": -1}, "stop_backtrack"),
        (
            {"stop_retain_drop": 0.1, "stop_restore": True, "stop_backtrack_factor": 1.0},
            "stop_backtrack_factor",
        ),
    ],
)
def test_stop_backtrack_needs_restore_and_a_shrinking_factor(kw, field):
    with pytest.raises(ConfigError, match=field):
        _cfg(**kw).validate()


def test_back_off_puts_weights_optimizer_and_schedule_back_and_scales_the_rate():
    """Two AdamW steps on a linear layer are kept, two more are taken and undone: the weights and the
    optimizer state are the kept step's exactly, and the linear schedule goes on at half its rate."""
    import copy
    from types import SimpleNamespace

    from transformers import get_scheduler

    from frequnlearn.unlearn.loop import Restore

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    params = list(layer.parameters())
    opt = torch.optim.AdamW(params, lr=0.1)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=10)
    state = SimpleNamespace(params=params, optimizer=opt, scheduler=sched, step=0)
    rule = SimpleNamespace(forget_level=1.0, retain_drop=0.0)
    cut: list[int] = []
    trajectory = SimpleNamespace(truncate=lambda st, step: cut.append(step))

    def step() -> None:
        layer(torch.ones(1, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        state.step += 1

    keep = Restore(backtracks=1, factor=0.5)
    step(), step()
    keep.take(state, rule)
    weights = [p.detach().clone() for p in params]
    kept = copy.deepcopy(opt.state_dict())
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * (1 - 2 / 10))
    step(), step()
    rule.retain_drop = 0.2
    record = keep.back_off(state, rule, trajectory)
    assert record == {"from_step": 4, "retain_drop": 0.2, "to_step": 2, "lr": pytest.approx(0.04)}
    assert state.step == 2 and cut == [2] and rule.retain_drop == 0.0 and keep.left == 0
    assert keep.backtracks == [record]
    for p, w in zip(params, weights):
        assert torch.equal(p, w)
    now = opt.state_dict()
    for i, s in kept["state"].items():
        for name, value in s.items():
            assert torch.equal(torch.as_tensor(now["state"][i][name]), torch.as_tensor(value)), name
    assert opt.param_groups[0]["lr"] == pytest.approx(0.04)
    step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5 * 0.1 * (1 - 3 / 10))


def test_back_to_back_crossings_shrink_the_rate_each_time():
    """The step after a backtrack crosses T again before any step within it was evaluated: the run goes
    back to the same step, at a quarter of the rate, not at half of the first one again."""
    from types import SimpleNamespace

    from transformers import get_scheduler

    from frequnlearn.unlearn.loop import Restore

    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(list(layer.parameters()), lr=0.1)
    sched = get_scheduler("constant", opt, num_warmup_steps=0, num_training_steps=10)
    state = SimpleNamespace(params=list(layer.parameters()), optimizer=opt, scheduler=sched, step=0)
    rule = SimpleNamespace(forget_level=1.0, retain_drop=0.0)
    trajectory = SimpleNamespace(truncate=lambda st, step: None)

    def step() -> None:
        layer(torch.ones(1, 3)).sum().backward()
        opt.step(), sched.step(), opt.zero_grad()
        state.step += 1

    keep = Restore(backtracks=2, factor=0.5)
    keep.take(state, rule)
    rates = []
    for _ in range(2):
        step()
        rule.retain_drop = 0.3
        rates.append(keep.back_off(state, rule, trajectory)["lr"])
    assert rates == [pytest.approx(0.05), pytest.approx(0.025)] and state.step == 0 and keep.left == 0
    step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_stop_backtrack_goes_on_from_the_last_step_within_the_budget_at_a_smaller_rate(
    tiny_gpt2_dir, tmp_path
):
    """T=0 is first crossed at step k: with one backtrack the run goes back to k-1 (the free run's prefix
    so far), takes its later steps at half the rate, evaluated at each, and ends at the next crossing
    (put back) or at max_steps; the log keeps one row per step of the final run."""
    _, _, seen_free = _run(tiny_gpt2_dir, tmp_path / "free", lr=1e-2)
    k = next(s for s, _, acc in seen_free if seen_free[0][2] - acc > 0.0)
    assert k >= 2
    out = tmp_path / "back"
    # Scheduled: every step up to k, then only the last; after the backtrack every step is evaluated.
    result, stop, seen = _run(
        tiny_gpt2_dir, out, lr=1e-2, stop_retain_drop=0.0, stop_restore=True, stop_backtrack=1,
        eval_every=0, eval_steps=[*range(k + 1), 12],
    )  # fmt: skip
    assert stop["backtracks"] == [
        {"from_step": k, "retain_drop": pytest.approx(seen_free[0][2] - seen_free[k][2]), "to_step": k - 1,
         "lr": pytest.approx(5e-3)}
    ]  # fmt: skip
    assert seen[: k + 1] == seen_free[: k + 1]
    after = [s for s, _, _ in seen[k + 1 :]]
    end = stop["restored"]["from_step"] if stop["restored"] else 12
    assert after == list(range(k, end + 1))
    log = [row for row in map(__import__("json").loads, (out / "log.jsonl").read_text().splitlines())]
    assert [row["step"] for row in log] == list(range(1, len(log) + 1)) and len(log) >= result.steps
    assert all(row["lr"] == pytest.approx(1e-2 if row["step"] < k else 5e-3) for row in log)
    if stop["reason"] == "retain_drop":
        assert stop["step"] == stop["restored"]["from_step"] - 1 >= k - 1
    else:
        assert stop["reason"] == "max_steps" and result.steps == 12
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert traj.groupby(["step", "item_id", "probe", "family"]).size().max() == 1
    assert traj["step"].max() == result.steps


def _frame(
    step: int, forget: dict[str, float], retain: dict[str, float], probe: str = "question"
) -> pd.DataFrame:
    rows = [{"item_id": i, "role": "forget", "known": k} for i, k in forget.items()]
    rows += [{"item_id": i, "role": "retain", "known": k} for i, k in retain.items()]
    return pd.DataFrame(rows).assign(step=step, family="gen", probe=probe)


class _OneProcess:
    is_main_process, num_processes = True, 1


def test_levels_are_normalised_to_the_items_generated_at_step_0():
    rule = StopRule(_cfg(stop_forget_level=0.5, stop_retain_drop=0.25), 10, active=True)
    # f3 was never generated: it neither counts at the start nor later, when it appears.
    start = _frame(0, {"f0": 1, "f1": 1, "f2": 1, "f3": 0}, {"r0": 1, "r1": 1, "r2": 1, "r3": 1})
    assert rule.check(_OneProcess, start, 0) is None and rule.forget_level == 1.0 and rule.retain_drop == 0.0
    later = _frame(3, {"f0": 0, "f1": 1, "f2": 1, "f3": 1}, {"r0": 1, "r1": 1, "r2": 1, "r3": 0})
    assert rule.check(_OneProcess, later, 3) is None
    assert rule.forget_level == pytest.approx(2 / 3) and rule.retain_drop == 0.25  # not more than T
    lost = _frame(4, {"f0": 0, "f1": 0, "f2": 1, "f3": 1}, {"r0": 1, "r1": 1, "r2": 1, "r3": 0})
    assert rule.check(_OneProcess, lost, 4) == "forget_level"
    assert rule.record("forget_level", 4)["step_reached_L"] == 4


def test_no_target_generated_at_the_start_never_reaches_L():
    rule = StopRule(_cfg(stop_forget_level=0.5), 10, active=True)
    assert rule.check(_OneProcess, _frame(0, {"f0": 0, "f1": 0}, {"r0": 1}), 0) is None
    assert rule.check(_OneProcess, _frame(1, {"f0": 0, "f1": 0}, {"r0": 1}), 1) is None
    assert math.isnan(rule.forget_level)
    rec = rule.record(None, 10)
    assert rec["reason"] == "max_steps" and rec["forget_level"] is None and rec["n_targets_known"] == 0


def test_a_missing_probe_is_a_config_error():
    rule = StopRule(_cfg(stop_forget_level=0.5, stop_probe="paraphrase"), 10, active=True)
    with pytest.raises(ConfigError, match="stop_probe: .*'paraphrase'"):
        rule.check(_OneProcess, _frame(0, {"f0": 1}, {"r0": 1}), 0)


def test_a_disabled_rule_reads_nothing():
    rule = StopRule(_cfg(), 10, active=True)
    assert rule.check(_OneProcess, pd.DataFrame({"step": [0]}), 0) is None
    assert rule.record(None, 10)["reason"] == "max_steps"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"stop_forget_level": 1.0}, "stop_forget_level: must be within"),
        ({"stop_forget_level": -0.1}, "stop_forget_level"),
        ({"stop_retain_drop": 1.5}, "stop_retain_drop: must be within"),
        ({"stop_probe": "story"}, "stop_probe"),
    ],
)
def test_stop_config_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(UnlearnConfig, override)
