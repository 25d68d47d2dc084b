"""What a study's tasks read, loaded from the run directory: the items of a world, the model of a tag,
and the items a model knows before unlearning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frequnlearn.config.study import StudyConfig, known_probe
from frequnlearn.layout import RunLayout
from frequnlearn.records import BioPrompt, QAItem, from_record, read_jsonl


class Inputs:
    """Items and models of one study run directory; items are read once per process and world (a
    task that rewrites them, generate or count, calls `forget`)."""

    def __init__(self, cfg: StudyConfig, layout: RunLayout) -> None:
        self.cfg = cfg
        self.s = cfg.study
        self.layout = layout
        self._data: dict[Any, Any] = {}
        self._items: dict[Any, tuple[list[QAItem], dict[str, BioPrompt]]] = {}

    def forget(self) -> None:
        self._data.clear()
        self._items.clear()

    def data(self, world: int) -> Any:
        """A world's generated data directory, read (`data.generate.DataDir`)."""
        if world not in self._data:
            from frequnlearn.data.generate import load_data_dir

            self._data[world] = load_data_dir(self.layout.data(world))
        return self._data[world]

    def items(self, world: int | None) -> tuple[list[QAItem], dict[str, BioPrompt]]:
        """QA items of the studied attribute and, for the synthetic setting, their biography prompts."""
        if world not in self._items:
            self._items[world] = self._read_items(world)
        return self._items[world]

    def _read_items(self, world: int | None) -> tuple[list[QAItem], dict[str, BioPrompt]]:
        if self.s.setting == "synthetic":
            data = self.data(world)  # type: ignore[arg-type]
            items = [it for it in data.qa if self.s.attribute is None or it.attribute == self.s.attribute]
            ids = {it.item_id for it in items}
            return items, {b.item_id: b for b in data.bio_prompts if b.item_id in ids}
        if self.layout.counted_items.is_file():
            return [from_record(QAItem, r) for r in read_jsonl(self.layout.counted_items)], {}
        return self.table_items(), {}

    def table_items(self) -> list[QAItem]:
        """The real setting's QA table as loaded (candidates filled), before any count."""
        from frequnlearn.data.real import load_items

        return load_items(self.s.items)  # type: ignore[arg-type]

    def retain_items(self) -> list[QAItem] | None:
        """The real setting's own retain table, when the config names one."""
        if self.s.setting != "real" or not self.s.retain_items:
            return None
        from frequnlearn.data.real import load_items

        return load_items(self.s.retain_items)

    def model(self, path: Path | None = None, tag: str | None = None) -> tuple[Any, Any]:
        """(model, tokenizer): the pretrained model at `path`, or the real setting's given model (the
        size named `tag` of a suite in `study.models`)."""
        from frequnlearn.models.loading import load_model_and_tokenizer

        if path is not None:
            return load_model_and_tokenizer(path, dtype=self.s.dtype)
        if self.s.models:
            from frequnlearn.study.plan import suite_model

            entry = suite_model(self.s, tag)
            return load_model_and_tokenizer(entry.id, dtype=self.s.dtype, revision=entry.revision)
        if self.s.gguf_file:
            from frequnlearn.models.gguf import load_gguf_model

            return load_gguf_model(self.s.model, self.s.gguf_file)  # type: ignore[arg-type]
        return load_model_and_tokenizer(self.s.model, dtype=self.s.dtype)  # type: ignore[arg-type]

    def known(self, tag: str) -> set[str]:
        """Items the model `tag` knows before unlearning, by its baseline scores."""
        import pandas as pd

        from frequnlearn.evaluate.misalignment import verdicts

        scores = pd.read_parquet(self.layout.baseline_scores(tag))
        v = verdicts(scores, gen_threshold=self.cfg.evaluate.gen_threshold)
        v = v[v["probe"] == known_probe(self.s.setting)]
        return set(v.loc[v["gen_known"].astype(bool), "item_id"])
