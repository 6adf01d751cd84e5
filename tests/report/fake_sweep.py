"""A fake sweep run directory (``make_run``), written by hand in the exact layout ``sweeps/grid.py`` writes.

No Ray: ``results.parquet`` (one row per trial: labels, ``config/*``, status, ``valid/*``,
``test/*``, ``trial_path``, ``is_best``), ``best/<d>__<b>__<m>.npz`` (test_ranks, test_positive,
recall@10, ndcg@10), one trial directory per trial with ``trial_result.json`` (params, full
config, metrics, teachers) and ``ranks.npz`` (test_ranks, test_positive, valid_ranks,
test_true_ranks), ``summary.json`` and ``run.json``, on the small synthetic dataset.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from csrec.data import DataConfig, SyntheticConfig, load_dataset
from csrec.metrics import ndcg_at_k, recall_at_k, summarize

SMALL = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)
METRIC = "valid/best_ndcg@10"
#: How much each method lowers the ranks of the answers (so CSRec comes out ahead).
SHIFT = {"base": 0, "softrec": 2, "csrec-m": 9, "csrec-d": 6, "csrec-t": 7}


def _trial_points(method: str) -> list[dict]:
    """Hand-made trial configs: β × T (and m, p, α) vary as a sweep would."""
    if method == "base":
        return [{}]
    points = [{"beta": b, "temperature": t} for b in (0.25, 0.75) for t in (1.0, 3.0)]
    if method == "softrec":
        return points[:2]
    if method == "csrec-t":  # the β × T grid at each of two α
        points = [dict(p, alpha=a) for a in (0.5, 0.75) for p in points]
    out = []
    for i, point in enumerate(points):
        point = dict(point)
        if method in ("csrec-m", "csrec-d"):
            point["num_teachers"] = 1 + i % 3
        if method in ("csrec-d", "csrec-t"):
            point["subsample"] = (0.6, 0.8)[i % 2]
        out.append(point)
    return out


def _teachers(method: str, point: dict, rng, n: int, positive: np.ndarray) -> list[dict]:
    def info(role: str, spec: dict) -> dict:
        ranks = rng.integers(0, 40, n)
        return {"spec": spec, "role": role, "test": summarize(ranks, positive, ks=(10,)), "valid": {}, "key": "k"}

    if method == "csrec-m":
        return [info("teacher", {"seed": 1000 + k}) for k in range(point["num_teachers"])]
    if method == "csrec-d":
        return [info("teacher", {"seed": 1000, "subsample": point["subsample"], "subsample_seed": 2000 + k})
                for k in range(point["num_teachers"])]
    if method == "csrec-t":
        return [info("main", {"seed": 1001, "robust": True, "alpha": point["alpha"], "expectation_term": True}),
                info("side", {"seed": 1000, "subsample": point["subsample"], "subsample_seed": 2000})]
    return []


ALL_METHODS = ("base", "softrec", "csrec-m", "csrec-d", "csrec-t")


def make_run(root: Path, *, backbones=("gru4rec", "sasrec"), methods=ALL_METHODS, expectation_term: bool = True,
             seed: int = 0, data_config: dict | None = None, n_test: int | None = None) -> Path:
    """Write a fake run directory at ``root``; returns it."""
    rng = np.random.default_rng(seed)
    config = DataConfig(synthetic=SyntheticConfig(**SMALL))
    split = load_dataset(config).eval_split("test") if n_test is None else None
    n = len(split.targets) if split is not None else n_test
    positive = split.positive if split is not None else rng.random(n) < 0.7
    data_dict = data_config if data_config is not None else dataclasses.asdict(config)
    root.mkdir(parents=True, exist_ok=True)
    (root / "best").mkdir(exist_ok=True)
    rows, cells = [], []
    for backbone in backbones:
        base_ranks = rng.integers(0, 40, n)
        true_base = rng.integers(0, 40, n)
        for method in methods:
            exp = root / f"synthetic-{backbone}-{method}-optuna"
            cell_rows = []
            for i, point in enumerate(_trial_points(method)):
                trial_id = f"{backbone[:3]}{method[-1]}{i:04d}"
                trial_dir = exp / f"trial_{trial_id}"
                trial_dir.mkdir(parents=True, exist_ok=True)
                shift = SHIFT[method] + int(rng.integers(0, 3))
                ranks = np.maximum(base_ranks - shift + rng.integers(-1, 2, n), 0)
                true_ranks = np.maximum(true_base - shift, 0)
                valid_ranks = np.maximum(rng.integers(0, 40, n) - shift, 0)
                test = summarize(ranks, positive, ks=(10,))
                test.update(summarize(true_ranks, None, ks=(10,), prefix="true:"))
                valid = summarize(valid_ranks, positive, ks=(10,))
                row = {"dataset": "synthetic", "backbone": backbone, "method": method, "search": "optuna",
                       "trial_id": trial_id, "status": "completed", "error": None}
                for name in ("alpha", "beta", "num_teachers", "subsample", "temperature"):
                    row[f"config/{name}"] = float(point[name]) if name in point else np.nan
                row.update({"epoch": 2, "final": True, METRIC: valid["ndcg@10"]})
                row.update({f"valid/{k}": v for k, v in valid.items()})
                row.update({f"test/{k}": v for k, v in test.items()})
                row["trial_path"] = str(trial_dir)
                method_cfg = {"name": method, "beta": 0.5, "temperature": 3.0, "num_teachers": 2, "subsample": 0.8,
                              "alpha": 0.5, "expectation_term": expectation_term, **point}
                payload = {
                    "params": point,
                    "config": {"data": data_dict, "backbone": backbone, "model": {}, "method": method_cfg,
                               "train": {"epochs": 2, "seed": 2022}},
                    "metrics": {**row},
                    "teachers": _teachers(method, {**method_cfg, **point}, rng, n, positive),
                }
                (trial_dir / "trial_result.json").write_text(json.dumps(payload, default=str))
                np.savez_compressed(trial_dir / "ranks.npz", test_ranks=ranks, test_positive=positive,
                                    valid_ranks=valid_ranks, test_true_ranks=true_ranks)
                cell_rows.append((row, ranks))
            best = max(range(len(cell_rows)), key=lambda j: cell_rows[j][0][METRIC])
            for j, (row, ranks) in enumerate(cell_rows):
                row["is_best"] = j == best
                rows.append(row)
            ranks = cell_rows[best][1]
            np.savez_compressed(root / "best" / f"synthetic__{backbone}__{method}.npz", test_ranks=ranks,
                                test_positive=positive, **{"recall@10": recall_at_k(ranks, 10),
                                                           "ndcg@10": ndcg_at_k(ranks, 10)})
            cells.append({"dataset": "synthetic", "backbone": backbone, "method": method, "search": "optuna",
                          "trials_run": len(cell_rows), "trials_expected": len(cell_rows), "complete": True,
                          "path": str(exp)})
    frame = pd.DataFrame(rows)
    first = ["dataset", "backbone", "method", "search", "trial_id", "status", "error", "is_best"]
    configs = sorted(c for c in frame.columns if c.startswith("config/"))
    frame = frame[first + configs + [c for c in frame.columns if c not in first and c not in configs]]
    frame.to_parquet(root / "results.parquet", index=False)
    (root / "summary.json").write_text(json.dumps({"cells": cells, "wall_s": 1.0}))
    (root / "run.json").write_text(json.dumps({"argv": ["--smoke"], "cells": [[c["dataset"], c["backbone"], c["method"]]
                                                                             for c in cells]}))
    return root


def add_ablation(root: Path, name: str, backbone: str, method: str, points: list[dict], *, valid: float = 0.9,
                 seed: int = 7) -> pd.DataFrame:
    """Append one ablation cell to a fake run, as ``sweeps/grid.py --ablation NAME`` writes it.

    Trials live in ``synthetic-<backbone>-<method>-ablation-<name>``; their rows carry
    ``ablation=<name>`` and ``search="grid"``, the grid's parameters as ``config/*`` and the other
    parameters (the paper's defaults) only in ``trial_result.json``.  Every trial's validation
    NDCG@10 is ``valid`` or more (high: it would win its cell if the report mixed it in).
    Returns the appended rows.
    """
    rng = np.random.default_rng(seed)
    results = pd.read_parquet(root / "results.parquet")
    if "ablation" not in results:
        results.insert(3, "ablation", None)
    n = len(np.load(root / "best" / f"synthetic__{backbone}__base.npz")["test_ranks"]) \
        if (root / "best" / f"synthetic__{backbone}__base.npz").is_file() else 50
    positive = rng.random(n) < 0.7
    exp = root / f"synthetic-{backbone}-{method}-ablation-{name}"
    rows = []
    for i, point in enumerate(points):
        trial_id = f"abl{name[:3]}{method[-1]}{i:03d}"
        trial_dir = exp / f"trial_{trial_id}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        ranks = rng.integers(0, 30, n)
        test = summarize(ranks, positive, ks=(10,))
        row = {"dataset": "synthetic", "backbone": backbone, "method": method, "ablation": name, "search": "grid",
               "trial_id": trial_id, "status": "completed", "error": None, "is_best": i == 0}
        for key, value in point.items():
            row[f"config/{key}"] = value
        row.update({"epoch": 2, "final": True, METRIC: valid + 0.001 * i})
        row.update({f"valid/{k}": v for k, v in test.items()})
        row["valid/ndcg@10"] = valid + 0.001 * i
        row.update({f"test/{k}": v for k, v in test.items()})
        row["trial_path"] = str(trial_dir)
        method_cfg = {"name": method, "beta": 0.5, "temperature": 3.0, "num_teachers": 2, "subsample": 0.8,
                      "alpha": 0.5, "expectation_term": True, **point}
        data = dataclasses.asdict(DataConfig(synthetic=SyntheticConfig(**SMALL)))
        payload = {"params": point, "config": {"data": data, "backbone": backbone, "model": {}, "method": method_cfg,
                                               "train": {"epochs": 2, "seed": 2022}},
                   "metrics": dict(row), "teachers": []}
        (trial_dir / "trial_result.json").write_text(json.dumps(payload, default=str))
        np.savez_compressed(trial_dir / "ranks.npz", test_ranks=ranks, test_positive=positive,
                            valid_ranks=ranks)
        rows.append(row)
    added = pd.DataFrame(rows)
    frame = pd.concat([results, added], ignore_index=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in frame[column]]
            kinds = {type(v) for v in values if v is not None}
            if kinds and not kinds <= {str} and not kinds <= {bool}:
                values = [None if v is None else float(v) for v in values]
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
    frame.to_parquet(root / "results.parquet", index=False)
    return added
