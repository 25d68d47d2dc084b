from __future__ import annotations

import pytest

from frequnlearn.errors import DataError
from frequnlearn.models.loading import load_model_and_tokenizer
from frequnlearn.models.prompts import encode_pair, get_prompt_format


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_load_and_encode(fixture, request):
    model, tok = load_model_and_tokenizer(request.getfixturevalue(fixture))
    prompt_ids, answer_ids = encode_pair(tok, get_prompt_format("plain"), "Who employs Alan?", "Google")
    assert prompt_ids[0] == tok.bos_token_id
    assert tok.decode(answer_ids) == " Google"
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id


def test_missing_model_dir(tmp_path):
    with pytest.raises(DataError, match="--model"):
        load_model_and_tokenizer(str(tmp_path / "nope"))
