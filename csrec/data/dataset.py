"""Named datasets, the prepared sequence data every later layer reads, and its Parquet cache.

A :class:`SequenceData` holds the sub-sessions as one flat item array plus offsets (CSR), so no
layer ever holds a dense sequences × items matrix.  The leave-one-out split is derived, not
stored: for a sub-session ``s``, ``s[:-2]`` is training (every position after the first is a
next-item target), ``s[-2]`` the validation target and ``s[-1]`` the test target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from csrec.atomic import atomic_path
from csrec.data.preprocess import WINDOWINGS, k_core, order_and_remap, window_starts
from csrec.data.readers import FORMATS, read_interactions
from csrec.data.synthetic import SyntheticConfig, generate_synthetic
from csrec.errors import ConfigError, DataError

#: Bump when preprocessing changes so that old caches are never reused.
PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    relative_path: str  # under the data directory
    format: str
    max_len: int
    description: str


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("lastfm", "lastfm/lastfm_small.csv", "csv", 20, "Last.FM hetrec-2011, the paper's exact file"),
        DatasetSpec("yelp", "yelp/Yelp.txt", "lines", 10, "Yelp, one user per line"),
        DatasetSpec("office", "office/Office.inter", "inter", 10, "Amazon Office Products (RecBole atomic)"),
        DatasetSpec("electronics", "electronics/Electronics.inter", "inter", 10, "Amazon Electronics (RecBole atomic)"),
        DatasetSpec("movies", "movies/Movies.inter", "inter", 10, "Amazon Movies and TV (RecBole atomic)"),
    ]
}
SYNTHETIC = "synthetic"
SYNTHETIC_MAX_LEN = 20


def dataset_names() -> list[str]:
    return [SYNTHETIC, *DATASETS]


@dataclass
class DataConfig:
    """Which data, and how to prepare it.  ``max_len=None`` takes the dataset's paper value."""

    name: str = SYNTHETIC
    data_dir: str | None = None  # default: $CSREC_DATA_DIR, else ./data
    path: str | None = None  # an explicit interaction file instead of a named dataset
    format: str | None = None  # csv | lines | inter; detected when None
    max_len: int | None = None
    windowing: str = "authors"  # "authors" (overlapping head window, as the paper) | "disjoint"
    min_user_interactions: int = 5
    min_item_interactions: int = 5
    min_window: int = 5  # disjoint windowing keeps a leftover head window of at least this many items
    positive_threshold: float = 4.0  # rating >= this is positive (binary 0/1 ratings: rating == 1)
    cache_dir: str | None = None  # default: $CSREC_CACHE_DIR, else ~/.cache/csrec
    use_cache: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        if self.path is None and self.name not in dataset_names():
            raise ConfigError(f"unknown dataset {self.name!r}; valid datasets: {', '.join(dataset_names())} (or pass path=)")
        if self.max_len is not None and self.max_len < 3:
            raise ConfigError(f"max_len must be at least 3 (one training item, a validation and a test item), got {self.max_len}")
        if self.windowing not in WINDOWINGS:
            raise ConfigError(f"unknown windowing {self.windowing!r}; valid: {', '.join(WINDOWINGS)}")
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; valid formats: {', '.join(FORMATS)}")
        if self.min_user_interactions < 3:
            raise ConfigError("min_user_interactions must be at least 3 (leave-one-out needs train, valid and test items)")
        if self.min_window < 3:
            raise ConfigError(f"min_window must be at least 3 (leave-one-out needs train, valid and test items), got {self.min_window}")

    def resolved_max_len(self) -> int:
        if self.max_len is not None:
            return self.max_len
        return DATASETS[self.name].max_len if self.name in DATASETS else (SYNTHETIC_MAX_LEN if self.path is None else 20)

    def source_path(self) -> Path | None:
        if self.path is not None:
            return Path(self.path)
        if self.name == SYNTHETIC:
            return None
        spec = DATASETS[self.name]
        data_dir = Path(self.data_dir or os.environ.get("CSREC_DATA_DIR") or "data")
        return data_dir / spec.relative_path


