"""Ranking metrics, as pure functions of the answer's rank.

Full-item ranking (paper §4.1.3): the answer's 0-based rank ``r`` is the number of candidate
items scored strictly above it, so every metric is a function of ``r`` alone:

* Recall@k (hit rate; one answer per sequence) = [r < k]
* NDCG@k = [r < k] / log2(r + 2)   (the ideal DCG of a single answer is 1)
* MRR = 1 / (r + 1)

Metrics are averaged per sequence (not per batch, unlike the authors' code).  The filtered
Recall+/NDCG+ of the paper average over the sequences whose answer is rated positive (rating ≥ 4),
and Recall−/NDCG− over the others; a group with no sequence is absent, never NaN.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (5, 10, 20)


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / (np.asarray(ranks) + 1.0)


def per_sequence_metrics(ranks: np.ndarray, ks=DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-sequence metric vectors (for paired significance tests and group analyses)."""
    out = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    out["mrr"] = reciprocal_rank(ranks)
    return out


def summarize(ranks: np.ndarray, positive: np.ndarray | None = None, ks=DEFAULT_KS, prefix: str = "") -> dict[str, float]:
    """Mean metrics over all sequences, plus the + (positive answer) and − (negative) groups."""
    ranks = np.asarray(ranks)
    vectors = per_sequence_metrics(ranks, ks)
    out = {f"{prefix}{name}": float(v.mean()) for name, v in vectors.items()} if len(ranks) else {}
    if positive is not None:
        positive = np.asarray(positive, dtype=bool)
        for sign, group in (("+", positive), ("-", ~positive)):
            if group.any():
                for name, v in vectors.items():
                    metric, _, k = name.partition("@")
                    key = f"{metric}{sign}@{k}" if k else f"{metric}{sign}"
                    out[f"{prefix}{key}"] = float(v[group].mean())
    return out
