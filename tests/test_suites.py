"""Real model suites (`study.models`): configs/pythia.yaml and configs/olmo2.yaml validate and dry-run,
the footprint of each size has known answers, and a suite of two tiny GPTNeoX models built here runs the
whole real-setting study, with counts replayed from recorded infini-gram API answers (the live service
is never contacted; tests/fixtures/infinigram_pile_capitals.json says what its counts are)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from frequnlearn.cli import main
from frequnlearn.config.study import load_study_config
from frequnlearn.errors import ConfigError
from frequnlearn.models import footprint as fp
from frequnlearn.records import read_json, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "infinigram_pile_capitals.json"

# Published total parameter counts of the Pythia suite (Biderman et al. 2023, Table 1).
PYTHIA = {
    "pythia-70m": 70_426_624,
    "pythia-160m": 162_322_944,
    "pythia-410m": 405_334_016,
    "pythia-1b": 1_011_781_632,
    "pythia-1.4b": 1_414_647_808,
    "pythia-2.8b": 2_775_208_960,
    "pythia-6.9b": 6_857_302_016,
    "pythia-12b": 11_846_072_320,
}


# ---- the configs
def test_pythia_config_is_the_non_deduplicated_suite_counted_in_the_pile():
    cfg = load_study_config(CONFIGS / "pythia.yaml")
    s = cfg.study
    assert s.setting == "real" and s.model is None
    assert [m.id for m in s.models] == [f"EleutherAI/{name}" for name in PYTHIA]
    assert {m.revision for m in s.models} == {"step143000"} and {m.corpus_epochs for m in s.models} == {1.0}
    assert [m.tag for m in s.models] == list(PYTHIA)
    assert cfg.count.backend == "infinigram-api" and cfg.count.api_index == "v4_piletrain_llama"
    assert cfg.count.measure == "window" and cfg.count.bucket_method == "quantile"
    assert s.compare_by == "bucket" and s.levels == ["high", "low"] and len(s.seeds) >= 3
    assert cfg.unlearn.max_steps is not None and cfg.unlearn.eval_steps[:4] == [1, 2, 3, 4]


def test_olmo2_config_scales_counts_by_the_tokens_each_size_saw():
    cfg = load_study_config(CONFIGS / "olmo2.yaml")
    s = cfg.study
    assert cfg.count.api_index == "v4_olmo-mix-1124_llama"
    assert [m.id.split("/")[0] for m in s.models] == ["allenai"] * 4
    epochs = [m.corpus_epochs for m in s.models]
    # Stage-1 tokens over the 3.9T-token mix: 4T, 4T, 5T, 6T.
    assert epochs == pytest.approx([4 / 3.9, 4 / 3.9, 5 / 3.9, 6 / 3.9], abs=0.01)
    # Everything but the models and the index is Pythia's: the same rule and report.
    pythia = load_study_config(CONFIGS / "pythia.yaml")
    assert cfg.unlearn == pythia.unlearn and cfg.evaluate == pythia.evaluate
    assert {k: v for k, v in vars(cfg.count).items() if k != "api_index"} == {
        k: v for k, v in vars(pythia.count).items() if k != "api_index"
    }


@pytest.mark.parametrize(
    ("name", "index", "sizes", "span"),
    [
        ("pythia", "v4_piletrain_llama", list(PYTHIA), "x168"),
        ("olmo2", "v4_olmo-mix-1124_llama", None, "x22"),
    ],
)
def test_dry_run_lists_sizes_backend_index_and_gpu_time(name, index, sizes, span, capsys, tmp_path):
    assert main(["study", str(CONFIGS / f"{name}.yaml"), "--dry-run", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"backend infinigram-api, index {index}" in out
    assert "expected on one H200" in out and "GPU hours" in out and span + " parameters" in out
    for size in sizes or [m.tag for m in load_study_config(CONFIGS / f"{name}.yaml").study.models]:
        line = next(line for line in out.splitlines() if line.strip().startswith(size + " "))
        assert "GiB" in line and "per run" in line
        assert f"[baseline] {size}" in out and f"{size}/s0/simnpo+gd/high-known" in out
    assert not (tmp_path / "run").exists()
    if name == "olmo2":
        assert "OLMo-2-0325-32B" in out and "does NOT fit one H200" in out


def test_a_suite_and_one_model_are_exclusive():
    with pytest.raises(ConfigError, match="study.models"):
        load_study_config(CONFIGS / "pythia.yaml", ["study.model=EleutherAI/pythia-70m"])
    with pytest.raises(ConfigError, match="study.models"):
        load_study_config(CONFIGS / "pythia.yaml", ["study.models=[{id: a/x}, {id: b/x}]"])
    with pytest.raises(ConfigError, match="corpus_epochs"):
        load_study_config(CONFIGS / "pythia.yaml", ["study.models=[{id: a/x, corpus_epochs: 0}]"])
    with pytest.raises(ConfigError, match="study.models: only for setting: real"):
        load_study_config(CONFIGS / "scale-30x.yaml", ["study.models=[{id: a/x}]"])
    with pytest.raises(ConfigError, match=r"study.models\[0\].name: '..' is not a plain name"):
        load_study_config(CONFIGS / "pythia.yaml", ["study.models=[{id: a/x, name: ..}]"])
    # Two sizes of one name get distinct ones with `name`.
    cfg = load_study_config(CONFIGS / "pythia.yaml", ["study.models=[{id: a/x}, {id: b/x, name: x-b}]"])
    assert [m.tag for m in cfg.study.models] == ["x", "x-b"]


# ---- the footprint
@pytest.mark.parametrize(("name", "n"), sorted(PYTHIA.items()))
def test_pythia_shapes_give_the_published_parameter_counts(name, n):
    assert fp.architecture(f"EleutherAI/{name}").n_params() == n


def test_olmo2_parameter_counts():
    counts = {m: fp.architecture(f"allenai/{m}").n_params() for m in ("OLMo-2-0425-1B", "OLMo-2-1124-7B")}
    assert counts["OLMo-2-0425-1B"] == pytest.approx(1.48e9, rel=0.01)
    assert counts["OLMo-2-1124-7B"] == pytest.approx(7.30e9, rel=0.01)
    assert fp.architecture("allenai/OLMo-2-0325-32B").n_params() == pytest.approx(32.2e9, rel=0.01)
    assert fp.architecture("someone/unknown-model") is None


def test_footprint_known_answers():
    arch = fp.architecture("EleutherAI/pythia-1b")
    n = arch.n_params()
    work = fp.Workload(
        runs=4,
        steps=10,
        batch_size=8,
        retain=True,
        eval_points=2,
        eval_items=16,
        probes=1,
        candidates=10,
        gen_tokens=8,
        eval_batch=16,
    )
    f = fp.footprint(arch, work, mfu=0.5)
    # bf16 weights, gradients and two AdamW moments: 8 bytes per parameter.
    assert f.memory["weights"] + f.memory["gradients"] + f.memory["adamw"] == 8 * n
    assert f.memory["frozen_copy"] == 0
    rows, s = 16, fp.QA_TOKENS  # the forget and the retain batch
    assert f.memory["activations"] == int(16 * s * rows * 2048 * (34 + 5 * 8 * s / 2048))
    assert f.memory["logits"] == rows * s * 50304 * 10
    train = 6 * n * 10 * 16 * s
    score = 2 * n * 2 * 16 * 10 * s
    decode = 2 * 1 * 8 * 2 * n / fp.H200.bandwidth
    assert f.seconds_per_run == pytest.approx((train + score) / (0.5 * fp.H200.bf16_flops) + decode)
    assert f.seconds == pytest.approx(4 * f.seconds_per_run) and f.fits
    with_copy = fp.footprint(arch, fp.Workload(runs=1, steps=1, batch_size=8, retain=True, frozen_copy=True))
    assert with_copy.memory["frozen_copy"] == 2 * n
    big = fp.footprint(fp.architecture("allenai/OLMo-2-0325-32B"), work)
    assert not big.fits and big.gpus_needed == 2 and "does NOT fit" in big.line()


# ---- a suite built here, counted from replayed API answers, unlearned end to end
def _neox_dir(root: Path, tok, hidden: int, seed: int) -> Path:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPTNeoXForCausalLM(config)
    path = root / f"neox-{hidden}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_footprint_counts_a_local_gptneox_exactly(tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    path = _neox_dir(tmp_path, tiny_tokenizer, 96, 0)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert fp.architecture(str(path)).n_params() == sum(p.numel() for p in model.parameters())


class Replay(BaseHTTPRequestHandler):
    """Answers each request with the recorded response to the same payload; an unrecorded one gets the
    API's error answer (so a query the fixture lacks fails the count, as the live service would not)."""

    answers: dict[str, dict] = {}
    asked: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).asked.append(payload)
        answer = type(self).answers.get(json.dumps(payload, sort_keys=True), {"error": "not recorded"})
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replay():
    records = json.loads(FIXTURE.read_text())["records"]
    Replay.answers = {json.dumps(r["request"], sort_keys=True): r["response"] for r in records}
    Replay.asked = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", records
    httpd.shutdown()
    httpd.server_close()