@dataclass
class EvalSplit:
    """Inputs and answers of the validation or test split, right-padded."""

    inputs: np.ndarray  # int64 [n, width]
    lengths: np.ndarray  # int64 [n]
    targets: np.ndarray  # int64 [n]
    positive: np.ndarray  # bool [n]: the answer's rating is positive
    true_targets: np.ndarray | None  # int64 [n]: the true preference (synthetic data only)


@dataclass
class SequenceData:
    name: str
    n_items: int  # item ids are 1..n_items; 0 is padding
    max_len: int
    items: np.ndarray  # int64 [n_interactions], all sub-sessions back to back
    positive: np.ndarray  # bool [n_interactions]
    offsets: np.ndarray  # int64 [n_sequences + 1]
    source_user: np.ndarray  # int64 [n_sequences]: the original user each sub-session came from
    true_items: np.ndarray | None  # int64 [n_interactions] (synthetic only)
    fingerprint: str
    windowing: str
    n_source_users: int
    # int64 [n_items]: the source file's id of each item column (column j is item j + 1); None only
    # for data built by hand rather than by load_dataset.
    item_ids: np.ndarray | None = None

    # --- sizes ----------------------------------------------------------------------------
    @property
    def n_sequences(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    def train_target_counts(self) -> np.ndarray:
        """Number of next-item targets in each sub-session's training part (len - 3, at least 0)."""
        return np.maximum(self.lengths - 3, 0)

    def train_target_offsets(self) -> np.ndarray:
        """Row of the first training target of each sub-session in the flat target order."""
        return np.concatenate([[0], np.cumsum(self.train_target_counts())])

    @property
    def n_train_targets(self) -> int:
        return int(self.train_target_counts().sum())

    # --- splits ---------------------------------------------------------------------------
    def _padded(self, keep: np.ndarray, width: int, values: np.ndarray | None = None) -> np.ndarray:
        """Right-padded [n_sequences, width] array of the first ``keep[i]`` items of each sequence."""
        values = self.items if values is None else values
        lengths = self.lengths
        seq = np.repeat(np.arange(self.n_sequences), lengths)
        pos = np.arange(self.n_interactions) - np.repeat(self.offsets[:-1], lengths)
        mask = pos < np.repeat(keep, lengths)
        out = np.zeros((self.n_sequences, max(width, 1)), dtype=np.int64)
        out[seq[mask], pos[mask]] = values[mask]
        return out

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), int64 [n_sequences, max_len - 3]: targets[i, t] follows inputs[i, :t+1]."""
        parts = self._padded(self.lengths - 2, self.max_len - 2)
        return parts[:, :-1].copy(), parts[:, 1:].copy()

    def eval_split(self, split: str) -> EvalSplit:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        drop = 2 if split == "valid" else 1
        lengths = self.lengths - drop
        answer_at = self.offsets[:-1] + lengths
        true_targets = None if self.true_items is None else self.true_items[answer_at]
        return EvalSplit(
            inputs=self._padded(lengths, self.max_len - 1),
            lengths=lengths.astype(np.int64),
            targets=self.items[answer_at],
            positive=self.positive[answer_at],
            true_targets=true_targets,
        )

    def source_history_lengths(self) -> np.ndarray:
        """Per sub-session: the length of its source user's whole history (after k-core filtering).

        The fixed-length windows cut a long history into sub-sessions of at most ``max_len``
        items, so their own lengths say little about the user; the windows are end-anchored, so
        the user's length is the largest window end.
        """
        ends = self._window_starts + self.lengths
        per_user = np.zeros(self.n_source_users, dtype=np.int64)
        np.maximum.at(per_user, self.source_user, ends)
        return per_user[self.source_user]

    def item_counts(self) -> np.ndarray:
        """Interactions per item id in the training parts only (index 0 = padding = 0)."""
        parts = self._padded(self.lengths - 2, self.max_len - 2)
        return np.bincount(parts.ravel(), minlength=self.n_items + 1).astype(np.int64) * (np.arange(self.n_items + 1) > 0)

    def subsample(self, fraction: float, seed: int) -> np.ndarray:
        """Sorted indices of ⌊fraction·n⌋ sub-sessions drawn uniformly without replacement."""
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"sub-sampling ratio p must lie in (0, 1], got {fraction}")
        n = int(fraction * self.n_sequences)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(self.n_sequences, size=n, replace=False))

    # --- statistics -----------------------------------------------------------------------
    def leaked_test_targets(self) -> int:
        """Test targets that are training positions of another sub-session of the same user.

        Only a head window can overlap its successor, so comparing neighbours is exact.
        """
        starts = self._window_starts
        same_user = self.source_user[1:] == self.source_user[:-1]
        test_pos = starts[:-1] + self.lengths[:-1] - 1
        next_train_lo = starts[1:]
        next_train_hi = starts[1:] + self.lengths[1:] - 3  # last training position of the next window
        return int(np.sum(same_user & (test_pos >= next_train_lo) & (test_pos <= next_train_hi)))

    _window_starts: np.ndarray = dataclasses.field(default=None, repr=False)  # type: ignore[assignment]

    def stats(self) -> dict:
        lengths = self.lengths
        return {
            "dataset": self.name,
            "windowing": self.windowing,
            "max_len": self.max_len,
            "source_users": self.n_source_users,
            "sub_sessions": self.n_sequences,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "train_targets": self.n_train_targets,
            "mean_length": float(lengths.mean()),
            "positive_test_targets": int(self.eval_split("test").positive.sum()),
            "leaked_test_targets": self.leaked_test_targets(),
        }


def format_stats(stats: dict) -> str:
    return (
        f"{stats['dataset']} ({stats['windowing']} windows, max_len {stats['max_len']}): "
        f"{stats['sub_sessions']:,} sub-sessions from {stats['source_users']:,} users, "
        f"{stats['items']:,} items, {stats['interactions']:,} interactions, "
        f"{stats['train_targets']:,} training targets, "
        f"{stats['leaked_test_targets']:,} test targets also train positions of another window"
    )


# --- building and caching ---------------------------------------------------------------------
def load_dataset(config: DataConfig | str | None = None, **overrides) -> SequenceData:
    """Prepared data for ``config`` (a DataConfig, or a dataset name plus DataConfig fields)."""
    if config is None or isinstance(config, str):
        config = DataConfig(name=config or SYNTHETIC, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    config.validate()
    source = config.source_path()
    if source is not None and not source.is_file():
        if config.path is None:
            spec = DATASETS[config.name]
            raise DataError(
                f"dataset {config.name!r} ({spec.description}) not found: put the file at {source} "
                f"(data directory set by data_dir= or $CSREC_DATA_DIR; format: {spec.format})"
            )
        raise DataError(f"{source}: no such file")
    fingerprint = _fingerprint(config, source)
    cache_file = _cache_dir(config) / f"{config.name}-{fingerprint[:20]}.parquet"
    if config.use_cache and cache_file.is_file():
        try:
            return _read_cache(cache_file, config, fingerprint)
        except (OSError, pa.ArrowException, KeyError, ValueError):
            pass  # unreadable cache: rebuild it
    data = _build(config, source, fingerprint)
    if config.use_cache:
        _write_cache(cache_file, data)
    return data


def _build(config: DataConfig, source: Path | None, fingerprint: str) -> SequenceData:
    if source is None:
        frame = generate_synthetic(config.synthetic)
        label = "synthetic data"
    else:
        frame = read_interactions(source, config.format)
        label = str(source)
    frame = k_core(frame, config.min_user_interactions, config.min_item_interactions, label)
    frame, originals = order_and_remap(frame)
    if "rating" in frame:
        ratings = frame["rating"].to_numpy()
        binary = np.isin(ratings, (0.0, 1.0)).all()
        positive = ratings >= (1.0 if binary else config.positive_threshold)
    else:
        positive = np.ones(len(frame), dtype=bool)
    user = frame["user"].to_numpy()
    user_lengths = np.bincount(user)
    user_offsets = np.concatenate([[0], np.cumsum(user_lengths)])
    max_len = config.resolved_max_len()
    win_user, win_start, win_len = window_starts(user_lengths, max_len, config.windowing, config.min_window)
    if len(win_user) == 0:
        raise DataError(f"{label}: no sub-session is left after windowing")
    index = np.repeat(user_offsets[win_user] + win_start, win_len) + (
        np.arange(int(win_len.sum())) - np.repeat(np.cumsum(win_len) - win_len, win_len)
    )
    items = frame["item"].to_numpy()[index]
    true_items = frame["true_item"].to_numpy()[index] if "true_item" in frame else None
    data = SequenceData(
        name=config.name if config.path is None else Path(config.path).stem,
        n_items=int(frame["item"].max()),
        max_len=max_len,
        items=items.astype(np.int64),
        positive=positive[index],
        offsets=np.concatenate([[0], np.cumsum(win_len)]).astype(np.int64),
        source_user=win_user.astype(np.int64),
        true_items=None if true_items is None else true_items.astype(np.int64),
        fingerprint=fingerprint,
        windowing=config.windowing,
        n_source_users=len(user_lengths),
        item_ids=np.asarray(originals[1:], dtype=np.int64),
    )
    data._window_starts = win_start.astype(np.int64)
    return data


def _fingerprint(config: DataConfig, source: Path | None) -> str:
    digest = hashlib.sha256()
    params = {
        "version": PREPROCESS_VERSION,
        "name": config.name,
        "format": config.format,
        "max_len": config.resolved_max_len(),
        "windowing": config.windowing,
        "min_user": config.min_user_interactions,
        "min_item": config.min_item_interactions,
        "min_window": config.min_window if config.windowing == "disjoint" else None,
        "positive_threshold": config.positive_threshold,
        "synthetic": dataclasses.asdict(config.synthetic) if source is None else None,
    }
    digest.update(json.dumps(params, sort_keys=True).encode())
    if source is not None:
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _cache_dir(config: DataConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("CSREC_CACHE_DIR") or Path.home() / ".cache" / "csrec")


def _write_cache(path: Path, data: SequenceData) -> None:
    offsets = pa.array(data.offsets.astype(np.int32))
    columns = {
        "source_user": pa.array(data.source_user),
        "window_start": pa.array(data._window_starts),
        "items": pa.ListArray.from_arrays(offsets, pa.array(data.items)),
        "positive": pa.ListArray.from_arrays(offsets, pa.array(data.positive)),
    }
    if data.true_items is not None:
        columns["true_items"] = pa.ListArray.from_arrays(offsets, pa.array(data.true_items))
    meta = {
        "name": data.name, "n_items": data.n_items, "max_len": data.max_len, "fingerprint": data.fingerprint,
        "windowing": data.windowing, "n_source_users": data.n_source_users, "item_ids": data.item_ids.tolist(),
    }
    table = pa.table(columns).replace_schema_metadata({"csrec": json.dumps(meta)})
    with atomic_path(path) as tmp:  # readers never see a half-written cache
        pq.write_table(table, tmp)


def _read_cache(path: Path, config: DataConfig, fingerprint: str) -> SequenceData:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"csrec"])
    if meta["fingerprint"] != fingerprint:
        raise ValueError("stale cache")
    items = table.column("items").combine_chunks()
    true_items = None
    if "true_items" in table.column_names:
        true_items = table.column("true_items").combine_chunks().flatten().to_numpy().astype(np.int64)
    data = SequenceData(
        name=meta["name"],
        n_items=meta["n_items"],
        max_len=meta["max_len"],
        items=items.flatten().to_numpy().astype(np.int64),
        positive=table.column("positive").combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(bool),
        offsets=items.offsets.to_numpy().astype(np.int64),
        source_user=table.column("source_user").to_numpy().astype(np.int64),
        true_items=true_items,
        fingerprint=fingerprint,
        windowing=meta["windowing"],
        n_source_users=meta["n_source_users"],
        item_ids=np.asarray(meta["item_ids"], dtype=np.int64),  # a cache written before item_ids: KeyError, rebuilt
    )
    data._window_starts = table.column("window_start").to_numpy().astype(np.int64)
    return data
