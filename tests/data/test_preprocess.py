"""The paper's preprocessing: iterative k-core, time order and remap, sub-session windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csrec.data import DataConfig, load_dataset
from csrec.data.preprocess import k_core, order_and_remap, window_starts
from csrec.data.readers import read_interactions
from csrec.errors import DataError


# --- k-core -------------------------------------------------------------------------------------
def _frame(pairs) -> pd.DataFrame:
    users, items = zip(*pairs)
    return pd.DataFrame({"user": np.array(users, dtype=np.int64), "item": np.array(items, dtype=np.int64)})


def _cascade_frame() -> pd.DataFrame:
    """A 5×5 complete core (every user and item has exactly 5) plus a chain that unravels only
    over several rounds: item 99 is cold (1) → user 6 drops to 4 → item 50 drops to 4 → users
    7..10 drop to 4 → items 1..4 fall back to exactly 5, which stays (strict ``<``)."""
    core = [(u, i) for u in range(1, 6) for i in range(1, 6)]
    chain = [(6, 1), (6, 2), (6, 3), (6, 99), (6, 50)]
    chain += [(u, i) for u in range(7, 11) for i in (50, 1, 2, 3, 4)]
    pairs = []
    # Interleave so that the filter must keep the file order of the survivors.
    for k in range(max(len(core), len(chain))):
        if k < len(chain):
            pairs.append(chain[k])
        if k < len(core):
            pairs.append(core[k])
    return _frame(pairs)


def _one_round(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    users = frame["user"].map(frame["user"].value_counts())
    items = frame["item"].map(frame["item"].value_counts())
    return frame[((users >= k) & (items >= k)).to_numpy()]


def test_k_core_needs_several_rounds_and_keeps_exactly_min():
    frame = _cascade_frame()
    # A single round removes only item 99: proof that the filter has to iterate.
    assert len(_one_round(frame, 5)) == len(frame) - 1
    out = k_core(frame, 5, 5, "cascade")
    expected = [(u, i) for u, i in zip(frame["user"], frame["item"]) if u <= 5]  # file order
    assert list(zip(out["user"], out["item"])) == expected
    assert set(out["user"].value_counts()) == {5}  # exactly 5 stays
    assert set(out["item"].value_counts()) == {5}


def test_k_core_strict_threshold_on_a_single_item():
    # Item 7 has exactly 5 interactions (kept); item 8 has 4 (dropped), and nothing else changes.
    pairs = [(u, i) for u in range(1, 6) for i in range(1, 6)]
    pairs += [(u, 7) for u in range(1, 6)] + [(u, 8) for u in range(1, 5)]
    out = k_core(_frame(pairs), 5, 5, "strict")
    assert 7 in set(out["item"]) and 8 not in set(out["item"])
    assert len(out) == 30


def _brute_k_core(pairs, min_user, min_item):
    pairs = list(pairs)
    while True:
        users, items = {}, {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        kept = [(u, i) for u, i in pairs if users[u] >= min_user and items[i] >= min_item]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", range(5))
def test_k_core_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 600
    pairs = list(zip(rng.integers(0, 60, n).tolist(), (rng.zipf(1.6, n) % 80).tolist()))
    expected = _brute_k_core(pairs, 5, 4)
    if not expected:
        with pytest.raises(DataError):
            k_core(_frame(pairs), 5, 4, "random")
        return
    out = k_core(_frame(pairs), 5, 4, "random")
    assert list(zip(out["user"].tolist(), out["item"].tolist())) == expected


def test_k_core_that_empties_the_data_names_the_source_and_the_parameters():
    frame = _frame([(1, 1), (1, 2), (2, 1)])
    with pytest.raises(DataError) as info:
        k_core(frame, 5, 5, "tiny.csv")
    message = str(info.value)
    assert "tiny.csv" in message
    assert "min_user_interactions" in message and "min_item_interactions" in message


def test_k_core_that_empties_a_file(write_file):
    path = write_file("sparse.csv", "user_id,item_id\n" + "".join(f"{u},{u * 10 + k}\n" for u in range(4) for k in range(6)))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(path=str(path), use_cache=False))
    assert str(path) in str(info.value) and "removed every interaction" in str(info.value)


# --- order and remap ----------------------------------------------------------------------------
INTER_OUT_OF_ORDER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t5\t30\n"
    "2\t20\t5\t3\n"
    "1\t11\t5\t10\n"
    "1\t12\t5\t20\n"
    "2\t21\t5\t1\n"
    "1\t13\t5\t10\n"  # ties with item 11: file order (11 before 13) must be kept
    "2\t22\t5\t2\n"
    "1\t14\t5\t5\n"
    "2\t23\t5\t2\n"  # ties with item 22
)
# Expected per-user time order, original ids; users in order of first appearance.
SORTED_USER_1 = [14, 11, 13, 12, 10]
SORTED_USER_2 = [21, 22, 23, 20]


def test_timestamps_sorted_per_user_with_stable_ties(write_file):
    path = write_file("Shuffled.inter", INTER_OUT_OF_ORDER)
    frame, originals = order_and_remap(read_interactions(path))
    assert frame["user"].tolist() == [0] * 5 + [1] * 4
    assert originals[frame["item"].to_numpy()].tolist() == SORTED_USER_1 + SORTED_USER_2
    # New ids are 1..n in order of first appearance after sorting; 0 is padding.
    assert frame["item"].tolist() == list(range(1, 10))
    assert originals[0] == 0
    assert frame["timestamp"].tolist() == [5, 10, 10, 20, 30, 1, 2, 2, 3]


def test_timestamp_order_reaches_the_prepared_sequences(write_file):
    path = write_file("Shuffled.inter", INTER_OUT_OF_ORDER)
    data = load_dataset(DataConfig(path=str(path), min_user_interactions=3, min_item_interactions=1, max_len=10, use_cache=False))
    assert data.n_sequences == 2
    assert data.items.tolist() == list(range(1, 10))  # ids remapped in sorted order
    assert data.lengths.tolist() == [5, 4]


def test_without_timestamp_file_order_is_kept(write_file):
    path = write_file("order.csv", "user_id,item_id\n2,5\n1,7\n2,6\n1,5\n2,7\n")
    frame, originals = order_and_remap(read_interactions(path))
    assert frame["user"].tolist() == [0, 0, 0, 1, 1]  # user 2 appears first
    assert originals[frame["item"].to_numpy()].tolist() == [5, 6, 7, 7, 5]
    assert frame["item"].tolist() == [1, 2, 3, 3, 1]


# --- windows ------------------------------------------------------------------------------------
def authors_windows(n: int, max_len: int) -> list[tuple[int, int]]:
    """The authors' cut (dataloaders/utils.py): (start, size) of each window, chronological."""
    if n <= max_len:
        return [(0, n)]
    starts = list(range(n - max_len, 0, -max_len))
    starts.append(0)  # the head window s[:max_len], always added
    return sorted((s, max_len) for s in starts)


