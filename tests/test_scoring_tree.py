"""Token-tree scoring (one row per prompt, a 4D mask) gives the log-probs of each sequence scored alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frequnlearn.evaluate.probability import (
    completion_log_probs,
    shared_prompt_log_probs,
    tree_log_probs,
    tree_scorer,
)

VOCAB = 61


def _sharpen(model: torch.nn.Module) -> torch.nn.Module:
    """Large random weights: attention and logits far from uniform, so a token attending to anything
    its plain sequence does not hold, or sitting at another position, moves its log-probs visibly."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.ndim > 1 else 0.1))
    return model.eval()


def gpt2(attn: str = "sdpa") -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=96, n_embd=32, n_layer=2, n_head=4)
    config._attn_implementation = attn
    return _sharpen(GPT2LMHeadModel(config))


def llama(attn: str = "sdpa") -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=96,
    )
    config._attn_implementation = attn
    return _sharpen(LlamaForCausalLM(config))


MODELS = {"gpt2-sdpa": gpt2, "gpt2-eager": lambda: gpt2("eager"), "llama-sdpa": llama}
MODELS["llama-eager"] = lambda: llama("eager")


@torch.inference_mode()
def alone(model, pairs):
    """Each (prompt + completion) on its own, unpadded: the definition every path must meet."""
    out = []
    for prompt, completion in pairs:
        logp = model(input_ids=torch.tensor([prompt + completion])).logits[0].float().log_softmax(-1)
        rows = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
        out.append(logp[rows, torch.tensor(completion)].double().numpy())
    return out