def test_a_suite_of_tiny_gptneox_models_runs_the_real_setting(tmp_path, tiny_tokenizer, replay):
    from frequnlearn.data.real import load_items
    from frequnlearn.records import write_jsonl

    url, records = replay
    items = load_items("builtin:country_capital")[:12]
    table = tmp_path / "capitals.jsonl"
    write_jsonl(table, items)
    small, large = _neox_dir(tmp_path, tiny_tokenizer, 32, 0), _neox_dir(tmp_path, tiny_tokenizer, 96, 1)
    config = tmp_path / "suite.yaml"
    config.write_text(
        f"""study:
  setting: real
  models:
    - {{id: {small}, name: neox-small}}
    - {{id: {large}, name: neox-large, corpus_epochs: 2.0}}
  items: {table}
  attribute: capital
  compare_by: bucket
  levels: [high, low]
  selections: [all]
  methods: [ga+gd]
  seeds: [0]
  eval_retain_size: 1
  eval_utility_size: 1
  n_boot: 100
count:
  backend: infinigram-api
  api_url: {url}
  api_index: v4_piletrain_llama
  cache_dir: {tmp_path / "cache"}
  measure: window
  max_diff_tokens: 100
  case_variants: [original, lower]
  requests_per_second: 1000
unlearn: {{lr: 1.0e-3, batch_size: 2, max_steps: 2, eval_steps: [1, 2]}}
evaluate: {{metrics: [prob, gen], probes: [question], max_new_tokens: 4, utility_tasks: []}}
"""
    )
    run = tmp_path / "run"
    assert main(["study", str(config), "--out", str(run), "--quiet"]) == 0
    # The counting stage: every recorded answer asked once, each item's count the sum over its spellings.
    assert len(Replay.asked) == len(records) == 24
    expected = {}
    for r in records:
        subject = r["request"]["query"].split(" AND ")[0]
        expected[subject.lower()] = expected.get(subject.lower(), 0) + r["response"]["count"]
    counted = {row["item_id"]: row for row in read_jsonl(run / "items" / "items.jsonl")}
    assert {row["subject"].lower(): row["frequency"] for row in counted.values()} == expected
    buckets = {
        b: sorted(i for i, row in counted.items() if row["bucket"] == b) for b in ("low", "medium", "high")
    }
    assert buckets["high"] == sorted(
        ["capital-algeria", "capital-angola", "capital-cameroon", "capital-democratic-republic-of-the-congo"]
    )
    assert buckets["low"] == sorted(
        ["capital-burundi", "capital-cape-verde", "capital-central-african-republic", "capital-comoros"]
    )
    # Every size scored once and unlearned at both levels with the same settings.
    for tag, path, epochs in (("neox-small", small, 1.0), ("neox-large", large, 2.0)):
        for level in ("high", "low"):
            record = read_json(run / "unlearn" / tag / "s0" / "ga+gd" / f"{level}-all" / "run.json")
            ident = record["run"]
            assert ident["model"] == tag and ident["corpus_epochs"] == epochs
            assert ident["n_params"] == fp.architecture(str(path)).n_params()
    # The report places the sizes by their parameters (a size trend needs them).
    params = (run / "report" / "parameters.csv").read_text().split()
    assert params[0] == "size,parameters" and [row.split(",")[0] for row in params[1:]] == [
        "neox-small",
        "neox-large",
    ]
    # A rerun finds every stage done and asks the API nothing.
    Replay.asked = []
    assert main(["study", str(config), "--out", str(run), "--quiet"]) == 0
    assert Replay.asked == []


