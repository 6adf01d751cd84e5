"""The paper's preprocessing: 5-core filter, id remap, time order, sub-session windows.

Follows the authors' code (``dataloaders/utils.py``; see ``shared/notes/reference-code-notes.md``
§1): cold users and items (strictly fewer than the minimum) are dropped together, round after
round, until none is left; ids are remapped to 1..n with 0 reserved for padding; each user's
sequence is cut into sub-sessions ("users" in the paper's Table 2) of at most ``max_len`` items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from csrec.errors import DataError

WINDOWINGS = ("authors", "disjoint")


def k_core(frame: pd.DataFrame, min_user: int, min_item: int, source: str, max_rounds: int = 100) -> pd.DataFrame:
    """Iteratively drop users with < ``min_user`` and items with < ``min_item`` interactions."""
    for _ in range(max_rounds):
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        cold = (user_counts < min_user) | (item_counts < min_item)
        if not cold.any():
            break
        frame = frame[~cold.to_numpy()]
    else:
        raise DataError(f"{source}: the {min_user}/{min_item}-core filter did not settle in {max_rounds} rounds")
    if len(frame) == 0:
        raise DataError(
            f"{source}: the {min_user}-core user / {min_item}-core item filter removed every interaction; "
            "lower min_user_interactions / min_item_interactions or provide more data"
        )
    return frame


def order_and_remap(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Sort by (user, timestamp) when there is a timestamp (stable, so file order breaks ties);
    otherwise keep file order within each user.  Users keep the order of first appearance.

    Items are remapped to 1..n in order of first appearance; returns the frame and the original
    item id of every new id (index 0 is padding).
    """
    frame = frame.reset_index(drop=True)
    user_rank = pd.factorize(frame["user"])[0]
    if "timestamp" in frame:
        order = np.lexsort((frame["timestamp"].to_numpy(), user_rank))  # lexsort is stable
    else:
        order = np.argsort(user_rank, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    codes, originals = pd.factorize(frame["item"])
    frame["item"] = codes + 1
    if "true_item" in frame:
        lookup = pd.Series(np.arange(1, len(originals) + 1), index=originals)
        frame["true_item"] = frame["true_item"].map(lookup).fillna(0).astype(np.int64)
    frame["user"] = pd.factorize(frame["user"])[0]
    return frame, np.concatenate([[0], np.asarray(originals)])


def window_starts(lengths: np.ndarray, max_len: int, windowing: str, min_window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of every user as (user index, start within the user, window length), in time order.

    ``authors``: non-overlapping windows of ``max_len`` counted back from the end, plus the head
    window ``s[:max_len]`` whenever the sequence is longer than ``max_len`` (it overlaps the next
    window unless the length is a multiple of ``max_len``).  ``disjoint``: the same end-anchored
    windows, plus the leftover head ``s[:r]`` only when it has at least ``min_window`` items.
    """
    if windowing not in WINDOWINGS:
        raise ValueError(f"unknown windowing {windowing!r}; valid: {', '.join(WINDOWINGS)}")
    users, starts, sizes = [], [], []
    short = lengths <= max_len
    idx_short = np.flatnonzero(short)
    users.append(idx_short)
    starts.append(np.zeros(len(idx_short), dtype=np.int64))
    sizes.append(lengths[idx_short])
    idx_long = np.flatnonzero(~short)
    n_long = lengths[idx_long]
    k = (n_long - 1) // max_len  # end-anchored windows: starts n-L, n-2L, ... > 0
    head_len = n_long - k * max_len  # leftover head length, 1..L
    if windowing == "authors":
        keep_head = np.ones(len(idx_long), dtype=bool)
        head_size = np.full(len(idx_long), max_len)
    else:
        keep_head = head_len >= min_window
        head_size = head_len
    users.append(idx_long[keep_head])
    starts.append(np.zeros(int(keep_head.sum()), dtype=np.int64))
    sizes.append(head_size[keep_head])
    # j-th end-anchored window of a user starts at head_len + j*L, for j in 0..k-1
    rep_user = np.repeat(idx_long, k)
    j = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    users.append(rep_user)
    starts.append(np.repeat(head_len, k) + j * max_len)
    sizes.append(np.full(len(rep_user), max_len))
    users_all = np.concatenate(users)
    starts_all = np.concatenate(starts)
    sizes_all = np.concatenate(sizes)
    order = np.lexsort((starts_all, users_all))  # chronological per user
    return users_all[order], starts_all[order], sizes_all[order]
