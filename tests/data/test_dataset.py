"""Prepared data: leave-one-out splits, positive flags, config errors and the Parquet cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import csrec.data.dataset as dataset_module
from csrec.data import DataConfig, SyntheticConfig, dataset_names, load_dataset
from csrec.errors import ConfigError, DataError

# Original ids equal their order of first appearance, so the remapped ids are the same numbers.
# max_len 5, authors' windows: user 1 (5 items) → one window; user 2 (7 items) → the head window
# s[:5] and s[2:7]; user 3 (3 items) → one window.
HAND_ROWS = [
    # user, item, rating
    (1, 1, 5), (1, 2, 4), (1, 3, 3), (1, 4, 2), (1, 5, 1),
    (2, 6, 5), (2, 7, 5), (2, 1, 5), (2, 8, 2), (2, 9, 5), (2, 2, 5), (2, 10, 3),
    (3, 11, 4), (3, 12, 4), (3, 13, 4),
]
LOO = dict(min_user_interactions=3, min_item_interactions=1, max_len=5, use_cache=False)


def _csv(rows, with_rating=True) -> str:
    if with_rating:
        return "user_id,item_id,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in rows)
    return "user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i, _ in rows)


@pytest.fixture
def hand_data(write_file):
    return load_dataset(DataConfig(path=str(write_file("hand.csv", _csv(HAND_ROWS))), **LOO))


def test_hand_made_windows(hand_data):
    data = hand_data
    assert data.name == "hand"
    assert data.n_items == 13 and data.max_len == 5
    assert data.n_sequences == 4 and data.n_source_users == 3
    assert data.lengths.tolist() == [5, 5, 5, 3]
    assert data.offsets.tolist() == [0, 5, 10, 15, 18]
    assert data.items.tolist() == [1, 2, 3, 4, 5, 6, 7, 1, 8, 9, 1, 8, 9, 2, 10, 11, 12, 13]
    assert data.source_user.tolist() == [0, 1, 1, 2]
    # Each sub-session knows its source user's whole history (user 2 has 7 items in two windows).
    assert data.source_history_lengths().tolist() == [5, 7, 7, 3]
    assert data.true_items is None
    # The head window's test item (9, user 2 position 4) is a training position of s[2:7].
    assert data.leaked_test_targets() == 1
    stats = data.stats()
    assert stats["sub_sessions"] == 4 and stats["interactions"] == 18 and stats["items"] == 13
    assert stats["train_targets"] == 6 and stats["leaked_test_targets"] == 1 and stats["source_users"] == 3


def test_leave_one_out_train_arrays(hand_data):
    inputs, targets = hand_data.train_arrays()
    assert inputs.dtype == np.int64 and targets.dtype == np.int64
    # Training parts s[:-2]: [1,2,3], [6,7,1], [1,8,9], [11]; width max_len - 3 = 2.
    assert inputs.tolist() == [[1, 2], [6, 7], [1, 8], [11, 0]]
    assert targets.tolist() == [[2, 3], [7, 1], [8, 9], [0, 0]]
    assert hand_data.train_target_counts().tolist() == [2, 2, 2, 0]
    assert hand_data.train_target_offsets().tolist() == [0, 2, 4, 6, 6]
    assert hand_data.n_train_targets == 6


def test_leave_one_out_eval_splits(hand_data):
    valid = hand_data.eval_split("valid")
    assert valid.inputs.tolist() == [[1, 2, 3, 0], [6, 7, 1, 0], [1, 8, 9, 0], [11, 0, 0, 0]]
    assert valid.lengths.tolist() == [3, 3, 3, 1]
    assert valid.targets.tolist() == [4, 8, 2, 12]
    assert valid.positive.tolist() == [False, False, True, True]  # ratings 2, 2, 5, 4 (>= 4)
    assert valid.true_targets is None
    test = hand_data.eval_split("test")
    assert test.inputs.tolist() == [[1, 2, 3, 4], [6, 7, 1, 8], [1, 8, 9, 2], [11, 12, 0, 0]]
    assert test.lengths.tolist() == [4, 4, 4, 2]
    assert test.targets.tolist() == [5, 9, 10, 13]
    assert test.positive.tolist() == [False, True, False, True]  # ratings 1, 5, 3, 4
    for split in (valid, test):
        assert split.inputs.dtype == np.int64 and split.lengths.dtype == np.int64
        assert split.positive.dtype == bool
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        hand_data.eval_split("train")


def test_item_counts_use_training_parts_only(hand_data):
    counts = hand_data.item_counts()
    expected = np.zeros(14, dtype=np.int64)
    for item in [1, 2, 3, 6, 7, 1, 1, 8, 9, 11]:
        expected[item] += 1
    assert counts.tolist() == expected.tolist()


def test_disjoint_windows_have_no_leak(write_file):
    path = write_file("hand.csv", _csv(HAND_ROWS))
    data = load_dataset(DataConfig(path=str(path), windowing="disjoint", min_window=3, **LOO))
    # User 2's leftover head s[:2] is shorter than min_window: dropped.
    assert data.items.tolist() == [1, 2, 3, 4, 5, 1, 8, 9, 2, 10, 11, 12, 13]
    assert data.leaked_test_targets() == 0


def test_positive_threshold_is_a_parameter(write_file):
    path = write_file("hand.csv", _csv(HAND_ROWS))
    data = load_dataset(DataConfig(path=str(path), positive_threshold=3.0, **LOO))
    assert data.eval_split("test").positive.tolist() == [False, True, True, True]  # ratings 1, 5, 3, 4


def test_binary_ratings_positive_means_one(write_file):
    rows = [(u, i, 1 if r >= 4 else 0) for u, i, r in HAND_ROWS]
    data = load_dataset(DataConfig(path=str(write_file("binary.csv", _csv(rows))), **LOO))
    assert data.positive.tolist() == [r == 1 for r in _window_ratings(rows)]
    assert data.eval_split("test").positive.tolist() == [False, True, False, True]
    # Always 1 (Last.FM): every interaction is positive.
    ones = [(u, i, 1) for u, i, _ in HAND_ROWS]
    assert load_dataset(DataConfig(path=str(write_file("ones.csv", _csv(ones))), **LOO)).positive.all()


def test_no_rating_column_all_positive(write_file):
    data = load_dataset(DataConfig(path=str(write_file("norating.csv", _csv(HAND_ROWS, with_rating=False))), **LOO))
    assert data.positive.dtype == bool and data.positive.all() and len(data.positive) == 18


def test_ratings_one_to_five(hand_data):
    assert hand_data.positive.tolist() == [r >= 4 for r in _window_ratings(HAND_ROWS)]


def _window_ratings(rows):
    by_user = {}
    for u, _, r in rows:
        by_user.setdefault(u, []).append(r)
    u2 = by_user[2]
    return by_user[1] + u2[:5] + u2[2:7] + by_user[3]


def test_synthetic_data_has_true_targets(small_data):
    split = small_data.eval_split("test")
    assert split.true_targets is not None and split.true_targets.shape == split.targets.shape
    # 0 marks a true item that the k-core filter dropped from the catalogue.
    assert split.true_targets.min() >= 0 and split.true_targets.max() <= small_data.n_items
    assert np.mean(split.true_targets == 0) < 0.05
    # Clean interactions (rated 4-5) are the true item; noisy ones (rated 1-2) mostly are not.
    assert np.array_equal(split.true_targets[split.positive], split.targets[split.positive])
    assert np.mean(split.true_targets[~split.positive] != split.targets[~split.positive]) > 0.5
    assert not split.positive.all() and split.positive.any()
    assert np.array_equal(small_data.true_items[small_data.positive], small_data.items[small_data.positive])


def test_subsample(small_data):
    index = small_data.subsample(0.5, seed=3)
    assert len(index) == int(0.5 * small_data.n_sequences)
    assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < small_data.n_sequences
    assert np.array_equal(index, small_data.subsample(0.5, seed=3))
    assert not np.array_equal(index, small_data.subsample(0.5, seed=4))
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="sub-sampling ratio"):
            small_data.subsample(bad, seed=0)


# --- config errors ------------------------------------------------------------------------------
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        load_dataset("lastfmm")
    message = str(info.value)
    assert "'lastfmm'" in message
    for name in dataset_names():
        assert name in message


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (dict(max_len=2), ["max_len", "2"]),
        (dict(max_len=0), ["max_len", "0"]),
        (dict(windowing="sliding"), ["'sliding'", "authors, disjoint"]),
        (dict(format="json"), ["'json'", "csv, lines, inter"]),
        (dict(min_user_interactions=2), ["min_user_interactions"]),
        (dict(min_window=2, windowing="disjoint"), ["min_window", "2"]),
    ],
)
def test_bad_parameters(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(**overrides))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_named_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("lastfm", data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "lastfm" / "lastfm_small.csv") in message and "CSREC_DATA_DIR" in message


def test_missing_explicit_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(DataConfig(path=str(tmp_path / "nope.csv")))


# --- Parquet cache ------------------------------------------------------------------------------
def _assert_same(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, f.name
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name
    assert a.stats() == b.stats()
    assert np.array_equal(a.source_history_lengths(), b.source_history_lengths())


@pytest.fixture
def counted_build(monkeypatch):
    """Counts calls of the builder; ``counted_build.forbid = True`` makes the next call fail."""
    real = dataset_module._build

    class Counter:
        calls = 0
        forbid = False

    def build(*args, **kwargs):
        if Counter.forbid:
            raise AssertionError("the cache should have been used")
        Counter.calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "_build", build)
    return Counter


@pytest.mark.parametrize("source", ["file", "synthetic"])
def test_cache_hit_returns_identical_data(tmp_path, write_file, counted_build, source):
    cache = tmp_path / "cache"
    if source == "file":
        config = DataConfig(path=str(write_file("hand.csv", _csv(HAND_ROWS))), cache_dir=str(cache), **{**LOO, "use_cache": True})
    else:
        config = DataConfig(synthetic=SyntheticConfig(n_users=60, n_items=40, n_clusters=4, mean_length=25), cache_dir=str(cache))
    first = load_dataset(config)
    assert counted_build.calls == 1
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].endswith(".parquet")
    assert first.fingerprint[:20] in files[0]
    counted_build.forbid = True
    second = load_dataset(config)
    _assert_same(first, second)
    if source == "synthetic":
        assert second.true_items is not None and second.leaked_test_targets() > 0
    assert not list(cache.glob("*.tmp")) and sorted(p.name for p in cache.iterdir()) == files


def test_cache_never_reuses_stale_data(tmp_path, write_file, counted_build):
    cache = tmp_path / "cache"
    path = write_file("hand.csv", _csv(HAND_ROWS))
    base = DataConfig(path=str(path), cache_dir=str(cache), **{**LOO, "use_cache": True})
    first = load_dataset(base)
    fingerprints = {first.fingerprint}

    def check(config):
        calls = counted_build.calls
        data = load_dataset(config)
        assert counted_build.calls == calls + 1, "the stale cache entry was reused"
        assert data.fingerprint not in fingerprints
        fingerprints.add(data.fingerprint)
        return data

    longer = check(dataclasses.replace(base, max_len=6))
    assert longer.max_len == 6 and longer.lengths.tolist() == [5, 6, 6, 3]
    disjoint = check(dataclasses.replace(base, windowing="disjoint", min_window=3))
    assert disjoint.windowing == "disjoint" and disjoint.n_sequences == 3
    check(dataclasses.replace(base, windowing="disjoint", min_window=4))  # min_window matters when disjoint
    check(dataclasses.replace(base, positive_threshold=3.0))
    assert check(dataclasses.replace(base, min_user_interactions=4)).n_sequences == 3  # user 3 dropped
    # Same size, different content: rating 5 → 1 on the first row.
    rows = [(1, 1, 1), *HAND_ROWS[1:]]
    path.write_text(_csv(rows))
    changed = check(base)
    assert changed.positive[0] == False  # noqa: E712
    assert first.positive[0] == True  # noqa: E712
    # Back to the original content: the original cache entry is valid again.
    path.write_text(_csv(HAND_ROWS))
    counted_build.forbid = True
    _assert_same(load_dataset(base), first)
    assert len(list(cache.glob("*.parquet"))) == len(fingerprints)
    assert not list(cache.glob("*.tmp"))


def test_unreadable_cache_is_rebuilt(tmp_path, write_file, counted_build):
    cache = tmp_path / "cache"
    config = DataConfig(path=str(write_file("hand.csv", _csv(HAND_ROWS))), cache_dir=str(cache), **{**LOO, "use_cache": True})
    first = load_dataset(config)
    (cache_file,) = cache.glob("*.parquet")
    cache_file.write_bytes(b"not parquet")
    second = load_dataset(config)
    assert counted_build.calls == 2
    _assert_same(first, second)
    counted_build.forbid = True
    _assert_same(load_dataset(config), first)  # and the rewritten cache is good


def test_use_cache_false_writes_nothing(tmp_path, write_file):
    cache = tmp_path / "cache"
    config = DataConfig(path=str(write_file("hand.csv", _csv(HAND_ROWS))), cache_dir=str(cache), **LOO)
    load_dataset(config)
    assert not cache.exists() or not any(cache.iterdir())


def test_cache_dir_from_environment(tmp_path, write_file, monkeypatch):
    monkeypatch.setenv("CSREC_CACHE_DIR", str(tmp_path / "env-cache"))
    config = DataConfig(path=str(write_file("hand.csv", _csv(HAND_ROWS))), **{**LOO, "use_cache": True})
    load_dataset(config)
    assert len(list((tmp_path / "env-cache").glob("*.parquet"))) == 1
