from __future__ import annotations

import pytest

from frequnlearn.errors import ConfigError
from frequnlearn.models.prompts import get_prompt_format


def test_plain_splits_prompt_and_completion():
    fmt = get_prompt_format("plain")
    assert fmt.prompt("Who?") == "Question: Who?\nAnswer:"
    assert fmt.completion("Ada") == " Ada"
    assert fmt.full("Who?", "Ada") == "Question: Who?\nAnswer: Ada"


def test_olmo_format():
    fmt = get_prompt_format("olmo")
    assert fmt.prompt("Q") == "<|endoftext|><|user|>\nQ\n<|assistant|>\n"
    assert fmt.completion("A") == "A"


def test_bad_format():
    with pytest.raises(ConfigError, match="prompt_format"):
        get_prompt_format("no placeholders")
