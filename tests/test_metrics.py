"""Ranking metrics as functions of the answer's 0-based rank, against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from csrec.metrics import DEFAULT_KS, ndcg_at_k, per_sequence_metrics, recall_at_k, reciprocal_rank, summarize


def test_single_rank_values():
    ranks = np.array([0, 1, 4, 5, 9, 10, 100])
    assert recall_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert recall_at_k(ranks, 10).tolist() == [1, 1, 1, 1, 1, 0, 0]
    expected_ndcg = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(7), 1 / math.log2(11), 0.0, 0.0]
    np.testing.assert_allclose(ndcg_at_k(ranks, 10), expected_ndcg, rtol=0, atol=1e-15)
    np.testing.assert_allclose(reciprocal_rank(ranks), [1, 1 / 2, 1 / 5, 1 / 6, 1 / 10, 1 / 11, 1 / 101])


def _brute_summary(ranks, positive, ks):
    out = {}
    groups = {"": list(range(len(ranks)))}
    if positive is not None:
        groups["+"] = [i for i in range(len(ranks)) if positive[i]]
        groups["-"] = [i for i in range(len(ranks)) if not positive[i]]
    for sign, members in groups.items():
        if not members:
            continue
        for k in ks:
            out[f"recall{sign}@{k}"] = sum(1.0 for i in members if ranks[i] < k) / len(members)
            out[f"ndcg{sign}@{k}"] = sum(1.0 / math.log2(ranks[i] + 2) for i in members if ranks[i] < k) / len(members)
        out[f"mrr{sign}"] = sum(1.0 / (ranks[i] + 1) for i in members) / len(members)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ks", [DEFAULT_KS, (1, 3)])
def test_summarize_matches_brute_force(seed, ks):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    ranks = rng.geometric(0.08, size=n) - 1
    positive = rng.random(n) < 0.7
    got = summarize(ranks, positive, ks)
    expected = _brute_summary(ranks.tolist(), positive.tolist(), ks)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
        assert isinstance(got[key], float)


def test_empty_group_is_absent_not_nan():
    ranks = np.array([0, 3, 12])
    all_positive = summarize(ranks, np.array([True, True, True]))
    assert not any("-" in key for key in all_positive)
    assert all_positive["recall+@10"] == all_positive["recall@10"] == pytest.approx(2 / 3)
    none_positive = summarize(ranks, np.zeros(3, dtype=bool))
    assert not any("+" in key for key in none_positive)
    assert set(none_positive) == {k.replace("+", "-") for k in all_positive}
    assert all(not math.isnan(v) for v in [*all_positive.values(), *none_positive.values()])
    # No positive flags at all: only the overall metrics.
    assert set(summarize(ranks)) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr"}
    # No sequences at all: nothing, never NaN.
    assert summarize(np.array([], dtype=np.int64), np.array([], dtype=bool)) == {}


def test_prefix_and_per_sequence_vectors():
    ranks = np.array([0, 2, 30])
    out = summarize(ranks, None, (10,), prefix="true:")
    assert set(out) == {"true:recall@10", "true:ndcg@10", "true:mrr"}
    vectors = per_sequence_metrics(ranks, (10,))
    assert vectors["recall@10"].tolist() == [1.0, 1.0, 0.0]
    assert vectors["mrr"].tolist() == pytest.approx([1.0, 1 / 3, 1 / 31])