# ---- the synthetic size suite for a 2-core CPU
def test_scale_30x_config_spans_thirty_fold_with_three_seeds(capsys, tmp_path):
    from frequnlearn.study.plan import param_span, plan

    cfg = load_study_config(CONFIGS / "scale-30x.yaml")
    s = cfg.study
    assert len(s.model_sizes) >= 5 and param_span(cfg) >= 30 and len(s.seeds) >= 3
    # Every size is pretrained until it knows the same share of forget_high (a knowledge target,
    # checked during training), within its own most epochs; one tokenizer, one thread.
    assert set(s.epochs_by_size) == set(s.model_sizes) and cfg.pretrain.vocab_size == 1024
    assert set(cfg.pretrain.stop_known) == {"forget_high"} and cfg.pretrain.eval_every > 0
    assert {cfg.pretrain_for(size, 0).model_preset().tokenizer for size in s.model_sizes} == {"corpus"}
    assert s.levels == ["forget_high", "forget_low"] and s.num_threads == 1
    # A budget well past the 20-30 steps after which forget_high still kept most of its accuracy, a
    # stopping rule that carries every run to forgetting level 0.25, and evaluations at least every
    # other step from the start to the last step.
    u = cfg.unlearn
    assert u.max_steps >= 100 and u.stop_forget_level <= 0.25 and u.stop_retain_drop is not None
    assert 0 < u.eval_every <= 2 and set(u.eval_steps) <= set(range(0, 4))
    pretrains = [t for t in plan(cfg) if t.kind == "pretrain"]
    assert len(pretrains) == len(s.model_sizes) * len(s.seeds)
    assert main(["study", str(CONFIGS / "scale-30x.yaml"), "--dry-run", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "mini 0.57M parameters" in out and "large 20.51M parameters" in out and "(x36.0 parameters" in out
    assert not (tmp_path / "run").exists()
