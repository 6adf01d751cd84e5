"""Trained models on disk: save a model with everything needed to rebuild it, load it, and ask it
for recommendations in the dataset's own (raw) item ids.

A model file holds the best weights, the backbone's registry name and config dataclass, the
catalogue size and ``max_len``, the raw item id of every model column, and the identity of the
prepared dataset it was trained on (name, windowing, fingerprint).  It is written atomically
with ``torch.save`` and read back with ``torch.load(weights_only=True)``, so loading a file never
runs code from it.

>>> model = csrec.artifacts.load("runs/fit.model.pt")                        # doctest: +SKIP
>>> model.recommend([[1001, 1002, 1007]], k=10).items                        # doctest: +SKIP

Like the models, this module is below the api layer and never imports Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from csrec.atomic import atomic_path
from csrec.data.dataset import DataConfig, SequenceData, _fingerprint
from csrec.data.preprocess import k_core, order_and_remap
from csrec.data.readers import read_interactions
from csrec.data.synthetic import generate_synthetic
from csrec.errors import ConfigError, DataError
from csrec.models.base import SequentialRecommender, build_backbone, make_backbone_config

FORMAT = "csrec-model"
#: Bump when the layout of the saved dictionary changes; older files are then refused by name.
FORMAT_VERSION = 1
#: ``result.json`` → ``result.model.pt``: the model file that sits beside a result JSON.
MODEL_SUFFIX = ".model.pt"
#: Values of ``recommend(..., unknown=...)``.
UNKNOWN_RULES = ("error", "skip")


def model_path_for(result_path: str | os.PathLike) -> Path:
    """Where the model of the result JSON ``result_path`` is saved (``fit.json`` → ``fit.model.pt``)."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.stem + MODEL_SUFFIX)


class HistoryError(DataError):
    """A history passed to :meth:`TrainedModel.recommend` cannot be used.

    ``index`` is its 0-based position in the input, ``reason`` what is wrong and ``remedy`` the
    keyword that avoids it, if any: the command line words its own message from these.
    """

    def __init__(self, index: int, reason: str, remedy: str | None = None):
        super().__init__(f"history {index}: {reason}" + (f" ({remedy})" if remedy else ""))
        self.index = index
        self.reason = reason
        self.remedy = remedy


@dataclass(frozen=True)
class DatasetIdentity:
    """What a model file records about the prepared data it was trained on."""

    name: str
    fingerprint: str  # SequenceData.fingerprint: preprocessing options and the source file's bytes
    windowing: str
    max_len: int
    n_items: int
    catalogue: str  # sha256 of the raw item ids in column order

    def describe(self) -> str:
        return (
            f"{self.name!r} ({self.windowing} windows, max_len {self.max_len}, {self.n_items:,} items, "
            f"fingerprint {self.fingerprint[:12]})"
        )


@dataclass
class Recommendations:
    """Top-k lists, one row per history, best first."""

    items: np.ndarray  # int64 [n_histories, k]: raw item ids
    scores: np.ndarray  # float32 [n_histories, k]: the model's logits; -inf marks a seen item used as filler


# --- saving ---------------------------------------------------------------------------------------
def save(
    path: str | os.PathLike, model: SequentialRecommender, data: SequenceData, data_config: DataConfig
) -> Path:
    """Write ``model`` (its current weights: ``train_model`` leaves the best epoch's) to ``path``.

    ``data`` is the prepared data it was trained on and ``data_config`` the config that prepared
    it; the raw item id of each column comes from ``data.item_ids`` (recovered from the source with
    the data layer's steps, :func:`catalogue_item_ids`, only for data built by hand).
    """
    if model.n_items != data.n_items:
        raise ConfigError(f"the model scores {model.n_items:,} items but the data has {data.n_items:,}")
    data_config.validate()
    if _fingerprint(data_config, data_config.source_path()) != data.fingerprint:
        raise ConfigError("data_config did not prepare this data (the fingerprints differ): pass the config the data was prepared with")
    item_ids = data.item_ids if data.item_ids is not None else catalogue_item_ids(data_config)
    if len(item_ids) != data.n_items:  # the data layer's steps and catalogue_item_ids' copy of them disagree
        raise ConfigError(f"data_config yields a catalogue of {len(item_ids):,} items but the data has {data.n_items:,}")
    identity = _identity(data, item_ids)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "backbone": model.name,
        "backbone_config": dataclasses.asdict(model.config),
        "n_items": int(model.n_items),
        "max_len": int(model.max_len),
        "item_ids": torch.as_tensor(item_ids, dtype=torch.int64),
        "dataset": dataclasses.asdict(identity),
        "data_config": dataclasses.asdict(data_config),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def catalogue_item_ids(config: DataConfig) -> np.ndarray:
    """Raw item id of every model column (column ``j`` is internal item ``j + 1``), int64 [n_items].

    Repeats the steps of the data layer that fix the item ids: read (or generate) the
    interactions, k-core filter, remap in order of first appearance.  Windowing only selects
    sub-sessions of the remapped sequences, so it does not change the ids.
    """
    config.validate()
    source = config.source_path()
    if source is None:
        frame, label = generate_synthetic(config.synthetic), "synthetic data"
    else:
        frame, label = read_interactions(source, config.format), str(source)
    frame = k_core(frame, config.min_user_interactions, config.min_item_interactions, label)
    _, originals = order_and_remap(frame)
    return np.asarray(originals[1:], dtype=np.int64)


