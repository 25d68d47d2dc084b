"""Frequency buckets: tertiles, explicit thresholds, and the edge cases with their documented behaviour."""

from __future__ import annotations

import pytest

from frequnlearn.config import from_dict
from frequnlearn.config.count import CountConfig
from frequnlearn.errors import ConfigError, DataError
from frequnlearn.frequency.bucketing import assign_buckets, quantile_edges


def test_tertiles_split_distinct_counts_evenly():
    values = list(range(1, 10))  # 1..9
    b = assign_buckets(values)
    assert b.edges == pytest.approx([11 / 3, 19 / 3])
    assert b.labels == ["low"] * 3 + ["medium"] * 3 + ["high"] * 3
    assert b.sizes == {"low": 3, "medium": 3, "high": 3}


def test_labels_follow_item_order_not_sorted_order():
    assert assign_buckets([100, 1, 10]).labels == ["high", "low", "medium"]


def test_ties_always_share_a_bucket_even_if_a_bucket_stays_empty():
    # Exposures of a generated corpus: many people seen once, a third seen ten times.
    values = [1] * 6 + [10] * 3
    b = assign_buckets(values)
    assert b.edges == pytest.approx([1.0, 4.0])  # the upper tertile interpolates between 1 and 10
    assert set(zip(values, b.labels)) == {(1, "low"), (10, "high")}
    assert b.sizes == {"low": 6, "medium": 0, "high": 3}


def test_an_edge_value_belongs_to_the_lower_bucket():
    b = assign_buckets([0, 5, 10], method="thresholds", thresholds=[5, 9])
    assert b.labels == ["low", "low", "high"]
    b = assign_buckets([5, 6, 9, 10], method="thresholds", thresholds=[5, 9])
    assert b.labels == ["low", "medium", "medium", "high"]


def test_all_zero_counts_fall_in_the_lowest_bucket():
    b = assign_buckets([0, 0, 0, 0])
    assert b.edges == [0.0, 0.0]
    assert b.labels == ["low"] * 4
    assert b.sizes == {"low": 4, "medium": 0, "high": 0}


def test_fewer_items_than_quantile_buckets_is_an_error():
    with pytest.raises(DataError, match="3 quantile buckets need at least 3 counted items, got 2"):
        assign_buckets([1, 2])
    with pytest.raises(DataError, match="got 0"):
        quantile_edges([], 2)
    # Thresholds need no minimum.
    assert assign_buckets([7], method="thresholds", thresholds=[5, 9]).labels == ["medium"]
    assert assign_buckets([], method="thresholds", thresholds=[5, 9]).labels == []


def test_custom_names_and_a_single_bucket():
    assert assign_buckets([3, 1, 2, 4], names=["rare", "common"]).labels == [
        "common",
        "rare",
        "rare",
        "common",
    ]
    assert assign_buckets([5, 0], names=["all"]).labels == ["all", "all"]


def test_missing_counts_are_refused():
    with pytest.raises(DataError, match="not finite"):
        assign_buckets([1.0, float("nan"), 3.0])


def test_config_checks_thresholds():
    cfg = from_dict(CountConfig, {"bucket_method": "thresholds", "thresholds": [2, 8]})
    assert cfg.thresholds == [2.0, 8.0]
    with pytest.raises(ConfigError, match="thresholds: 3 buckets need 2 thresholds, got 1"):
        from_dict(CountConfig, {"bucket_method": "thresholds", "thresholds": [2]})
    with pytest.raises(ConfigError, match="thresholds: must be strictly increasing"):
        from_dict(CountConfig, {"bucket_method": "thresholds", "thresholds": [8, 2]})
    with pytest.raises(ConfigError, match="only used with bucket_method: thresholds"):
        from_dict(CountConfig, {"thresholds": [1, 2]})
    with pytest.raises(ConfigError, match="bucket names must be distinct"):
        from_dict(CountConfig, {"buckets": ["low", "low"]})
