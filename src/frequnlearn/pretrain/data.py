"""The pretraining data: the tokenizer, documents packed whole into fixed-length sequences, and the
batch of any step as a pure function of (seed, step).

Biography and QA sequences are mixed at a fixed ratio and shuffled per epoch from the seed, so a
resumed run sees exactly the batches an uninterrupted run sees. The corpus's content hash is the
data's identity: a finished run is reused only for the same corpus.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frequnlearn.config.pretrain import PretrainConfig
from frequnlearn.errors import DataError
from frequnlearn.models.loading import pad_id_of
from frequnlearn.records import check_recorded, file_digest, read_jsonl

IGNORE_INDEX = -100


def corpus_sha256(data_dir: Path) -> str:
    """The content hash of DATA_DIR's corpus, after checking that `generate` wrote the directory."""
    for name in ("corpus.jsonl", "qa.jsonl"):
        if not (data_dir / name).is_file():
            raise DataError(
                f"--data {data_dir}: no {name}; point it at a directory written by `frequnlearn generate`"
            )
    fix = f"regenerate it with `frequnlearn generate --out {data_dir}`"
    check_recorded(data_dir, "manifest.json", ("corpus.jsonl", "qa.jsonl"), fix)
    return file_digest(data_dir / "corpus.jsonl")


