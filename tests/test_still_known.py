"""Two views of "still known" beyond greedy decoding, each against its closed form: membership
inference scores and their AUC (0.5 for a model that saw neither set, 1.0 for a planted separator),
and probabilistic extraction on a model whose next-token distributions are fixed."""

from __future__ import annotations

import math
import random
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from frequnlearn.config.evaluate import EvalConfig
from frequnlearn.errors import ConfigError
from frequnlearn.evaluate import COLUMNS, evaluate_items
from frequnlearn.evaluate.families.extract import answer_end_mask, at_least_once
from frequnlearn.evaluate.families.mia import SCORES, mia_auc, mia_aucs, mia_scores
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import encode_completion, encode_prompt, get_prompt_format
from frequnlearn.records import QAItem

FMT = get_prompt_format("plain")


class MarkovLM(torch.nn.Module):
    """Next-token logits depend only on the current token: a lookup table, so every score has a closed form."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


def qa(i: int, answer: str, question: str = "Who employs Alan Mathison Turing?") -> QAItem:
    return QAItem(f"i{i}", question, answer, paraphrase=f"Who is the employer of person {i}?")


def cfg(**kw) -> EvalConfig:
    return EvalConfig(**{"probes": ["question"], **kw})


def rows(df, family: str):
    return df[df["family"] == family].reset_index(drop=True)


# ---------------------------------------------------------------- extraction


def test_extraction_equals_its_closed_form(tiny_tokenizer):
    tok = tiny_tokenizer
    vocab = len(tok)
    item = qa(0, "Paris")
    last = encode_prompt(tok, FMT.prompt(item.question))[-1]
    answer = encode_completion(tok, FMT.completion("Paris"))
    assert len(answer) == 2
    table = torch.zeros(vocab, vocab)
    a, b, c = 3.0, 1.5, 2.0
    table[last, answer[0]] = a
    table[answer[0], answer[1]] = b
    table[answer[1], tok.eos_token_id] = c
    ends = int(answer_end_mask(tok, vocab).sum())
    n = 7
    df = evaluate_items(MarkovLM(table), tok, [item], cfg(metrics=["extract"], extraction_samples=n), fmt=FMT)
    row = rows(df, "extract").iloc[0]
    p1 = math.exp(a) / (math.exp(a) + vocab - 1)
    p2 = math.exp(b) / (math.exp(b) + vocab - 1)
    # After the answer: end of text at logit c, every other answer-ending token at 0.
    p_end = (math.exp(c) + ends - 1) / (math.exp(c) + vocab - 1)
    assert row.extract_p == pytest.approx(p1 * p2, rel=1e-6)
    assert row.extract_pn == pytest.approx(1 - (1 - p1 * p2) ** n, rel=1e-6)
    assert row.extract_exact_p == pytest.approx(p1 * p2 * p_end, rel=1e-6)
    assert row.extract_exact_pn == pytest.approx(1 - (1 - p1 * p2 * p_end) ** n, rel=1e-6)
    assert list(df.columns) == COLUMNS and {"extract_p", "mia_minkpp"} <= set(COLUMNS)


def test_extraction_is_what_sampling_gives(tiny_tokenizer):
    """The exact p is the frequency with which temperature-1 samples start with the answer."""
    tok = tiny_tokenizer
    vocab = len(tok)
    item = qa(0, "Paris")
    last = encode_prompt(tok, FMT.prompt(item.question))[-1]
    answer = encode_completion(tok, FMT.completion("Paris"))
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(vocab, vocab, generator=gen)
    table[last, answer[0]] = 6.0
    table[answer[0], answer[1]] = 5.0
    df = evaluate_items(MarkovLM(table), tok, [item], cfg(metrics=["extract"]), fmt=FMT)
    p = rows(df, "extract").iloc[0].extract_p
    draws = 40_000
    probs = table.softmax(-1)
    first = torch.multinomial(probs[last], draws, replacement=True, generator=gen)
    second = torch.multinomial(probs[first], 1, generator=gen).squeeze(-1)
    hits = ((first == answer[0]) & (second == answer[1])).double().mean().item()
    assert 0.05 < p < 0.95
    assert hits == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / draws))


def test_answer_end_mask_keeps_only_tokens_that_end_the_answer_exactly():
    class Tok:
        vocab = ["<eos>", "a", "\n", "b\n", " \n", "c"]
        eos_token_id = pad_token_id = 0

        def __len__(self):
            return len(self.vocab)

        def batch_decode(self, ids):
            return [self.vocab[i[0]] for i in ids]

        def decode(self, ids):
            return "".join(self.vocab[i] for i in ids)

    # Greedy decoding stops at each of 0, 2, 3, 4; "b\n" would add "b" to the answer.
    assert answer_end_mask(Tok(), 6).nonzero().flatten().tolist() == [0, 2, 4]


def test_at_least_once():
    assert at_least_once(0.0, 10) == 0.0 and at_least_once(1.0, 3) == 1.0
    assert at_least_once(0.2, 3) == pytest.approx(1 - 0.8**3)
    # Tiny p: n p, where the direct form would round to 0.
    assert at_least_once(1e-18, 100) == pytest.approx(1e-16, rel=1e-6)


# ---------------------------------------------------------------- membership inference


def test_mia_scores_formulas():
    logp = np.array([-0.1, -2.0, -0.5, -4.0, -1.0, -0.2, -3.0, -0.3, -0.05, -1.5])
    mu = np.array([-1.0] * 5 + [-0.5] * 5)
    var = np.array([0.25] * 5 + [4.0] * 5)
    text = "Stanford University"
    got = mia_scores(logp, mu, var, text, k=0.2)
    assert got["mia_loss"] == pytest.approx(logp.mean())
    assert got["mia_zlib"] == pytest.approx(logp.mean() / len(zlib.compress(text.encode())))
    # k = 20% of 10 tokens: the two lowest.
    assert got["mia_mink"] == pytest.approx((-4.0 + -3.0) / 2)
    z = sorted((lp - m) / math.sqrt(v) for lp, m, v in zip(logp, mu, var))
    assert got["mia_minkpp"] == pytest.approx((z[0] + z[1]) / 2)
    # At least one token, however short the answer.
    one = mia_scores(np.array([-2.0]), np.array([-1.0]), np.array([1.0]), "Paris", k=0.2)
    assert one["mia_mink"] == -2.0 and one["mia_minkpp"] == pytest.approx(-1.0)


def test_mia_on_a_fixed_model_matches_the_prob_family(tiny_tokenizer):
    tok = tiny_tokenizer
    vocab = len(tok)
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(vocab, vocab, generator=gen)
    items = [qa(0, "Paris"), qa(1, "Stanford University"), qa(2, "London, UK")]
    df = evaluate_items(MarkovLM(table), tok, items, cfg(metrics=["prob", "mia"], mia_k=0.5), fmt=FMT)
    prob, mia = rows(df, "prob"), rows(df, "mia")
    assert mia["mia_loss"].tolist() == pytest.approx(prob["logprob_per_token"].tolist(), rel=1e-6)
    logq = table.log_softmax(-1).double()
    for it, row in zip(items, mia.itertuples()):
        ids = encode_prompt(tok, FMT.prompt(it.question)) + encode_completion(tok, FMT.completion(it.answer))
        n = len(ids) - len(encode_prompt(tok, FMT.prompt(it.question)))
        prev, nxt = ids[-n - 1 : -1], ids[-n:]
        lp = np.array([logq[a, b].item() for a, b in zip(prev, nxt)])
        mu = np.array([(logq[a].exp() * logq[a]).sum().item() for a in prev])
        var = np.array([(logq[a].exp() * logq[a] ** 2).sum().item() for a in prev]) - mu**2
        z = np.sort((lp - mu) / np.sqrt(var))
        assert row.mia_minkpp == pytest.approx(z[: max(1, n // 2)].mean(), rel=1e-6)


def test_mia_auc():
    assert mia_auc([3.0, 4.0, 5.0], [1.0, 2.0]) == 1.0
    assert mia_auc([1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert mia_auc([1.0, 1.0], [1.0]) == 0.5
    assert mia_auc([1.0, float("nan"), 3.0], [2.0]) == 0.5
    assert math.isnan(mia_auc([], [1.0]))
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.3, 1, 40), rng.normal(0, 1, 30)
    pairs = np.mean([(a > b) + 0.5 * (a == b) for a in x for b in y])
    assert mia_auc(x, y) == pytest.approx(pairs)


NAMES = ["Ada", "Alan", "Mae", "Mathison", "Turing", "Lovelace"]
ANSWERS = ["Paris", "Google", "Apple", "London, UK", "Stanford University", "Cupertino, CA", "Physics"]


def _people(n: int, rng: random.Random, answers: list[str], start: int) -> list[QAItem]:
    return [
        qa(start + i, rng.choice(answers), f"Who employs {rng.choice(NAMES)} {rng.choice(NAMES)}?")
        for i in range(n)
    ]


def test_mia_auc_is_chance_for_a_model_that_saw_neither_set(tiny_gpt2_dir):
    model, tok = load_model_and_tokenizer(tiny_gpt2_dir)
    rng = random.Random(0)
    members, others = _people(120, rng, ANSWERS, 0), _people(120, rng, ANSWERS, 1000)
    c = cfg(metrics=["mia"], batch_size=64)
    aucs = mia_aucs(
        evaluate_items(model, tok, members, c, fmt=FMT), evaluate_items(model, tok, others, c, fmt=FMT)
    )
    # Two draws from one distribution of items, a model that never trained: the AUC's standard error
    # is about 0.037 at 120 + 120, so 0.5 +- 0.12 is more than three of them.
    assert set(aucs) == set(SCORES)
    for name, auc in aucs.items():
        assert abs(auc - 0.5) < 0.12, (name, auc)


def test_mia_auc_is_one_for_a_planted_perfect_separator(tiny_tokenizer):
    tok = tiny_tokenizer
    member_answers, other_answers = ["Google", "Apple", "Physics"], ["Paris", "London, UK", "Cupertino, CA"]
    planted = {t for a in member_answers for t in encode_completion(tok, FMT.completion(a))}
    for a in other_answers:
        assert set(encode_completion(tok, FMT.completion(a))) - planted, a
    # Every position strongly predicts the members' answer tokens and nothing else.
    table = torch.zeros(len(tok), len(tok))
    table[:, sorted(planted)] = 10.0
    rng = random.Random(1)
    members, others = _people(30, rng, member_answers, 0), _people(30, rng, other_answers, 1000)
    model = MarkovLM(table)
    c = cfg(metrics=["mia"], probes=["question", "paraphrase"])
    m, o = evaluate_items(model, tok, members, c, fmt=FMT), evaluate_items(model, tok, others, c, fmt=FMT)
    for probe in ("question", "paraphrase"):
        assert mia_aucs(m, o, probe) == dict.fromkeys(SCORES, 1.0)
        assert mia_aucs(o, m, probe) == dict.fromkeys(SCORES, 0.0)


def test_broken_logits_give_no_score(tiny_tokenizer):
    table = torch.full((len(tiny_tokenizer),) * 2, float("nan"))
    df = evaluate_items(
        MarkovLM(table), tiny_tokenizer, [qa(0, "Paris")], cfg(metrics=["mia", "extract"]), fmt=FMT
    )
    assert not df["finite"].any() and df[["mia_loss", "extract_p"]].isna().all().all()


@pytest.mark.parametrize("key, value", [("mia_k", 0.0), ("mia_k", 1.5), ("extraction_samples", 0)])
def test_settings_are_checked(key, value):
    from frequnlearn.config import from_dict

    with pytest.raises(ConfigError, match=f"^{key}: must"):
        from_dict(EvalConfig, {key: value})
