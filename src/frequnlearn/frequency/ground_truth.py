"""The exposure the generator recorded: how many biography copies of each person the corpus holds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frequnlearn.errors import ConfigError, DataError
from frequnlearn.frequency.base import Counter, register_backend
from frequnlearn.records import QAItem, read_jsonl

if TYPE_CHECKING:
    from frequnlearn.config.count import CountConfig


class GroundTruthCounter(Counter):
    """Each item's count is its person's `exposure` from people.jsonl (the measure does not apply)."""

    def __init__(self, people: str | Path) -> None:
        self.path = Path(people).expanduser()
        self.exposure: dict[str, int] = {}
        for lineno, row in enumerate(read_jsonl(self.path), 1):
            if "person_id" not in row or not isinstance(row.get("exposure"), int):
                raise DataError(f"{self.path}:{lineno}: a person needs 'person_id' and an integer 'exposure'")
            self.exposure[str(row["person_id"])] = row["exposure"]

    def count(self, items: Sequence[QAItem]) -> list[int]:
        out = []
        for item in items:
            key = None if item.person_id is None else str(item.person_id)
            if key not in self.exposure:
                raise DataError(
                    f"item {item.item_id}: person_id {item.person_id!r} is not in {self.path}; "
                    "ground-truth counts need the people file of the same generated data"
                )
            out.append(self.exposure[key])
        return out

    def info(self) -> dict[str, Any]:
        return {"people": str(self.path), "people_count": len(self.exposure)}


@register_backend("ground-truth")
def _make(cfg: CountConfig) -> GroundTruthCounter:
    if cfg.people is None:
        raise ConfigError(
            "count.people: the ground-truth backend reads people.jsonl of the generated data; "
            "set count.people (the count command defaults to the file beside --items)"
        )
    return GroundTruthCounter(cfg.people)
