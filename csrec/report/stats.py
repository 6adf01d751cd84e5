"""Statistics behind the tables and figures: paired t-tests, popularity and length groups.

Significance (Tables 3–4): a method's best trial against Base's and SoftRec's best trials of the
same (dataset, backbone), by a two-sided paired t-test over the test sequences
(``scipy.stats.ttest_rel``; the + columns pair the positively rated test sequences only).  A
mark means p < 0.05 *and* a higher mean: ``*`` vs Base, ``†`` vs SoftRec.  When both methods of
a pair ran several seeds (``--seeds N``), the same test pairs their per-seed test metrics by seed
index instead, over the seeds both have (:func:`seed_pairs`): it asks whether the gain holds
beyond seed noise, which one seed's per-sequence test cannot.  A pair with fewer than two common
seeds falls back to the per-sequence test; each entry says which test it used.
"""

from __future__ import annotations

import math

import numpy as np

from csrec.data.dataset import SequenceData

ALPHA = 0.05
POPULAR_FRACTION = 0.2
MARKS = (("base", "*"), ("softrec", "†"))


def paired_ttest(a, b) -> float:
    """Two-sided paired t-test p-value.

    NaN when undefined (fewer than 2 pairs, identical vectors); 0 when every pair differs by the
    same non-zero amount (zero variance, t infinite: scipy also gives p = 0 there).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or len(a) < 2:
        return math.nan
    diff = a - b
    if np.allclose(diff, diff[0]):  # zero variance of the differences: t is 0/0 or infinite
        return math.nan if np.isclose(diff[0], 0.0) else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def significantly_better(a, b, alpha: float = ALPHA) -> tuple[bool, float]:
    """(a's mean is higher and p < alpha, p)."""
    p = paired_ttest(a, b)
    better = not math.isnan(p) and p < alpha and float(np.mean(a)) > float(np.mean(b))
    return better, p


def significance_marks(vectors: dict[str, dict], metric: str, mask_key: str | None = None, *,
                       seeds: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """{method: {"mark": "*†", "p_vs_base": p, "pairs_vs_base": n, "paired_over_vs_base": "seeds", ...}} for
    one (dataset, backbone).

    ``vectors``: method → per-sequence vectors (``metric`` and ``test_positive``) of its best trial;
    ``mask_key`` restricts those pairs to the sequences where that boolean vector is True (the +
    columns).  ``seeds``: method → this metric's test value per seed index (NaN where a seed has no
    finished run), for the methods that ran seed replicates.  Methods other than Base are tested
    against Base, those other than SoftRec also against SoftRec: across the seeds both have when
    they share two or more, otherwise across the test sequences.
    """
    seeds = seeds or {}
    out: dict[str, dict] = {}
    for method in dict.fromkeys([*vectors, *seeds]):
        if method == "base":
            continue
        entry: dict = {"mark": ""}
        for reference, symbol in MARKS:
            if reference == method:
                continue
            test = _pair(vectors, seeds, method, reference, metric, mask_key)
            if test is None:
                continue
            a, b, over = test
            better, p = significantly_better(a, b)
            entry[f"p_vs_{reference}"] = p
            entry[f"pairs_vs_{reference}"] = len(a)  # sequences, or seeds both have
            entry[f"paired_over_vs_{reference}"] = over
            if better:
                entry["mark"] += symbol
        if len(entry) > 1 or method in vectors and metric in vectors[method]:
            out[method] = entry
    return out


def _pair(vectors: dict, seeds: dict, method: str, reference: str, metric: str, mask_key: str | None):
    """(method's values, reference's values, "seeds" | "sequences") for one test, or None when the two
    share neither two seeds nor per-sequence vectors of ``metric``."""
    if method in seeds and reference in seeds:
        a, b = seed_pairs(seeds[method], seeds[reference])
        if len(a) >= 2:
            return a, b, "seeds"
    mine, ref = vectors.get(method), vectors.get(reference)
    if mine is None or ref is None or metric not in mine or metric not in ref:
        return None
    a, b = np.asarray(mine[metric]), np.asarray(ref[metric])
    if len(a) != len(b):
        return None
    mask = np.ones(len(a), dtype=bool)
    if mask_key is not None:
        mask = np.asarray(mine[mask_key], dtype=bool) & np.asarray(ref[mask_key], dtype=bool)
    return a[mask], b[mask], "sequences"


# --- popularity groups (Fig. 1 / 4) -----------------------------------------------------------------
def popular_items(counts: np.ndarray, fraction: float = POPULAR_FRACTION) -> np.ndarray:
    """Boolean mask over item ids (index 0 = padding, never popular): the top ``fraction`` of items.

    ``counts[i]`` is item i's number of training interactions (:meth:`SequenceData.item_counts`).
    The ``round(fraction · n_items)`` most frequent items are popular (at least one); ties are
    broken by the smaller item id, so the split always has exactly that many items.
    """
    counts = np.asarray(counts)
    n_items = len(counts) - 1
    n_popular = min(n_items, max(1, int(round(fraction * n_items))))
    ids = np.arange(1, n_items + 1)
    order = ids[np.lexsort((ids, -counts[1:]))]  # by count descending, then id ascending
    mask = np.zeros(n_items + 1, dtype=bool)
    mask[order[:n_popular]] = True
    return mask


def popular_test_users(data: SequenceData, fraction: float = POPULAR_FRACTION) -> np.ndarray:
    """Per test sequence: is its test answer one of the popular items (a *popular-type* user)?"""
    mask = popular_items(data.item_counts(), fraction)
    return mask[data.eval_split("test").targets]


# --- input-length buckets (Fig. 5) --------------------------------------------------------------------
def length_buckets(lengths: np.ndarray, n_buckets: int = 4) -> tuple[np.ndarray, list[str]]:
    """(bucket index per sequence, bucket labels) for per-sequence lengths (Fig. 5 uses the source user history lengths).

    Edges are the length quantiles (integers, deduplicated), so buckets hold similar numbers of
    sequences when the lengths allow it; a label reads "lo–hi items".
    """
    lengths = np.asarray(lengths)
    if not len(lengths):
        return np.zeros(0, dtype=np.int64), []
    quantiles = np.quantile(lengths, np.linspace(0, 1, n_buckets + 1))
    edges = np.unique(np.ceil(quantiles[1:-1]).astype(np.int64))
    edges = edges[(edges > lengths.min()) & (edges <= lengths.max())]
    index = np.searchsorted(edges, lengths, side="right")
    bounds = np.concatenate([[lengths.min()], edges, [lengths.max() + 1]])
    labels = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        hi = hi - 1
        labels.append(f"{lo} items" if lo == hi else f"{lo}–{hi} items")
    return index.astype(np.int64), labels


def group_tests(a, b, groups: np.ndarray, n_groups: int, alpha: float = ALPHA) -> tuple[np.ndarray, list[str]]:
    """Within each group of sequences, a against b: (two-sided paired t-test p per group, mark per group).

    The mark is ``*`` when a is significantly higher (p < alpha), ``↓`` when significantly lower,
    else empty: Fig. 1/4 and Fig. 5 ask whether a gain over Base holds within a user group, not
    only over all users.
    """
    a, b, groups = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), np.asarray(groups)
    p_values, marks = np.full(n_groups, np.nan), []
    for g in range(n_groups):
        keep = groups == g
        p = paired_ttest(a[keep], b[keep])
        p_values[g] = p
        higher = float(a[keep].mean()) > float(b[keep].mean()) if keep.any() else False
        marks.append("" if math.isnan(p) or p >= alpha else ("*" if higher else "↓"))
    return p_values, marks


def group_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean per group, count per group); NaN for an empty group."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    sums = np.bincount(groups, weights=values, minlength=n_groups)[:n_groups]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means, counts


def seed_pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two methods' test values per seed index (NaN where a seed has no finished run), cut to the
    seed indices both have: the pairs of a test across seeds."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = min(len(a), len(b))
    both = np.isfinite(a[:n]) & np.isfinite(b[:n])
    return a[:n][both], b[:n][both]


def finished_seeds(values) -> np.ndarray:
    """The values of the seeds that finished (a per-seed-index vector less its NaN gaps)."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def across_seed_vectors(per_seed: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]] | None:
    """``per_seed``: method → {metric: test value per seed index, NaN where that seed has no finished
    run}.  The methods' vectors as float arrays (each pair of methods is compared over the seed
    indices both have, :func:`seed_pairs`: a method still short of seeds does not shorten the
    others' tests), or None when fewer than two methods have two seeds or more."""
    vectors = {m: {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
               for m, metrics in (per_seed or {}).items() if metrics}
    if sum(len(finished_seeds(next(iter(v.values())))) >= 2 for v in vectors.values()) < 2:
        return None
    return vectors
