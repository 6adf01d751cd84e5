"""Grid outputs: results.parquet, the best trials' per-sequence vectors, a Table-3-style table.

Significance: for each (dataset, backbone), every CSRec variant's best trial is compared with
Base's and SoftRec's best trials by a two-sided paired t-test over the test sequences
(``scipy.stats.ttest_rel``; the + columns pair the positively rated test sequences only).
A mark means p < 0.05 *and* the variant's mean is higher: ``*`` vs Base, ``†`` vs SoftRec.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from csrec.atomic import atomic_path, write_atomic
from csrec.methods.config import SYMBOLS
from csrec.metrics import ndcg_at_k, recall_at_k

METHOD_ORDER = ("base", "softrec", "csrec-m", "csrec-d", "csrec-t")
CSREC = ("csrec-m", "csrec-d", "csrec-t")
COLUMNS = (("recall@10", "Recall@10", False), ("ndcg@10", "NDCG@10", False),
           ("recall@10", "Recall+@10", True), ("ndcg@10", "NDCG+@10", True))
ALPHA = 0.05


def load_best_vectors(trial_path: str | Path) -> dict[str, np.ndarray] | None:
    """Per-sequence test vectors of a trial: ranks, positive mask, Recall@10 and NDCG@10."""
    path = Path(trial_path) / "ranks.npz"
    if not path.is_file():
        return None
    with np.load(path) as payload:
        ranks = payload["test_ranks"]
        positive = payload["test_positive"].astype(bool)
    return {"test_ranks": ranks, "test_positive": positive,
            "recall@10": recall_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10)}


def paired_ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value (NaN when undefined, e.g. identical vectors)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or len(a) < 2 or np.allclose(a, b):
        return math.nan
    return float(stats.ttest_rel(a, b).pvalue)


def _has_ratings(vectors: dict) -> bool:
    positive = vectors["test_positive"]
    return bool(positive.any() and not positive.all())


def significance(best: dict[tuple, dict], dataset: str, backbone: str) -> dict[tuple[str, str], dict]:
    """{(method, column label): {"vs base": p, "vs softrec": p, "mark": str}} for one (dataset, backbone)."""
    out: dict = {}
    for method in CSREC:
        mine = best.get((dataset, backbone, method))
        if mine is None:
            continue
        for metric, label, plus in COLUMNS:
            entry, mark = {}, ""
            for ref_method, symbol in (("base", "*"), ("softrec", "†")):
                ref = best.get((dataset, backbone, ref_method))
                if ref is None or len(ref["test_ranks"]) != len(mine["test_ranks"]):
                    continue
                mask = mine["test_positive"] if plus else np.ones(len(mine["test_ranks"]), dtype=bool)
                a, b = mine[metric][mask], ref[metric][mask]
                p = paired_ttest(a, b)
                entry[f"p_vs_{ref_method}"] = p
                if not math.isnan(p) and p < ALPHA and a.mean() > b.mean():
                    mark += symbol
            entry["mark"] = mark
            out[(method, label)] = entry
    return out


def markdown_table(results: pd.DataFrame, best: dict[tuple, dict]) -> str:
    """Table 3 layout: per dataset, rows = backbone × method, columns = test metrics of the best trial."""
    lines = [
        "# CSRec sweep: test metrics of the best configuration on validation",
        "",
        "Each cell is the test metric of the trial with the best validation NDCG@10 of its "
        "(dataset, backbone, method). Marks: `*` significantly better than Base, `†` significantly "
        f"better than SoftRec (two-sided paired t-test over test sequences, p < {ALPHA}; the + columns "
        "use the positively rated test sequences).",
    ]
    if not len(results):
        return "\n".join(lines + ["", "(no trials)"]) + "\n"
    for dataset in sorted(results["dataset"].unique()):
        sub = results[results["dataset"] == dataset]
        any_vectors = [v for (d, _, _), v in best.items() if d == dataset]
        ratings = any(_has_ratings(v) for v in any_vectors)
        columns = [c for c in COLUMNS if ratings or not c[2]]
        lines += ["", f"## {dataset}", ""]
        header = ["backbone", "method", *[c[1] for c in columns], "best config (validation)", "trials completed / run (the rest stopped early by ASHA or failed)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for backbone in sorted(sub["backbone"].unique()):
            marks = significance(best, dataset, backbone)
            for method in [m for m in METHOD_ORDER if m in set(sub[sub["backbone"] == backbone]["method"])]:
                cell = sub[(sub["backbone"] == backbone) & (sub["method"] == method)]
                vectors = best.get((dataset, backbone, method))
                row = [backbone, method]
                for metric, label, plus in columns:
                    if vectors is None:
                        row.append("–")
                        continue
                    mask = vectors["test_positive"] if plus else slice(None)
                    value = float(np.mean(vectors[metric][mask])) if np.size(vectors[metric][mask]) else math.nan
                    row.append(f"{value:.4f}{marks.get((method, label), {}).get('mark', '')}")
                row.append(_best_config_text(cell))
                counts = cell["status"].value_counts().to_dict()
                row.append(f"{counts.get('completed', 0)}/{len(cell)}")
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _best_config_text(cell: pd.DataFrame) -> str:
    best = cell[cell.get("is_best", pd.Series(False, index=cell.index)).fillna(False).astype(bool)]
    if not len(best):
        return "–"
    row = best.iloc[0]
    parts = []
    for name, short in SYMBOLS.items():
        value = row.get(f"config/{name}")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return ", ".join(parts) or "–"


def write_outputs(run_dir: Path, sweeps: list, extra: dict | None = None) -> dict[str, Path]:
    """results.parquet, best/<cell>.npz, table.md and summary.json in ``run_dir``."""
    run_dir = Path(run_dir)
    frames = []
    best: dict[tuple, dict] = {}
    summary = []
    (run_dir / "best").mkdir(parents=True, exist_ok=True)
    for sweep in sweeps:
        frame = sweep.trials.copy()
        frame["is_best"] = False
        if sweep.best_trial_path is not None and len(frame):
            frame.loc[frame["trial_path"] == sweep.best_trial_path, "is_best"] = True
            vectors = load_best_vectors(sweep.best_trial_path)
            if vectors is not None:
                key = (sweep.dataset, sweep.backbone, sweep.method)
                best[key] = vectors
                with atomic_path(run_dir / "best" / f"{sweep.dataset}__{sweep.backbone}__{sweep.method}.npz") as tmp:
                    np.savez_compressed(tmp, **vectors)
        frames.append(frame)
        summary.append({
            "dataset": sweep.dataset, "backbone": sweep.backbone, "method": sweep.method, "search": sweep.search,
            "trials_run": sweep.trials_run, "trials_expected": sweep.trials_expected, "complete": sweep.complete,
            "teachers_trained": sweep.teachers_trained, "best_config": sweep.best_config,
            "best_valid": sweep.best_valid, "best_test": sweep.best_test, "timings": sweep.timings,
            "path": sweep.path,
        })
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(results):
        first = ["dataset", "backbone", "method", "search", "trial_id", "status", "error", "is_best"]
        configs = sorted(c for c in results.columns if c.startswith("config/"))
        rest = [c for c in results.columns if c not in first and c not in configs]
        results = results[[c for c in first if c in results.columns] + configs + rest]
    for column in results.columns:  # parquet wants one type per column
        if results[column].dtype == object:
            results[column] = results[column].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str))
    paths = {"results": run_dir / "results.parquet", "table": run_dir / "table.md", "summary": run_dir / "summary.json"}
    with atomic_path(paths["results"]) as tmp:
        results.to_parquet(tmp, index=False)
    write_atomic(paths["table"], markdown_table(results, best))
    write_atomic(paths["summary"], json.dumps({"cells": summary, **(extra or {})}, indent=1, default=str))
    return paths
