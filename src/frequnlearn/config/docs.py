"""What each config field means, read from where the config classes say it: the comment lines right
above a field, a comment at the end of its line, or its entry under `Fields:` in the class docstring.

`frequnlearn config show` prints every field of a stage with its value, its default and this meaning,
so the source stays the one place a setting is documented.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: meaning} of a config dataclass ("" where its source says nothing)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}  # line number (1-based) -> comment text
    own_line: set[int] = set()  # lines holding only a comment
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = tok.string.lstrip("#").strip()
            if not tok.line[: tok.start[1]].strip():
                own_line.add(row)
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ClassDef)
    from_docstring = _docstring_fields(ast.get_docstring(node) or "")
    docs: dict[str, str] = {}
    block = ""  # the last comment block of the current paragraph (no blank line since)
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above, row = [], stmt.lineno - 1
        while row in own_line:  # the comment lines directly above, up to a blank or code line
            above.insert(0, comments[row])
            row -= 1
        if above:
            block = " ".join(above)
        elif not source.splitlines()[row - 1].strip():
            block = ""
        name = stmt.target.id
        trailing = comments.get(stmt.lineno) if stmt.lineno not in own_line else None
        # A comment about several fields counts for a later one of its paragraph that it names.
        shared = block if not above and re.search(rf"\b{name}\b", block) else ""
        parts = [" ".join(above) or shared, trailing, from_docstring.get(name)]
        docs[name] = " ".join(p for p in parts if p)
    return docs


def _docstring_fields(doc: str) -> dict[str, str]:
    """`name: text` entries (continued on more indented lines) under a `Fields:` heading."""
    out: dict[str, str] = {}
    match = re.search(r"^Fields:\s*$", doc, flags=re.M)
    if not match:
        return out
    current = None
    for line in doc[match.end() :].splitlines():
        entry = re.match(r"^\s{1,4}(\w+): (.*)$", line)
        if entry:
            current = entry.group(1)
            out[current] = entry.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
        elif not line.strip() and current:
            current = None
    return out


def fields_of(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
