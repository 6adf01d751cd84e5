"""How a sweep picks a cell's best trial: the highest validation metric, ties broken by the trial's
configuration in canonical order, never by the order the rows happen to be in.

Rows come back from Tune in the order its experiment state holds them, which changes when an
interrupted sweep is restored; two trials can tie exactly on validation (a small catalogue, a
metric that moves in steps).  The canonical key makes the same trials give the same best trial
in any order, so a resumed sweep writes the tables an uninterrupted one writes.
"""

from __future__ import annotations

import json
import math

import pandas as pd

#: The column a sweep selects on (what its trials report as the best validation NDCG@10 so far).
SELECT_METRIC = "valid/best_ndcg@10"


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def config_key(row) -> str:
    """The trial's searched configuration (its ``config/*`` columns) as canonical JSON: names sorted,
    missing values as null, numbers as exact decimals."""
    config = {k: _plain(row[k]) for k in sorted(row.index) if str(k).startswith("config/")}
    return json.dumps(config, sort_keys=True, default=str)


def best_row(frame: pd.DataFrame, metric: str = SELECT_METRIC) -> pd.Series | None:
    """The row of ``frame`` with the highest ``metric`` (rows where it is missing never win); ties go
    to the smallest :func:`config_key`, then the smallest ``trial_id``.  None when no row has it."""
    if not len(frame) or metric not in frame:
        return None
    scored = frame[frame[metric].notna()]
    if not len(scored):
        return None
    values = scored[metric].astype(float)
    tied = scored[values == values.max()]
    if len(tied) == 1:
        return tied.iloc[0]
    keys = [(config_key(row), str(row.get("trial_id", ""))) for _, row in tied.iterrows()]
    return tied.iloc[min(range(len(keys)), key=keys.__getitem__)]


#: The results column naming a seed replicate's seed index (absent or empty for search trials).
REPLICATE_COLUMN = "replicate"


def seed_rows(cell: pd.DataFrame) -> pd.DataFrame | None:
    """A cell's rows by seed index when it ran seed replicates (``--seeds N``): the best search trial
    as seed 0, then each completed replicate in seed order.  None when the cell has no replicate."""
    if REPLICATE_COLUMN not in cell or not cell[REPLICATE_COLUMN].notna().any():
        return None
    replicates = cell[cell[REPLICATE_COLUMN].notna()]
    if "status" in replicates:
        replicates = replicates[replicates["status"] == "completed"]
    searched = cell[cell[REPLICATE_COLUMN].isna()]
    first = searched[searched["is_best"].fillna(False).astype(bool)] if "is_best" in searched else searched.iloc[0:0]
    if not len(first):  # rows not yet flagged (a sweep's own result): the best completed one
        best = best_row(searched[searched["status"] == "completed"] if "status" in searched else searched)
        first = searched.iloc[0:0] if best is None else best.to_frame().T
    ordered = replicates.assign(_seed=replicates[REPLICATE_COLUMN].astype(int)).sort_values("_seed")
    out = pd.concat([first.assign(_seed=0), ordered], ignore_index=True)
    return out.set_index("_seed")
