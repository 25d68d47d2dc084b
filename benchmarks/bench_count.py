"""Index build time per MB and queries per second of the local infini-gram backend, against a plain scan.

    .venv/bin/python benchmarks/bench_count.py           # 110,000 people: over 100 MB of indexed text
    .venv/bin/python benchmarks/bench_count.py --quick   # 4,000 people: about 4 MB

A corpus made by `generate` is indexed byte-level (u8) into a fresh cache, then the same sampled QA
items are counted per measure by the index and by the baseline measured in the same run: a plain scan
of the same documents held in memory as one byte string (C-speed `bytes.find`, no index). Both must
give the same counts; the ratio is index queries/s over scan queries/s. One query is one item (the
subject and answer strings it needs); each measure starts with empty per-string caches.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from frequnlearn.config.generate import GenerateConfig
from frequnlearn.data.generate import generate
from frequnlearn.frequency.corpus import iter_texts
from frequnlearn.frequency.infinigram_local import LocalIndexCounter, Tokens, build_index
from frequnlearn.frequency.scan import ScanCounter
from frequnlearn.frequency.stage import load_items
from frequnlearn.records import read_json

MEASURES = ("subject", "document", "window")


def _time_counts(counter, items) -> tuple[list[int], float]:
    start = time.perf_counter()
    values = counter.count(items)
    return values, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 people (a few MB) instead of 110,000")
    parser.add_argument("--people", type=int, help="number of generated people (overrides --quick)")
    parser.add_argument("--queries", type=int, default=200, help="QA items counted per measure")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs for the index build (default: all)")
    parser.add_argument("--window", type=int, default=100, help="max_diff_tokens of the window measure")
    args = parser.parse_args()
    n_people = args.people or (4_000 if args.quick else 110_000)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data = generate(GenerateConfig(n_people=n_people, high_exposure=10, seed=0), tmp / "data")
        gen_s = time.perf_counter() - start
        corpus = data / "corpus.jsonl"
        print(
            f"corpus: {n_people} people, {corpus.stat().st_size / 1e6:.1f} MB of JSONL, generated in {gen_s:.1f} s"
        )

        start = time.perf_counter()
        index = build_index(corpus, tmp / "cache", cpus=args.cpus)
        build_s = time.perf_counter() - start
        meta = read_json(index / "meta.json")
        mb = meta["bytes"] / 1e6
        print(
            f"index build (u8, {meta['cpus']} cpus): {mb:.1f} MB of text in {build_s:.1f} s "
            f"= {build_s / mb:.3f} s/MB ({mb / build_s:.2f} MB/s), {meta['documents']} documents"
        )
        print(
            f"  of which: token files {meta['prepare_seconds']:.1f} s, suffix array "
            f"{meta['suffix_array_seconds']:.1f} s, the rest hashing the corpus and checking the index"
        )

        start = time.perf_counter()
        texts = list(iter_texts(corpus))
        load_s = time.perf_counter() - start
        _, all_items = load_items(data / "qa.jsonl")
        items = random.Random(0).sample(all_items, min(args.queries, len(all_items)))
        print(f"scan baseline: corpus loaded into memory in {load_s:.1f} s; {len(items)} items per measure")
        print(f"{'measure':>9} {'index q/s':>10} {'scan q/s':>9} {'ratio':>8} {'agree':>6}")
        tokens = Tokens(None)
        for measure in MEASURES:
            local = LocalIndexCounter(index, tokens, measure, ["original"], args.window)
            scan = ScanCounter(texts, measure, ["original"], args.window)
            got, index_s = _time_counts(local, items)
            want, scan_s = _time_counts(scan, items)
            qps_i, qps_s = len(items) / index_s, len(items) / scan_s
            print(
                f"{measure:>9} {qps_i:>10.1f} {qps_s:>9.2f} {qps_i / qps_s:>8.1f} {'yes' if got == want else 'NO':>6}"
            )
            del scan


if __name__ == "__main__":
    main()
