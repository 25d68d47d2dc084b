"""How often facts occur in a corpus: one counting interface; ground truth, a local infini-gram
index, the infini-gram API and a plain scan behind it; frequency buckets written into the QA table."""

from frequnlearn.frequency.base import Counter, PositionCounter, TextCounter, register_backend
from frequnlearn.frequency.bucketing import Buckets, assign_buckets
from frequnlearn.frequency.registry import available_backends, make_counter
from frequnlearn.frequency.stage import count_items, count_values, run_count

__all__ = [
    "Buckets",
    "Counter",
    "PositionCounter",
    "TextCounter",
    "assign_buckets",
    "available_backends",
    "count_items",
    "count_values",
    "make_counter",
    "register_backend",
    "run_count",
]
