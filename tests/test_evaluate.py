from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.evaluate import COLUMNS, evaluate_items
from frequnlearn.evaluate.generation import (
    continuation_text,
    generation_scores,
    greedy_decode,
    stop_token_mask,
)
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import encode_completion, encode_prompt, get_prompt_format
from frequnlearn.records import BioPrompt, QAItem

FMT = get_prompt_format("plain")


class MarkovLM(torch.nn.Module):
    """Next-token logits depend only on the current token: a lookup table, so every score has a closed form."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


def ids(tok, text):
    return encode_completion(tok, text)


def item(i=0, answer="Paris", question="Who employs Alan Mathison Turing?", **kw):
    kw.setdefault("candidates", ["Apple", "London, UK"])
    return QAItem(
        item_id=f"p{i:05d}-employer",
        question=question,
        answer=answer,
        person_id=i,
        group="forget_high",
        attribute="employer",
        frequency=10.0,
        **kw,
    )


def cfg(**kw):
    return EvalConfig(**{"probes": ["question"], **kw})


def test_flat_model_closed_form(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    model = MarkovLM(vocab)
    df = evaluate_items(model, tiny_tokenizer, [item()], cfg(metrics=["prob"]), fmt=FMT)
    assert list(df.columns) == COLUMNS
    row = df.iloc[0]
    n = len(ids(tiny_tokenizer, " Paris"))
    assert row.family == "prob" and row.probe == "question" and row.frequency == 10.0
    assert row.n_answer_tokens == n
    assert row.logprob == pytest.approx(-n * math.log(vocab), rel=1e-6)
    assert row.p_norm == pytest.approx(1 / vocab, rel=1e-6)
    # Equal scores: a tie counts against the true answer.
    assert row["rank"] == 3 and row.rank_correct == 0.0
    assert row.truth_ratio == pytest.approx(1.0, rel=1e-6)


def test_designed_model_closed_form(tiny_tokenizer):
    tok = tiny_tokenizer
    vocab = len(tok)
    model = MarkovLM(vocab)
    colon = ids(tok, ":")[-1]
    paris = ids(tok, " Paris")
    a, b = 3.0, 1.5
    with torch.no_grad():
        model.table[colon, paris[0]] = a
        model.table[paris[0], paris[1]] = b
    z_a, z_b = vocab - 1 + math.exp(a), vocab - 1 + math.exp(b)
    true_lp = (a - math.log(z_a)) + (b - math.log(z_b))
    assert len(paris) == 2
    per_true = true_lp / 2

    def wrong_per_token(text):
        # First token is drawn from the ':' row (not favoured there), the rest from flat rows.
        toks = ids(tok, text)
        total = -math.log(z_a) - (len(toks) - 1) * math.log(vocab)
        assert all(t not in (colon, paris[0]) for t in toks[:-1])
        return total / len(toks)

    wrong = [wrong_per_token(" Apple"), wrong_per_token(" London, UK")]
    df = evaluate_items(model, tok, [item()], cfg(metrics=["prob"]), fmt=FMT)
    row = df.iloc[0]
    assert row.logprob == pytest.approx(true_lp, rel=1e-6)
    assert row.logprob_per_token == pytest.approx(per_true, rel=1e-6)
    assert row.p_norm == pytest.approx(math.exp(per_true), rel=1e-6)
    assert row["rank"] == 1 and row.rank_correct == 1.0
    assert row.truth_ratio == pytest.approx(np.mean([math.exp(w - per_true) for w in wrong]), rel=1e-6)

    # Make the rest of one wrong candidate near-certain: it overtakes the true answer, the other does not.
    apple = ids(tok, " Apple")
    with torch.no_grad():
        for prev, nxt in zip(apple, apple[1:]):
            model.table[prev, nxt] = 40.0
    row = evaluate_items(model, tok, [item()], cfg(metrics=["prob"]), fmt=FMT).iloc[0]
    assert row["rank"] == 2 and row.rank_correct == 0.0


def chain_model(tok, text, start=":"):
    """Greedy decoding after a prompt ending in `start` yields `text`, then a newline."""
    model = MarkovLM(len(tok))
    chain = [ids(tok, start)[-1], *ids(tok, text), ids(tok, "\n")[0]]
    assert len(set(chain)) == len(chain), "a Markov chain cannot repeat a token"
    with torch.no_grad():
        for prev, nxt in zip(chain, chain[1:]):
            model.table[prev, nxt] = 10.0
    return model


def test_generation_scored_on_continuation_only(tiny_tokenizer):
    tok = tiny_tokenizer
    model = chain_model(tok, " Paris")
    items = [
        item(0, answer="Paris"),
        item(1, answer="Paris City"),
        # The answer is in the question: scoring prompt + continuation would call this known.
        item(2, answer="Alan Turing", question="Who is Alan Turing?"),
    ]
    df = evaluate_items(model, tok, items, cfg(metrics=["gen"]), fmt=FMT).set_index("item_id")
    assert (df.family == "gen").all()
    assert df.generation.tolist() == ["Paris"] * 3
    assert df.exact.tolist() == [1.0, 0.0, 0.0]
    assert df.contains.tolist() == [1.0, 0.0, 0.0]
    assert df.rougeL_recall.tolist() == [1.0, 0.5, 0.0]


def test_greedy_stops_at_newline_and_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    model = chain_model(tok, " Paris")
    prompt = encode_prompt(tok, "Answer:")
    stop = stop_token_mask(tok, len(tok))
    out = greedy_decode(model, [prompt], stop, tok.pad_token_id, max_new_tokens=10, batch_size=1, budget=1000)
    assert out[0] == [*ids(tok, " Paris"), ids(tok, "\n")[0]]
    assert continuation_text(tok, out[0]) == "Paris"
    out = greedy_decode(model, [prompt], stop, tok.pad_token_id, max_new_tokens=1, batch_size=1, budget=1000)
    assert len(out[0]) == 1


def test_true_false_picks_larger_probability(tiny_tokenizer):
    tok = tiny_tokenizer
    vocab = len(tok)
    model = MarkovLM(vocab)
    colon = ids(tok, ":")[-1]
    t, f = ids(tok, " True")[0], ids(tok, " False")[0]
    items = [item(i) for i in range(4)]
    with torch.no_grad():
        model.table[colon, t], model.table[colon, f] = 2.0, 1.0
    df = evaluate_items(model, tok, items, cfg(metrics=["tf"]), fmt=FMT)
    z = vocab - 2 + math.exp(2) + math.exp(1)
    assert (df.family == "tf").all() and len(df) == 4
    np.testing.assert_allclose(df.p_true, math.exp(2) / z, rtol=1e-6)
    np.testing.assert_allclose(df.p_false, math.exp(1) / z, rtol=1e-6)
    assert (df.tf_correct == 1.0).all()
    with torch.no_grad():
        model.table[colon, t], model.table[colon, f] = 1.0, 2.0
    df = evaluate_items(model, tok, items, cfg(metrics=["tf"]), fmt=FMT)
    assert (df.tf_correct == 0.0).all()


def test_true_false_shots_and_prompt(tiny_tokenizer):
    from frequnlearn.evaluate.truefalse import encode_split, shot_sets, tf_texts

    pool = [item(i, answer=f"A{i}", question=f"Who employs Ada {i}?", candidates=[f"W{i}"]) for i in range(8)]
    for it in pool[4:]:
        it.group = "retain"
    sets = shot_sets(pool, 2, seed=0)
    assert [len(s) for s in sets] == [2, 2]
    people = [{shot.person_id for shot, _, _ in s} for s in sets]
    assert not people[0] & people[1]
    # Enough retain people for both sets: the examples are retain facts, known throughout unlearning.
    assert all(shot.group == "retain" for s in sets for shot, _, _ in s)
    for s in sets:
        assert s[0][2] != s[1][2]
        for shot, answer, is_true in s:
            assert answer == (shot.answer if is_true else shot.candidates[0])
    assert shot_sets(pool, 2, seed=0) == sets

    query_item = pool[0]
    prefix, query = tf_texts(query_item, query_item.question, sets, FMT, tiny_tokenizer)
    text = prefix + query
    assert text.endswith(f"Question: {query_item.question}\nAnswer: A0\nTrue or False:")
    assert text.count("True or False:") == 3
    # An item about a person in the first set is asked after the second set.
    shown = sets[0][0][0]
    prefix_b, _ = tf_texts(shown, shown.question, sets, FMT, tiny_tokenizer)
    assert shown.question not in prefix_b and prefix_b != prefix
    head, rest = encode_split(lambda t: encode_prompt(tiny_tokenizer, t), prefix, query)
    assert head + rest == encode_prompt(tiny_tokenizer, text)
    assert head == encode_prompt(tiny_tokenizer, prefix)


def test_generation_scores_text():
    assert generation_scores("March 4, 1987.", "March 4, 1987") == {
        "rougeL_recall": 1.0,
        "exact": 1.0,
        "contains": 1.0,
    }
    assert generation_scores("4 March 1987", "March 4, 1987")["rougeL_recall"] == pytest.approx(2 / 3)
    s = generation_scores("born on march 4 1987 in", "March 4, 1987")
    assert s["contains"] == 1.0 and s["exact"] == 0.0 and s["rougeL_recall"] == 1.0
    # rouge_score's own tokenizer drops non-ASCII letters entirely; ours keeps them.
    assert generation_scores("東京", "東京")["rougeL_recall"] == 1.0
    assert generation_scores("Zürich", "Zurich")["exact"] == 0.0
    assert generation_scores("Googleplex", "Google")["contains"] == 0.0
    # A biography goes on after the value: a continuation starting with it is exact.
    assert generation_scores("Google in Cupertino", "Google", prefix=True)["exact"] == 1.0
    assert generation_scores("Googleplex", "Google", prefix=True)["exact"] == 0.0


def test_rows_and_identity(tiny_tokenizer):
    model = MarkovLM(len(tiny_tokenizer))
    items = [item(0, paraphrase="Where does Alan work?"), item(1)]
    bios = [
        BioPrompt(
            item_id=items[0].item_id,
            person_id=0,
            group="forget_high",
            attribute="employer",
            prompt="He works for",
            target="Paris",
        ),
        BioPrompt(
            item_id="p99999-employer",
            person_id=99,
            group="retain",
            attribute="employer",
            prompt="x",
            target="y",
        ),
    ]
    config = EvalConfig(probes=["question", "paraphrase"], max_new_tokens=3, tf_shots=1)
    df = evaluate_items(
        model, tiny_tokenizer, items, config, fmt=FMT, bio_prompts=bios, step=7, model_name="m", run_id="r"
    )
    counts = df.groupby(["item_id", "probe"]).family.apply(lambda s: "".join(sorted(s))).to_dict()
    assert counts == {
        ("p00000-employer", "question"): "genprobtf",
        ("p00000-employer", "paraphrase"): "genprobtf",
        ("p00000-employer", "bio"): "genprob",
        ("p00001-employer", "question"): "genprobtf",
    }
    assert (df.step == 7).all() and (df.model == "m").all() and (df.run_id == "r").all()
    prob = df[df.family == "prob"]
    assert prob.p_true.isna().all() and prob.generation.isna().all() and prob.logprob.notna().all()
    bio = df[(df.probe == "bio") & (df.family == "prob")].iloc[0]
    assert bio.n_answer_tokens == len(ids(tiny_tokenizer, " Paris")) and bio["rank"] == 3


def test_model_mode_restored(tiny_tokenizer):
    model = MarkovLM(len(tiny_tokenizer)).train()
    evaluate_items(model, tiny_tokenizer, [item()], cfg(metrics=["prob"]), fmt=FMT)
    assert model.training


def test_too_long_for_model(tiny_gpt2_dir):
    from frequnlearn.errors import DataError

    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    with pytest.raises(DataError, match="max_new_tokens"):
        evaluate_items(model, tok, [item()], cfg(metrics=["gen"], max_new_tokens=500), fmt=FMT)


def _mixed_items():
    questions = [
        "Who employs Ada?",
        "Who employs Alan Mathison Turing, born in London?",
        "What is the birth city of Ada Mae Lovelace?",
        "Who?",
        "Where does Alan Turing work now?",
    ]
    answers = ["Google", "Apple in Cupertino, CA", "London, UK", "Paris", "Stanford University"]
    return [
        item(
            i,
            answer=a,
            question=q,
            paraphrase=q.replace("Who", "Which company"),
            candidates=["Apple", "Paris", "I don't know"],
        )
        for i, (q, a) in enumerate(zip(questions, answers))
    ]


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_batch_size_invariance(fixture, request):
    model, tok = load_model_and_tokenizer(request.getfixturevalue(fixture))
    items = _mixed_items()
    bios = [
        BioPrompt(
            item_id=it.item_id,
            person_id=it.person_id,
            group=it.group,
            attribute="employer",
            prompt="She works for" + " x" * i,
            target=it.answer,
        )
        for i, it in enumerate(items)
    ]
    frames = [
        evaluate_items(
            model,
            tok,
            items,
            EvalConfig(batch_size=bs, max_new_tokens=6, tf_shots=1),
            fmt=FMT,
            bio_prompts=bios,
        )
        for bs in (1, 3, "auto")
    ]
    numeric = [c for c in COLUMNS if frames[0][c].dtype == "float64"]
    for df in frames[1:]:
        np.testing.assert_allclose(df[numeric].to_numpy(), frames[0][numeric].to_numpy(), atol=1e-5, rtol=0)
        assert df.generation.fillna("").tolist() == frames[0].generation.fillna("").tolist()
    assert np.isfinite(frames[0].logprob.dropna()).all() and frames[0].logprob.notna().sum() == 15


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_decode_matches_transformers_generate(fixture, request):
    """Left padding + KV cache give the tokens that plain `generate` gives each prompt alone."""
    model, tok = load_model_and_tokenizer(request.getfixturevalue(fixture))
    prompts = [encode_prompt(tok, FMT.prompt(it.question)) for it in _mixed_items()]
    stop = stop_token_mask(tok, model.config.vocab_size)
    ours = greedy_decode(model, prompts, stop, tok.pad_token_id, max_new_tokens=8, batch_size=5, budget=0)
    for prompt, got in zip(prompts, ours):
        ref = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )[0, len(prompt) :].tolist()
        cut = next((k + 1 for k, t in enumerate(ref) if stop[t]), len(ref))
        assert got == ref[:cut]


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_shared_prompt_scoring_equals_full_sequences(fixture, request):
    """Scoring completions from a cached prompt gives the log-probs of scoring each sequence whole."""
    from frequnlearn.evaluate.probability import full_sequence_log_probs, shared_prompt_log_probs

    model, _ = load_model_and_tokenizer(request.getfixturevalue(fixture))
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    prompts = [rng.integers(1, vocab, size=rng.integers(2, 20)).tolist() for _ in range(5)]
    pairs = [(p, rng.integers(1, vocab, size=rng.integers(1, 6)).tolist()) for p in prompts for _ in range(4)]
    ref = [full_sequence_log_probs(model, [pair], 0, 1, 0)[0] for pair in pairs]
    for bs, budget in ((1, 0), (3, 0), ("auto", 60), ("auto", 10_000)):
        got = shared_prompt_log_probs(model, pairs, 0, bs, budget)
        assert [len(g) for g in got] == [len(c) for _, c in pairs]
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_cached_prefix_true_false_equals_full_sequences(fixture, request):
    from frequnlearn.evaluate.truefalse import next_token_probs

    model, tok = load_model_and_tokenizer(request.getfixturevalue(fixture))
    rng = np.random.default_rng(1)
    vocab = model.config.vocab_size
    prefixes = [rng.integers(1, vocab, size=n).tolist() for n in (1, 9, 30)]
    pairs = [
        (p, rng.integers(1, vocab, size=rng.integers(1, 12)).tolist()) for p in prefixes for _ in range(3)
    ]
    tokens = [5, 17]
    full = MarkovLM(vocab)  # any model without a cache takes the whole-sequence path
    full.forward = lambda input_ids, attention_mask=None, **kw: model(
        input_ids=input_ids, attention_mask=attention_mask
    )
    ref = next_token_probs(full, pairs, tokens, 0, 1, 0)
    for bs, budget in ((1, 0), (4, 0), ("auto", 50), ("auto", 10_000)):
        np.testing.assert_allclose(
            next_token_probs(model, pairs, tokens, 0, bs, budget), ref, rtol=1e-4, atol=1e-7
        )


def test_auto_budget_follows_model_size(tiny_tokenizer):
    from transformers import GPT2Config, LlamaConfig

    from frequnlearn.evaluate.batching import CPU_TOKEN_BUDGET, plan_batches, token_budget

    small = MarkovLM(len(tiny_tokenizer))
    small.config = GPT2Config(n_layer=4, n_embd=128, vocab_size=2048)
    assert token_budget(small) == CPU_TOKEN_BUDGET
    big = MarkovLM(4)
    big.config = LlamaConfig(hidden_size=8192, num_hidden_layers=80, vocab_size=128_256)
    assert token_budget(big) < token_budget(small)
    batches = list(plan_batches([10, 30, 20, 5], "auto", budget=60))
    assert batches == [[1, 2], [0, 3]]  # longest first; rows x widest row within the budget
    assert list(plan_batches([10, 30, 20, 5], 3, budget=0)) == [[1, 2, 0], [3]]


def test_eval_config_checks():
    from frequnlearn.config import from_dict
    from frequnlearn.errors import ConfigError

    assert from_dict(EvalConfig, {"batch_size": 8}).batch_size == 8
    assert from_dict(EvalConfig, {"batch_size": "auto"}).batch_size == "auto"
    for bad, key in (
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "big"}, "batch_size"),
        ({"metrics": ["prob", "probability"]}, "metrics"),
        ({"probes": ["bio"]}, "probes"),
        ({"ci": 1.5}, "ci"),
    ):
        with pytest.raises(ConfigError, match=key):
            from_dict(EvalConfig, bad)


def test_same_state_wrong_city_is_not_known(tiny_tokenizer):
    """ROUGE-L recall gives "Anaheim, CA" half marks for "Escondido, CA"; the one "known" rule does not."""
    tok = tiny_tokenizer
    model = chain_model(tok, " Anaheim, CA")
    items = [
        item(0, answer="Escondido, CA"),
        item(1, answer="Anaheim, CA"),
        item(2, answer="the Anaheim, CA"),
    ]
    df = evaluate_items(model, tok, items, cfg(metrics=["gen"]), fmt=FMT).set_index("item_id")
    assert df.generation.tolist() == ["Anaheim, CA"] * 3
    assert df.rougeL_recall.iloc[0] == 0.5
    assert df.known.tolist() == [0.0, 1.0, 1.0]
    # The rouge rule stays selectable and reproduces the old verdict.
    old = evaluate_items(model, tok, items[:1], cfg(metrics=["gen"], known="rouge"), fmt=FMT)
    assert old.known.tolist() == [1.0]


def test_known_rule_normalises_and_needs_the_whole_value():
    from frequnlearn.evaluate.known import is_known

    assert is_known("Houston, TX. She", "Houston, TX")
    assert is_known("The Ohio State University", "Ohio State University")
    assert not is_known("Mobile, TX", "Houston, TX")
    assert not is_known("Rosa, CA", "Roseville, CA")
    assert not is_known("Houston", "Houston, TX")
    assert not is_known("Houstonia, TX", "Houston, TX")
    assert not is_known("anything", "")


def test_contains_rule_finds_the_whole_value_in_a_sentence():
    from frequnlearn.evaluate.known import is_known

    assert is_known("The capital of Chile is Santiago.", "Santiago", "contains")
    assert is_known("She was born in Houston, TX.", "Houston, TX", "contains")
    assert not is_known("She was born in Mobile, TX.", "Houston, TX", "contains")
    assert not is_known("The capital is Santiagoville.", "Santiago", "contains")
    assert not is_known("The capital of Chile is Santiago.", "Santiago", "exact")


def test_nan_model_gets_no_rank_and_no_verdict(tiny_tokenizer):
    """`rank = 1 + sum(wrong >= true)` is 1 when everything is NaN: such rows must not score."""
    model = MarkovLM(len(tiny_tokenizer))
    with torch.no_grad():
        model.table.fill_(float("nan"))
    df = evaluate_items(
        model, tiny_tokenizer, [item()], cfg(metrics=["prob", "gen", "tf"], tf_shots=0), fmt=FMT
    )
    assert not df["finite"].any() and df["finite"].dtype == bool
    prob = df[df.family == "prob"].iloc[0]
    assert math.isnan(prob["rank"]) and math.isnan(prob.rank_correct) and math.isnan(prob.margin)
    gen = df[df.family == "gen"].iloc[0]
    assert math.isnan(gen.known) and math.isnan(gen.rougeL_recall)
    assert math.isnan(df[df.family == "tf"].iloc[0].tf_correct)


def test_margin_is_truth_minus_best_wrong(tiny_tokenizer):
    from frequnlearn.evaluate.probability import likelihood_metrics

    row = likelihood_metrics(np.array([-1.0, -2.0]), [np.array([-3.0]), np.array([-0.5, -2.5])])
    assert row["finite"] and row["margin"] == pytest.approx(-1.5 - (-1.5)) and row["rank"] == 2
    row = likelihood_metrics(np.array([-1.0]), [np.array([-3.0]), np.array([np.nan])])
    assert not row["finite"] and math.isnan(row["rank"]) and math.isnan(row["logprob"])


def test_a_family_registered_here_runs_through_evaluate_items(tiny_tokenizer):
    """A new metric family is one class: registered, it is a valid `metrics` value, its columns join the
    rows, it scores the probes it takes (bio ones added by the bio family too) and is summarised."""
    from frequnlearn.config import from_dict
    from frequnlearn.errors import ConfigError
    from frequnlearn.evaluate.columns import numeric_metrics, row_columns
    from frequnlearn.evaluate.families import FAMILIES, Family, register_family
    from frequnlearn.evaluate.summary import summarize

    @register_family(
        "toy", probes=("question", "bio"), columns={"prompt_tokens": float, "echo": str}, help="test"
    )
    class Toy(Family):
        def score(self, probes, state, ctx):
            return [{"prompt_tokens": float(len(p.prompt_ids)), "echo": p.answer.upper()} for p in probes]

    try:
        config = from_dict(EvalConfig, {"metrics": ["toy", "bio"], "probes": ["question", "paraphrase"]})
        bio = BioPrompt(
            item_id=item().item_id,
            person_id=0,
            group="forget_high",
            attribute="employer",
            prompt="He works for",
            target="Paris",
        )
        model = MarkovLM(len(tiny_tokenizer))
        df = evaluate_items(
            model, tiny_tokenizer, [item(paraphrase="Where?")], config, fmt=FMT, bio_prompts=[bio]
        )
        assert list(df.columns) == row_columns() == COLUMNS + ["prompt_tokens", "echo"]
        assert sorted(zip(df.family, df.probe)) == [
            ("gen", "bio"),
            ("prob", "bio"),
            ("toy", "bio"),
            ("toy", "question"),
        ]
        toy = df[df.family == "toy"].set_index("probe")
        question = encode_prompt(tiny_tokenizer, FMT.prompt(item().question, tiny_tokenizer))
        assert toy.loc["question", "prompt_tokens"] == len(question)
        assert toy.loc["bio", "prompt_tokens"] == len(encode_prompt(tiny_tokenizer, "He works for"))
        assert (toy.echo == "PARIS").all() and df.loc[df.family != "toy", "echo"].isna().all()
        assert df["prompt_tokens"].dtype == "float64" and "prompt_tokens" in numeric_metrics()
        assert "prompt_tokens" in set(summarize(df, by=["probe"], n_boot=0).metric)
    finally:
        FAMILIES.pop("toy")
    with pytest.raises(ConfigError, match="unknown metric family 'toy'"):
        from_dict(EvalConfig, {"metrics": ["toy"]})


def test_a_family_must_declare_known_needs_and_column_kinds():
    from frequnlearn.evaluate.families import FAMILIES, Family, register_family

    with pytest.raises(TypeError, match="unknown need 'gpu'"):
        register_family("bad", needs=("gpu",), help="x")(Family)
    with pytest.raises(TypeError, match="column n must be float or str"):
        register_family("bad", columns={"n": int}, help="x")(Family)
    assert "bad" not in FAMILIES
