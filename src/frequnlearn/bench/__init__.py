"""The frequency-aware unlearning benchmark: every registered method tuned on retain items alone to
the same retain cost (`tuning`), run by the study engine, ranked by its frequency gap (`leaderboard`),
written as a figure and a report (`page`); `run_bench` does it all (`frequnlearn bench`)."""

from frequnlearn.bench.config import BenchConfig, BenchOptions, load_bench_config
from frequnlearn.bench.run import describe_bench, run_bench

__all__ = ["BenchConfig", "BenchOptions", "describe_bench", "load_bench_config", "run_bench"]