def load_documents(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """(biography texts, QA texts) of `DATA_DIR/corpus.jsonl`, in file order."""
    path = Path(data_dir) / "corpus.jsonl"
    bios: list[str] = []
    qas: list[str] = []
    for i, row in enumerate(read_jsonl(path), 1):
        kind, text = row.get("kind"), row.get("text")
        if not isinstance(text, str) or kind not in ("bio", "qa"):
            raise DataError(f"{path}:{i}: each row needs a 'text' string and a 'kind' of 'bio' or 'qa'")
        (bios if kind == "bio" else qas).append(text)
    if not bios and not qas:
        raise DataError(f"{path}: the corpus is empty; run `frequnlearn generate` first")
    return bios, qas


def encode_documents(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each document, starting with BOS/end-of-text exactly as `encode_prompt` does.

    Evaluation prompts are encoded by `frequnlearn.models.prompts.encode_prompt`; encoding documents the
    same way (batched for speed) makes a question at evaluation look like the start of a document.
    """
    if not texts:
        return []
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        out.append(ids)
    return out


def pack(
    docs: Sequence[Sequence[int]],
    order: Iterator[int] | Sequence[int],
    seq_len: int,
    limit: int | None = None,
    window: int = 16,
) -> tuple[list[list[int]], int]:
    """Pack documents whole into sequences of at most `seq_len` tokens (first fit over the last
    `window` open sequences); a document longer than `seq_len` is cut into pieces.

    Cutting a biography would separate its facts from the name in its first sentence, so documents
    are never split across sequences; the unused tail of a sequence is padding. With `limit`, packing
    stops before a document would open sequence number `limit + 1`. Returns (sequences, documents used).
    """
    seqs: list[list[int]] = []
    open_: list[int] = []
    used = 0
    for i in order:
        doc = docs[i]
        pieces = [doc[k : k + seq_len] for k in range(0, len(doc), seq_len)] if len(doc) > seq_len else [doc]
        slot = (
            next((j for j in open_ if len(seqs[j]) + len(pieces[0]) <= seq_len), None)
            if len(pieces) == 1
            else None
        )
        if slot is None and limit is not None and len(seqs) + len(pieces) > limit:
            break
        used += 1
        if slot is not None:
            seqs[slot].extend(pieces[0])
            if seq_len - len(seqs[slot]) < 8:
                open_.remove(slot)
            continue
        for piece in pieces:
            seqs.append(list(piece))
        if len(seqs[-1]) < seq_len:
            open_.append(len(seqs) - 1)
            if len(open_) > window:
                open_.pop(0)
    return seqs, used


@dataclass
class EpochPlan:
    """What one epoch holds: counts are recorded in run.json so the real exposure is documented."""

    bio_seqs: int
    qa_seqs: int
    qa_docs_used: int
    pad_fraction: float


class PackedCorpus:
    """Tokenised documents and the per-epoch sequence order, a pure function of (seed, epoch)."""

    def __init__(
        self,
        bio_docs: list[list[int]],
        qa_docs: list[list[int]],
        seq_len: int,
        qa_ratio: float | None,
        seed: int,
        pad_id: int,
    ) -> None:
        self.bio_docs, self.qa_docs = bio_docs, qa_docs
        self.seq_len, self.qa_ratio, self.seed, self.pad_id = seq_len, qa_ratio, seed, pad_id
        self._cache: tuple[int, Any, Any] | None = None
        self._plans: dict[int, EpochPlan] = {}

    def _rng(self, epoch: int) -> Any:
        import numpy as np

        return np.random.default_rng([self.seed, epoch])

    def _sequences(self, epoch: int) -> tuple[list[list[int]], EpochPlan]:
        rng = self._rng(epoch)
        bio_seqs, _ = pack(self.bio_docs, rng.permutation(len(self.bio_docs)).tolist(), self.seq_len)
        if self.qa_ratio is None:
            qa_seqs, used = pack(self.qa_docs, rng.permutation(len(self.qa_docs)).tolist(), self.seq_len)
        elif self.qa_docs and self.qa_ratio > 0:
            target = max(1, round(self.qa_ratio * len(bio_seqs)))

            def passes() -> Iterator[int]:  # QA documents repeated in freshly shuffled passes
                while True:
                    yield from rng.permutation(len(self.qa_docs)).tolist()

            qa_seqs, used = pack(self.qa_docs, passes(), self.seq_len, limit=target)
        else:
            qa_seqs, used = [], 0
        seqs = bio_seqs + qa_seqs
        seqs = [seqs[i] for i in rng.permutation(len(seqs))]
        filled = sum(len(s) for s in seqs)
        plan = EpochPlan(len(bio_seqs), len(qa_seqs), used, 1.0 - filled / max(1, len(seqs) * self.seq_len))
        return seqs, plan

    def plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans[epoch] = self._sequences(epoch)[1]
        return self._plans[epoch]

    def epoch(self, epoch: int) -> tuple[Any, Any]:
        """(input_ids, labels) tensors of shape [sequences, seq_len]; padding is not a target."""
        import torch

        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1], self._cache[2]
        seqs, self._plans[epoch] = self._sequences(epoch)
        ids = torch.full((len(seqs), self.seq_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), self.seq_len), IGNORE_INDEX, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = ids[row, : len(seq)]
        self._cache = (epoch, ids, labels)
        return ids, labels


class BatchStream:
    """Global batches over consecutive epochs: step `s` always gets the same sequences."""

    def __init__(self, corpus: PackedCorpus, batch_size: int) -> None:
        self.corpus, self.batch_size = corpus, batch_size
        self.epoch_sizes: list[int] = []

    def steps_for(self, epochs: float) -> int:
        """Whole global batches in `epochs` epochs (a fractional last epoch counts in part)."""
        whole = math.floor(epochs)
        total = sum(self._size(e) for e in range(whole))
        if epochs > whole:
            total += int((epochs - whole) * self._size(whole))
        return total // self.batch_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, offset in that epoch) of the first sequence of `step`."""
        index = step * self.batch_size
        epoch = 0
        while True:
            size = self._size(epoch)
            if index < size:
                return epoch, index
            index -= size
            epoch += 1

    def _size(self, epoch: int) -> int:
        while len(self.epoch_sizes) <= epoch:
            plan = self.corpus.plan(len(self.epoch_sizes))
            self.epoch_sizes.append(plan.bio_seqs + plan.qa_seqs)
        return self.epoch_sizes[epoch]

    def batch(self, step: int) -> tuple[Any, Any, float]:
        """(input_ids, labels, fractional epoch) of the global batch of `step`."""
        import torch

        epoch, offset = self.position(step)
        ids_parts, label_parts = [], []
        need = self.batch_size
        while need:
            ids, labels = self.corpus.epoch(epoch)
            take = min(need, ids.shape[0] - offset)
            ids_parts.append(ids[offset : offset + take])
            label_parts.append(labels[offset : offset + take])
            need -= take
            epoch, offset = epoch + 1, 0
        return torch.cat(ids_parts), torch.cat(label_parts), self.epoch_at(step)

    def epoch_at(self, step: int) -> float:
        """Epochs completed before `step` (fractional)."""
        epoch, offset = self.position(step)
        return epoch + offset / self._size(epoch)


def prepare_data(data_dir: Path, tokenizer: Any, cfg: PretrainConfig) -> PackedCorpus:
    """DATA_DIR's corpus tokenised and ready to pack, per `cfg`'s sequence length, QA ratio and seed."""
    bios, qas = load_documents(data_dir)
    pad = pad_id_of(tokenizer)
    return PackedCorpus(
        encode_documents(tokenizer, bios),
        encode_documents(tokenizer, qas),
        cfg.seq_len,
        cfg.qa_ratio,
        cfg.seed,
        pad,
    )


def prepare_tokenizer(accelerator: Any, data_dir: Path, preset: Any, out_dir: Path) -> Any:
    """The preset's tokenizer, built once (on the main process), saved in out_dir, and read back by every process."""
    from transformers import AutoTokenizer

    from frequnlearn.models.tokenizer import get_tokenizer

    if accelerator.is_main_process and not (out_dir / "tokenizer_config.json").is_file():
        tok = get_tokenizer(preset.tokenizer, data_dir, preset.vocab_size)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
    tok = AutoTokenizer.from_pretrained(out_dir, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
