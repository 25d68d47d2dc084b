"""How fast `generate` writes Setting A data, against the floor of writing as many JSON lines.

    .venv/bin/python benchmarks/bench_generate.py          # 10,000 people (K = 10) and 100,000 people
    .venv/bin/python benchmarks/bench_generate.py --quick  # 1,000 and 10,000 people

The baseline, measured in the same run, writes the same number of JSON lines of the same total size
(one `records.dumps` per line), so the ratio says how much generation costs beyond plain output.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from frequnlearn.config.generate import GenerateConfig
from frequnlearn.data.generate import DATA_FILES, generate
from frequnlearn.records import dumps, run_info


def _lines_and_bytes(out: Path) -> tuple[int, int]:
    lines = size = 0
    for name in DATA_FILES:
        with (out / name).open("rb") as fh:
            for line in fh:
                lines += 1
                size += len(line)
    return lines, size


def _baseline(path: Path, lines: int, size: int) -> float:
    """Seconds to encode and write `lines` JSON lines totalling about `size` bytes."""
    filler = "x" * max(1, size // lines - 20)
    start = time.perf_counter()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(dumps({"i": i, "text": filler}) + "\n")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 10,000 people instead of 10,000 and 100,000"
    )
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    run_info(None)  # the first call imports torch; keep that out of the timings

    print(
        f"{'people':>8} {'K':>3} {'seconds':>8} {'people/s':>9} {'lines':>9} {'MB':>7} {'baseline s':>10} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = Path(tmp) / f"data-{n}"
            cfg = GenerateConfig(n_people=n, high_exposure=10, seed=0)
            start = time.perf_counter()
            generate(cfg, out)
            seconds = time.perf_counter() - start
            lines, size = _lines_and_bytes(out)
            shutil.rmtree(out)
            base = _baseline(Path(tmp) / "baseline.jsonl", lines, size)
            print(
                f"{n:>8} {cfg.high_exposure:>3} {seconds:>8.2f} {n / seconds:>9.0f} {lines:>9} "
                f"{size / 1e6:>7.1f} {base:>10.2f} {seconds / base:>6.2f}"
            )


if __name__ == "__main__":
    main()