def disjoint_windows(n: int, max_len: int, min_window: int) -> list[tuple[int, int]]:
    if n <= max_len:
        return [(0, n)]
    starts = list(range(n - max_len, 0, -max_len))
    out = [(s, max_len) for s in starts]
    head = min(starts)
    if head >= min_window:
        out.append((0, head))
    return sorted(out)


def _windows_by_user(lengths, max_len, windowing, min_window=5):
    users, starts, sizes = window_starts(np.asarray(lengths, dtype=np.int64), max_len, windowing, min_window)
    assert users.dtype.kind == "i" and starts.dtype.kind == "i" and sizes.dtype.kind == "i"
    out = {u: [] for u in range(len(lengths))}
    for u, s, z in zip(users.tolist(), starts.tolist(), sizes.tolist()):
        out[u].append((s, z))
    # Output order is (user, start): every user's windows together and chronological.
    assert list(zip(users.tolist(), starts.tolist())) == sorted(zip(users.tolist(), starts.tolist()))
    return out


@pytest.mark.parametrize("max_len", [3, 5, 10, 20])
def test_authors_windowing_matches_brute_force(max_len):
    rng = np.random.default_rng(max_len)
    lengths = np.concatenate([rng.integers(1, 6 * max_len, 300), np.arange(1, 4 * max_len + 2)])
    got = _windows_by_user(lengths, max_len, "authors")
    for u, n in enumerate(lengths.tolist()):
        assert got[u] == authors_windows(n, max_len), f"length {n}"


@pytest.mark.parametrize("max_len, min_window", [(5, 3), (10, 5), (20, 5), (10, 10)])
def test_disjoint_windowing_matches_brute_force(max_len, min_window):
    rng = np.random.default_rng(max_len + min_window)
    lengths = np.concatenate([rng.integers(1, 6 * max_len, 300), np.arange(1, 4 * max_len + 2)])
    got = _windows_by_user(lengths, max_len, "disjoint", min_window)
    for u, n in enumerate(lengths.tolist()):
        windows = got[u]
        assert windows == disjoint_windows(n, max_len, min_window), f"length {n}"
        covered = [p for s, z in windows for p in range(s, s + z)]
        assert len(covered) == len(set(covered))  # disjoint


def test_windowing_examples():
    # n = 23, L = 10: end-anchored windows start at 13 and 3; the head s[:10] overlaps s[3:13].
    assert _windows_by_user([23], 10, "authors")[0] == [(0, 10), (3, 10), (13, 10)]
    assert _windows_by_user([23], 10, "disjoint", 3)[0] == [(0, 3), (3, 10), (13, 10)]
    assert _windows_by_user([23], 10, "disjoint", 4)[0] == [(3, 10), (13, 10)]
    # A multiple of L: the head window is exactly the first end-anchored window's predecessor.
    assert _windows_by_user([20], 10, "authors")[0] == [(0, 10), (10, 10)]
    assert _windows_by_user([10], 10, "authors")[0] == [(0, 10)]


def test_unknown_windowing():
    with pytest.raises(ValueError, match="authors, disjoint"):
        window_starts(np.array([5]), 5, "sliding", 5)
