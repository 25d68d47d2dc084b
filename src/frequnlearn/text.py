"""How two answers are compared: the one normalisation of text, shared by the "known" verdict
(`evaluate.known`), the QA tables' checks for answers that collide (`data`), and the methods that must
not offer an answer as its own alternative. It imports nothing of the package, so every stage may."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_ARTICLE = re.compile(r"^(?:the|a|an) ")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case-folded, punctuation and symbols turned into spaces, whitespace collapsed (Unicode-aware)."""
    chars = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in unicodedata.normalize("NFKC", text)]
    return _SPACE.sub(" ", "".join(chars).casefold()).strip()


def normalize_value(text: str) -> str:
    """`normalize` plus a leading article dropped: "The Ohio State University" ~ "ohio state university"."""
    return _ARTICLE.sub("", normalize(text))
