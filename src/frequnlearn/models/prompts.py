"""Prompt formats: how a (question, answer) pair becomes a prompt and a completion.

The same format is used when the synthetic corpus writes its retain QA documents, when unlearning
builds its batches and when evaluation scores answers, so the three never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from frequnlearn.errors import ConfigError

PLAIN_TEMPLATE = "Question: {question}\nAnswer: {answer}"
# The chat format the paper used for OLMo-7B-0724-SFT.
OLMO_TEMPLATE = "<|endoftext|><|user|>\n{question}\n<|assistant|>\n{answer}"


@dataclass(frozen=True)
class PromptFormat:
    """`kind` is `template` (a string with {question} and {answer}) or `chat` (tokenizer's template)."""

    kind: str
    template: str = PLAIN_TEMPLATE

    @property
    def name(self) -> str:
        if self.kind == "chat":
            return "chat"
        return "plain" if self.template == PLAIN_TEMPLATE else self.template

    def prompt(self, question: str, tokenizer: Any = None) -> str:
        """Text before the answer (ends right where the answer's first token begins)."""
        if self.kind == "chat":
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise ConfigError("prompt_format: 'chat' needs a tokenizer with a chat template")
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
            )
        head = self.template.split("{answer}", 1)[0]
        # The separator's trailing space belongs to the answer (" Paris" is one BPE token).
        return head.rstrip(" ").format(question=question)

    def completion(self, answer: str) -> str:
        """Text that follows the prompt: the answer with its leading separator and any suffix."""
        if self.kind == "chat":
            return answer
        head, tail = self.template.split("{answer}", 1)
        space = head[len(head.rstrip(" ")) :]
        return space + answer + tail

    def full(self, question: str, answer: str, tokenizer: Any = None) -> str:
        return self.prompt(question, tokenizer) + self.completion(answer)


def get_prompt_format(spec: str = "plain") -> PromptFormat:
    """`plain`, `olmo`, `chat`, or a format string containing {question} and {answer}."""
    if spec in ("plain", "", None):
        return PromptFormat("template", PLAIN_TEMPLATE)
    if spec == "olmo":
        return PromptFormat("template", OLMO_TEMPLATE)
    if spec == "chat":
        return PromptFormat("chat")
    if "{question}" not in spec or "{answer}" not in spec:
        raise ConfigError(
            "prompt_format: expected 'plain', 'olmo', 'chat' or a string with {question} and {answer}, "
            f"got {spec!r}"
        )
    if spec.index("{question}") > spec.index("{answer}"):
        raise ConfigError("prompt_format: {question} must come before {answer}")
    return PromptFormat("template", spec)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt ids, starting with the BOS/end-of-text token as every pretraining document does.

    Tokenizers that add a BOS themselves (Llama-style) keep theirs; GPT-2-style ones that add nothing
    get their `bos_token` prepended unless the prompt text already starts with it. Lengths are checked
    against the model's positions where sequences are built, so the tokenizer's own note is off.
    """
    ids = tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def encode_completion(tokenizer: Any, completion: str) -> list[int]:
    return tokenizer(completion, add_special_tokens=False, verbose=False)["input_ids"]


def encode_pair(tokenizer: Any, fmt: PromptFormat, question: str, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids), tokenized apart so the answer's tokens are the same in every context."""
    prompt_ids = encode_prompt(tokenizer, fmt.prompt(question, tokenizer))
    return prompt_ids, encode_completion(tokenizer, fmt.completion(answer))