def mixed_pairs(seed: int = 0):
    """Odd prompt lengths, completions of 1 to 6 tokens sharing prefixes, a repeated pair, and one
    prompt that is the prefix of another."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(1, VOCAB, size=n).tolist() for n in (1, 2, 7, 13, 30)]
    prompts.append(prompts[3] + [5, 9])
    pairs = []
    for p in prompts:
        stem = rng.integers(1, VOCAB, size=3).tolist()
        for _ in range(int(rng.integers(1, 6))):
            pairs.append((p, rng.integers(1, VOCAB, size=int(rng.integers(1, 7))).tolist()))
        pairs.append((p, stem[:1]))
        pairs.append((p, stem + [7]))
        pairs.append((p, stem[:2]))
    pairs.append(pairs[2])
    order = np.random.default_rng(seed + 1).permutation(len(pairs))
    return [pairs[i] for i in order]


@pytest.mark.parametrize("name", list(MODELS))
def test_tree_equals_each_sequence_alone(name):
    model = MODELS[name]()
    assert tree_scorer(model) is model
    pairs = mixed_pairs()
    ref = alone(model, pairs)
    for bs, budget in ((1, 0), (3, 0), (1000, 0), ("auto", 40), ("auto", 10_000)):
        got = tree_log_probs(model, pairs, 0, bs, budget)
        assert [len(g) for g in got] == [len(c) for _, c in pairs]
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(ref), atol=1e-5, rtol=0)
    # The same numbers as the cached-prompt path it replaces.
    old = shared_prompt_log_probs(model, pairs, 0, "auto", 10_000)
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(old), atol=1e-5, rtol=0)


def test_the_check_can_fail_a_wrong_position():
    """Guard on the test itself: with the sharpened weights, one position off is far beyond tolerance."""
    model = gpt2()
    prompt, completion = [3, 8, 21, 40], [11, 12, 13]
    ref = alone(model, [(prompt, completion)])[0]
    shifted = alone(model, [([1] + prompt, completion)])[0]
    assert np.max(np.abs(ref - shifted)) > 1e-2


def test_completion_log_probs_takes_the_tree_path_and_others_fall_back():
    model = llama()
    pairs = mixed_pairs(3)
    np.testing.assert_allclose(
        np.concatenate(completion_log_probs(model, pairs, 0, "auto", 500)),
        np.concatenate(alone(model, pairs)),
        atol=1e-5,
        rtol=0,
    )
    # An architecture not read for 4D masks, and an attention kernel that takes none, keep the old paths.
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    neox = GPTNeoXForCausalLM(
        GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    assert tree_scorer(neox) is None
    flash = gpt2()
    flash.config._attn_implementation = "flash_attention_2"
    assert tree_scorer(flash) is None


def test_peft_wrapped_model_scores_through_its_adapted_base():
    peft = pytest.importorskip("peft")
    base = gpt2()
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["c_attn"], lora_alpha=4))
    with torch.no_grad():  # a non-zero adapter, so scoring without it would differ
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    wrapped.eval()
    assert tree_scorer(wrapped) is not None
    pairs = mixed_pairs(5)
    np.testing.assert_allclose(
        np.concatenate(completion_log_probs(wrapped, pairs, 0, "auto", 500)),
        np.concatenate(alone(wrapped, pairs)),
        atol=1e-5,
        rtol=0,
    )


def test_a_tree_shares_prefixes_and_feeds_no_last_token():
    from frequnlearn.evaluate.probability import _trees

    (tree,) = _trees([([1, 2], [5]), ([1, 2], [5, 6, 7]), ([1, 2], [5, 6, 8]), ([1, 2], [9, 6])])
    # Fed: 5 (shared), 6 under 5, 9; never 7, 8 or the lone 5's end.
    assert tree.tokens == [5, 6, 9]
    assert tree.parents == [-1, 0, -1]
    assert tree.depths == [0, 1, 0]
    assert [preds for _, preds, _ in tree.asks] == [[1], [1, 2, 3], [1, 2, 3], [1, 4]]


def test_tree_batches_respect_tokens_mask_cells_and_pair_caps(monkeypatch):
    from frequnlearn.evaluate import probability
    from frequnlearn.evaluate.probability import _tree_batches, _trees

    pairs = [([i + 1] * n, [2, 3]) for i, n in enumerate((9, 3, 7, 5))] + [([1] * 9, [4])]
    trees = _trees(pairs)  # the first holds two pairs; a last token is never fed
    assert [len(t) for t in trees] == [10, 4, 8, 6]
    assert list(_tree_batches(trees, "auto", 22)) == [[0, 2], [3, 1]]
    assert list(_tree_batches(trees, 2, 0)) == [[0], [2, 3], [1]]
    monkeypatch.setattr(probability, "MASK_CELLS", 2 * 10 * 10 - 1)
    assert list(_tree_batches(trees, "auto", 10_000)) == [[0], [2, 3, 1]]


def test_an_evaluation_step_scores_every_role_and_probe_in_one_forward_pass(tiny_tokenizer):
    """What unlearning runs at each evaluation step: forget, control and retain items, their question,
    paraphrase and biography probes, all answers of each, go through one token-tree forward pass."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from frequnlearn.config.evaluate import EvalConfig
    from frequnlearn.evaluate.stage import role_evaluator
    from frequnlearn.records import BioPrompt, QAItem

    def qa(i: int, group: str) -> QAItem:
        return QAItem(
            item_id=f"p{i:05d}-employer",
            question=f"Who employs person {i}?",
            paraphrase=f"Person {i} works for which company?",
            answer="Apple",
            candidates=["Google", "Stanford University"],
            person_id=i,
            group=group,
            attribute="employer",
        )

    roles = [("forget", [qa(0, "forget_high"), qa(1, "forget_low")]), ("control", [qa(2, "control")])]
    roles.append(("retain", [qa(3, "retain")]))
    bios = {
        f"p{i:05d}-employer": BioPrompt(
            f"p{i:05d}-employer", i, "g", "employer", f"Person {i} works at", "Apple"
        )
        for i in range(4)
    }
    tok = tiny_tokenizer
    model = _sharpen(
        GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=2, n_head=2))
    )
    calls = []
    model.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs), with_kwargs=True)
    ecfg = EvalConfig(metrics=["prob", "bio"], probes=["question", "paraphrase"])
    frame = role_evaluator(roles, ecfg, "plain", bios, "m", "r")(model, tok, 5)
    # Biography probes are also decoded greedily (family gen); that is not scoring.
    scoring = [c for c in calls if c["attention_mask"].ndim == 4]
    assert len(scoring) == 1
    assert scoring[0]["input_ids"].shape[0] == 4 * 3  # four items, three probes: one row per prompt
    prob = frame[frame["family"] == "prob"]
    assert len(prob) == 4 * 3
    assert set(prob["role"]) == {"forget", "control", "retain"}
    assert prob["logprob"].notna().all()