def _identity(data: SequenceData, item_ids: np.ndarray) -> DatasetIdentity:
    return DatasetIdentity(
        name=data.name, fingerprint=data.fingerprint, windowing=data.windowing, max_len=int(data.max_len),
        n_items=int(data.n_items), catalogue=_catalogue_digest(item_ids),
    )


def _catalogue_digest(item_ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(item_ids, dtype="<i8").tobytes()).hexdigest()


# --- loading --------------------------------------------------------------------------------------
def load(path: str | os.PathLike, data: SequenceData | None = None, device: str | torch.device = "cpu") -> TrainedModel:
    """The model saved at ``path``, ready to recommend.

    With ``data``, first checks that it is the prepared data the model was trained on (same
    fingerprint) and refuses any other with a DataError that describes both.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails on a damaged or foreign file with many exception types
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: not a readable csrec model file ({type(exc).__name__}: {first_line})") from None
    model, item_ids, identity = _rebuild(path, payload)
    trained = TrainedModel(model.to(device).eval(), item_ids, identity, path, payload.get("data_config"))
    if data is not None:
        trained.check_data(data)
    return trained


def _rebuild(path: Path, payload) -> tuple[SequentialRecommender, np.ndarray, DatasetIdentity]:
    try:
        return _rebuild_checked(path, payload)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a field of the wrong kind
        raise DataError(f"{path}: damaged csrec model file ({type(exc).__name__}: {exc})") from None


def _rebuild_checked(path: Path, payload) -> tuple[SequentialRecommender, np.ndarray, DatasetIdentity]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not a csrec model file (no '{FORMAT}' marker)")
    if payload.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: model file version {payload.get('version')!r}; this csrec reads version {FORMAT_VERSION}"
        )
    required = ("backbone", "backbone_config", "n_items", "max_len", "item_ids", "dataset", "state_dict")
    missing = [key for key in required if key not in payload]
    if missing:
        raise DataError(f"{path}: model file lacks {', '.join(missing)}")
    item_ids = payload["item_ids"].numpy().astype(np.int64)
    identity = DatasetIdentity(**payload["dataset"])
    if len(item_ids) != payload["n_items"] or identity.catalogue != _catalogue_digest(item_ids):
        raise DataError(f"{path}: the item-id table does not match the catalogue the file records (damaged file)")
    try:
        config = make_backbone_config(payload["backbone"], payload["backbone_config"])
        model = build_backbone(payload["backbone"], payload["n_items"], payload["max_len"], config)
    except ConfigError as exc:
        raise DataError(f"{path}: cannot rebuild the model: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: the weights do not fit a {payload['backbone']} of this config ({first_line})") from None
    return model, item_ids, identity


class TrainedModel:
    """A loaded model that recommends in raw item ids; see :func:`load`."""

    def __init__(
        self, model: SequentialRecommender, item_ids: np.ndarray, dataset: DatasetIdentity,
        path: Path | None = None, data_config: dict | None = None,
    ):
        self.model = model
        self.item_ids = item_ids  # raw id of column j (internal item j + 1)
        self.dataset = dataset
        self.path = path
        self.data_config = data_config  # the DataConfig fields the data was prepared with, as saved
        order = np.argsort(item_ids, kind="stable")
        self._sorted_ids = item_ids[order]
        self._sorted_columns = order

    @property
    def backbone(self) -> str:
        return self.model.name

    @property
    def n_items(self) -> int:
        return self.model.n_items

    @property
    def max_len(self) -> int:
        return self.model.max_len

    @property
    def history_window(self) -> int:
        """Most recent items a history is cut to: ``max_len - 1``, the longest input evaluation
        gives a model (a full sub-session less its test answer)."""
        return self.max_len - 1

    def check_data(self, data: SequenceData) -> None:
        """Refuse prepared data other than the data the model was trained on."""
        if data.fingerprint != self.dataset.fingerprint:
            where = f"{self.path}: " if self.path is not None else ""
            given = DatasetIdentity(
                name=data.name, fingerprint=data.fingerprint, windowing=data.windowing,
                max_len=int(data.max_len), n_items=int(data.n_items), catalogue="",
            )
            raise DataError(
                f"{where}the model was trained on {self.dataset.describe()}, not on the data given, "
                f"{given.describe()}; prepare the data with the file and options the model was trained with"
            )

    def recommend(
        self,
        histories: Iterable[Sequence[int]],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: str = "error",
        max_scores: int = 1 << 24,
    ) -> Recommendations:
        """Top-``k`` raw item ids (and their scores) after each history of raw item ids.

        Each history is in time order, oldest first; only its last :attr:`history_window` items
        are fed to the model, right-padded as in evaluation.  ``exclude_seen`` drops every item
        of the whole history (not only the window) from its list; if that leaves fewer than
        ``k`` candidates, the list ends with seen items scored ``-inf``.  An item id the model
        never saw raises :class:`HistoryError` (``unknown="error"``) or is dropped from its
        history (``unknown="skip"``); a history left empty raises HistoryError either way.
        Scores are computed for bounded chunks of histories (at most ``max_scores`` logits).
        """
        if unknown not in UNKNOWN_RULES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_RULES)}, got {unknown!r}")
        if not 1 <= k <= self.n_items:
            raise ConfigError(f"k must be between 1 and the catalogue size {self.n_items:,}, got {k}")
        items, offsets = self._internal_ids(histories, unknown)
        n = len(offsets) - 1
        window_inputs, window_lengths = _right_padded_tails(items, offsets, self.history_window)
        device = next(self.model.parameters()).device
        chunk = max(1, min(1024, max_scores // max(self.n_items, 1)))
        top_items = np.empty((n, k), dtype=np.int64)
        top_scores = np.empty((n, k), dtype=np.float32)
        self.model.eval()
        with torch.no_grad():
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                lengths = torch.as_tensor(window_lengths[lo:hi], device=device)
                inputs = torch.as_tensor(window_inputs[lo:hi, : int(window_lengths[lo:hi].max())], device=device)
                scores = self.model.item_scores(self.model.last_representation(inputs, lengths)).float()
                if exclude_seen:
                    seen = torch.as_tensor(items[offsets[lo] : offsets[hi]], device=device) - 1
                    rows = torch.repeat_interleave(
                        torch.arange(hi - lo, device=device), torch.as_tensor(np.diff(offsets[lo : hi + 1]), device=device)
                    )
                    scores[rows, seen] = float("-inf")
                values, columns = torch.topk(scores, k, dim=1)
                top_scores[lo:hi] = values.cpu().numpy()
                top_items[lo:hi] = self.item_ids[columns.cpu().numpy()]
        return Recommendations(items=top_items, scores=top_scores)

    def _internal_ids(self, histories: Iterable[Sequence[int]], unknown: str) -> tuple[np.ndarray, np.ndarray]:
        """Histories as one flat array of internal ids (1..n_items) plus offsets."""
        histories = list(histories)
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        if len(histories) == 0:
            raise ConfigError("no histories to recommend for")
        raw = np.array(list(itertools.chain.from_iterable(histories)))
        if len(raw) and raw.dtype.kind not in "iu":  # no silent float truncation or string parsing
            raise ConfigError(f"histories must hold integer item ids, got values of type {raw.dtype}")
        raw = raw.astype(np.int64)
        owner = np.repeat(np.arange(len(histories)), lengths)
        at = np.minimum(np.searchsorted(self._sorted_ids, raw), len(self._sorted_ids) - 1)
        known = self._sorted_ids[at] == raw
        if not known.all():
            first = int(np.flatnonzero(~known)[0])
            if unknown == "error":
                raise HistoryError(
                    int(owner[first]),
                    f"item {raw[first]} is not in the model's catalogue ({self.n_items:,} items of "
                    f"{self.dataset.name!r})",
                    "unknown='skip' drops such items",
                )
            owner = owner[known]
            at = at[known]
            lengths = np.bincount(owner, minlength=len(histories)).astype(np.int64)
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            raise HistoryError(int(empty[0]), "no item of the model's catalogue in this history")
        items = self._sorted_columns[at] + 1
        return items.astype(np.int64), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _right_padded_tails(items: np.ndarray, offsets: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``window`` items of each history, right-padded with 0: (int64 [n, w], lengths)."""
    lengths = np.diff(offsets)
    kept = np.minimum(lengths, window)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(items)) - np.repeat(offsets[:-1] + lengths - kept, lengths)  # index in the tail
    keep = position >= 0
    out = np.zeros((len(lengths), max(int(kept.max()), 1)), dtype=np.int64)
    out[owner[keep], position[keep]] = items[keep]
    return out, kept.astype(np.int64)
