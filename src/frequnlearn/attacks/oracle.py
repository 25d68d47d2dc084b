"""The never-learned reference: the same data directory without the forget people's biographies.

A model pretrained on it (same recipe, same seed, same tokenizer) has never seen the facts that the
study unlearns, so its per-item scores are the floor that "truly unlearned" should reach. Only the
corpus changes: people, QA items and biography prompts are copied byte for byte, so every item keeps
its id and can be scored against the unlearned model's row for the same item.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from frequnlearn.data.generate import DATA_FILES, MANIFEST
from frequnlearn.errors import DataError
from frequnlearn.records import atomic_dir, mark_done, read_json, sha256_file


def run_oracle_data(
    data_dir: str | Path, out_dir: str | Path, exclude_people: Iterable[int], key: str
) -> Path:
    """The oracle-data stage: `write_oracle_data`, then the done marker naming `key` (with the counts)."""
    counts = write_oracle_data(data_dir, out_dir, exclude_people)
    mark_done(Path(out_dir), key, counts)
    return Path(out_dir)


def write_oracle_data(
    data_dir: str | Path, out_dir: str | Path, exclude_people: Iterable[int]
) -> dict[str, Any]:
    """Write `out_dir`: `data_dir` with every biography document of `exclude_people` removed.

    QA documents stay (the studied groups' QA is never in the corpus anyway). Returns the counts of
    removed and kept documents, which also go into the new manifest under `oracle`.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    excluded = set(exclude_people)
    if not excluded:
        raise DataError("attacks.oracle: no people to leave out; the studied levels hold no people")
    counts = {"removed_bio": 0, "kept_bio": 0, "kept_qa": 0}
    with atomic_dir(out_dir) as tmp:
        for name in DATA_FILES:
            if name != "corpus.jsonl":
                shutil.copyfile(data_dir / name, tmp / name)
        with (data_dir / "corpus.jsonl").open() as src, (tmp / "corpus.jsonl").open("w") as dst:
            for line in src:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row.get("kind") == "bio" and row.get("person_id") in excluded:
                    counts["removed_bio"] += 1
                    continue
                counts["kept_bio" if row.get("kind") == "bio" else "kept_qa"] += 1
                dst.write(line)
        manifest = read_json(data_dir / MANIFEST)
        source_hash = manifest.get("files", {}).get("corpus.jsonl")
        manifest["files"] = {name: sha256_file(tmp / name) for name in DATA_FILES}
        manifest["oracle"] = {
            "source_corpus": source_hash,
            "excluded_people": sorted(excluded),
            **counts,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n")
    return counts
