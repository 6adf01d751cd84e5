"""What a sweep run directory holds after each ``sweeps/grid.py`` invocation: results.parquet, the
best trials' per-sequence vectors and models (``best/``), the run's table.md and summary.json.

``best/<dataset>__<backbone>__<method>.model.pt`` is a copy of the cell's best trial's student
(``TRIAL_MODEL_FILE`` in its trial directory, written by the sweep): ``csrec.artifacts.load`` reads
it and its ``recommend(...)`` gives top-k lists; summary.json names it per cell (``best_model``).

Cells that an earlier invocation on the same run directory wrote and this one did not rerun are
kept (a ``--resume --ablation`` invocation adds its cells to the main grid's).  The table follows
Table 3's layout with the paired t-test marks of :mod:`csrec.report.stats`, the same test and marks
as the report's tables (:mod:`csrec.report.tables`) built from the same best trials.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from csrec.atomic import atomic_path, write_atomic
from csrec.methods.config import METHODS, SYMBOLS, method_hyperparameters, value_text
from csrec.metrics import ndcg_at_k, recall_at_k
from csrec.report.stats import ALPHA, finished_seeds, significance_marks
from csrec.search.selection import REPLICATE_COLUMN, seed_rows

#: The model file of a trial's best-epoch student in its trial directory (``csrec.artifacts`` format).
TRIAL_MODEL_FILE = "student.model.pt"
#: ``best/<dataset>__<backbone>__<method>.trial.json``: a copy of the best trial's ``trial_result.json``.
BEST_TRIAL_SUFFIX = ".trial.json"
KEY = ["dataset", "backbone", "method", "ablation"]
FIRST_COLUMNS = ["dataset", "backbone", "method", "ablation", "search", "trial_id", "replicate", "status", "error",
                 "is_best"]
COLUMNS = (("recall@10", "Recall@10", False), ("ndcg@10", "NDCG@10", False),
           ("recall@10", "Recall+@10", True), ("ndcg@10", "NDCG+@10", True))


#: The part of a run directory that the report and a later ``--resume`` need: a few kilobytes per
#: cell, fit for committing or copying to another machine (no model weights, no Tune experiments).
COMPACT_FILES = ("results.parquet", "summary.json", "run.json", "table.md")
COMPACT_BEST_SUFFIXES = (".npz", BEST_TRIAL_SUFFIX)


def copy_compact(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy ``run_dir``'s compact part into ``dest`` (created; files there are replaced atomically);
    returns the files written.  ``dest`` is then a run directory that ``sweeps/report.py`` reports on
    and ``sweeps/grid.py --resume`` continues, keeping the cells it records as complete."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "results.parquet").is_file():
        raise FileNotFoundError(f"{run_dir} holds no sweep results (no results.parquet)")
    sources = [run_dir / name for name in COMPACT_FILES if (run_dir / name).is_file()]
    best = run_dir / "best"
    if best.is_dir():
        sources += sorted(f for f in best.iterdir() if f.name.endswith(COMPACT_BEST_SUFFIXES))
    written = []
    for source in sources:
        target = dest / source.relative_to(run_dir)
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        written.append(target)
    return written


def write_run_outputs(run_dir: str | Path, cells: list, extra: dict | None = None) -> dict[str, Path]:
    """Write results.parquet, best/<cell>.npz and .model.pt, table.md and summary.json into ``run_dir``.

    ``cells``: the cells this invocation ran (:class:`csrec.sweep.SweepResult`: ``trials``,
    ``best_trial_path``, ``record()`` and the labels).  ``extra``: more summary.json entries.
    """
    run_dir = Path(run_dir)
    previous, before = _previous_outputs(run_dir)
    rerun = {(c.dataset, c.backbone, c.method, c.ablation) for c in cells}
    frames = [_trial_rows(c) for c in cells]
    if previous is not None and len(previous):
        keys = pd.Series(list(zip(*(previous[k] for k in KEY))), index=previous.index)
        frames.append(previous[~keys.isin(rerun)])
    filled = [f for f in frames if len(f)]  # (an empty frame would turn integer columns into floats)
    results = _ordered(pd.concat(filled, ignore_index=True)) if filled else pd.DataFrame()
    paths = {"results": run_dir / "results.parquet", "table": run_dir / "table.md", "summary": run_dir / "summary.json"}
    with atomic_path(paths["results"]) as tmp:
        _parquet_ready(results.copy()).to_parquet(tmp, index=False)
    main = results[results["ablation"].isna()] if len(results) else results
    best = _best_vectors(run_dir, main)
    write_atomic(paths["table"], run_table(main.drop(columns=["ablation"]) if len(main) else main, best,
                                           _best_settings(run_dir, main)))
    models = _best_models(run_dir, main)
    summary = {
        "cells": [_with_model(c.record(), models) for c in cells if c.ablation is None]
        + [c for c in before.get("cells", []) if (c["dataset"], c["backbone"], c["method"], None) not in rerun],
        **(extra or {}),
        "ablations": [c for c in before.get("ablations", [])
                      if (c["dataset"], c["backbone"], c["method"], c["ablation"]) not in rerun]
        + [c.record() for c in cells if c.ablation is not None],
    }
    write_atomic(paths["summary"], json.dumps(summary, indent=1, default=str))
    return paths


def _best_settings(run_dir: Path, main: pd.DataFrame) -> dict[tuple, dict]:
    """(dataset, backbone, method) → the method's hyperparameters its best trial trained with (from
    ``best/<cell>.trial.json``, or the trial's own ``trial_result.json``), searched or not: a value
    given on the command line (``--set``) is in no ``config/`` column, and the table should still
    say what it was."""
    out = {}
    if not len(main):
        return out
    for row in main[main["is_best"].fillna(False).astype(bool)].itertuples():
        payload = (read_json(run_dir / "best" / f"{row.dataset}__{row.backbone}__{row.method}{BEST_TRIAL_SUFFIX}")
                   or read_json(Path(str(row.trial_path)) / "trial_result.json"))
        values = trial_method_values(payload)
        out[(row.dataset, row.backbone, row.method)] = {
            n: values[n] for n in method_hyperparameters(row.method) if n in values}
    return out


def trial_method_values(payload: dict | None) -> dict:
    """The MethodConfig a trial trained with, from its ``trial_result.json`` (``{}`` when absent)."""
    return ((payload or {}).get("config") or {}).get("method") or {}


def read_json(path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _trial_rows(cell) -> pd.DataFrame:
    frame = cell.trials.copy()
    frame["ablation"] = cell.ablation
    frame["is_best"] = False
    if cell.best_trial_path is not None and len(frame):
        frame.loc[frame["trial_path"] == cell.best_trial_path, "is_best"] = True
    return frame


def _previous_outputs(run_dir: Path) -> tuple[pd.DataFrame | None, dict]:
    """(results.parquet's rows, summary.json) of earlier invocations, or (None, {})."""
    file = run_dir / "results.parquet"
    if not file.is_file():
        return None, {}
    try:
        frame = pd.read_parquet(file)
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    except Exception as exc:  # noqa: BLE001 - an unreadable earlier output is not worth failing the run for
        print(f"[grid] earlier results in {run_dir} unreadable ({type(exc).__name__}: {exc}); not kept", flush=True)
        return None, {}
    if len(frame) and "dataset" not in frame:
        return None, summary
    if "ablation" not in frame:  # written before ablations existed: every trial is the main grid's
        frame["ablation"] = None
    frame["ablation"] = frame["ablation"].map(_clean).astype(object)
    return frame, summary


def _ordered(results: pd.DataFrame) -> pd.DataFrame:
    configs = sorted(c for c in results.columns if c.startswith("config/"))
    rest = [c for c in results.columns if c not in FIRST_COLUMNS and c not in configs]
    return results[[c for c in FIRST_COLUMNS if c in results.columns] + configs + rest]


def _clean(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """One type per object column: None for missing, booleans and numbers kept, anything else as text."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = [_clean(v.item() if isinstance(v, np.generic) else v) for v in frame[column]]
        kinds = {type(v) for v in values if v is not None}
        if kinds and kinds <= {bool}:
            pass
        elif kinds and kinds <= {int, float}:
            values = [None if v is None else float(v) for v in values]
        else:
            values = [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values]
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _best_vectors(run_dir: Path, main: pd.DataFrame) -> dict[tuple, dict]:
    """(dataset, backbone, method) → per-sequence test vectors of the cell's best trial; also
    copied to ``best/<dataset>__<backbone>__<method>.npz``, with the trial's ``trial_result.json`` as
    ``best/<...>.trial.json`` (its configuration and teachers' metrics).  A cell whose trial
    directory is gone (a run directory moved from another machine) keeps the copies it has."""
    (run_dir / "best").mkdir(parents=True, exist_ok=True)
    best: dict[tuple, dict] = {}
    if not len(main):
        return best
    for row in main[main["is_best"].fillna(False).astype(bool)].itertuples():
        stem = run_dir / "best" / f"{row.dataset}__{row.backbone}__{row.method}"
        vectors = load_best_vectors(row.trial_path)
        if vectors is None:
            vectors = _read_vectors(stem.with_suffix(".npz"))
            if vectors is not None:
                best[(row.dataset, row.backbone, row.method)] = vectors
            continue
        best[(row.dataset, row.backbone, row.method)] = vectors
        with atomic_path(stem.with_suffix(".npz")) as tmp:
            np.savez_compressed(tmp, **vectors)
        result = Path(row.trial_path) / "trial_result.json"
        if result.is_file():
            with atomic_path(stem.with_suffix(BEST_TRIAL_SUFFIX)) as tmp:
                shutil.copyfile(result, tmp)
    return best


def _read_vectors(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as payload:
        return {key: payload[key] for key in payload.files}


def best_model_path(run_dir: str | Path, dataset: str, backbone: str, method: str) -> Path:
    """Where a run keeps the model of a cell's best trial."""
    return Path(run_dir) / "best" / f"{dataset}__{backbone}__{method}.model.pt"


def _best_models(run_dir: Path, main: pd.DataFrame) -> dict[tuple, Path]:
    """(dataset, backbone, method) → ``best/<cell>.model.pt``, copied from each best trial's model file."""
    models: dict[tuple, Path] = {}
    if not len(main):
        return models
    for row in main[main["is_best"].fillna(False).astype(bool)].itertuples():
        source = Path(row.trial_path) / TRIAL_MODEL_FILE
        if not source.is_file():
            continue
        target = best_model_path(run_dir, row.dataset, row.backbone, row.method)
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        models[(row.dataset, row.backbone, row.method)] = target
    return models


def _with_model(record: dict, models: dict[tuple, Path]) -> dict:
    path = models.get((record["dataset"], record["backbone"], record["method"]))
    return {**record, "best_model": None if path is None else str(path)}


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


# --- the run's table ------------------------------------------------------------------------------
def _has_ratings(vectors: dict) -> bool:
    positive = vectors["test_positive"]
    return bool(positive.any() and not positive.all())


def significance(best: dict[tuple, dict], dataset: str, backbone: str,
                 per_seed: dict[str, dict[str, np.ndarray]] | None = None) -> dict[tuple[str, str], dict]:
    """{(method, column label): {"mark": str, "p_vs_base": p, "p_vs_softrec": p, ...}} for one (dataset,
    backbone): :func:`csrec.report.stats.significance_marks` per column, the test behind the report's
    tables too.  ``per_seed``: method → {column label: test value per seed index} (:func:`seed_values`)
    where cells ran seeds; a pair of methods sharing two seeds is then tested across seeds."""
    vectors = {m: v for (d, b, m), v in best.items() if (d, b) == (dataset, backbone)}
    out: dict = {}
    for metric, label, plus in COLUMNS:
        seeds = {m: v[label] for m, v in (per_seed or {}).items() if label in v}
        for method, entry in significance_marks(vectors, metric, "test_positive" if plus else None, seeds=seeds).items():
            out[(method, label)] = entry
    return out


def run_table(results: pd.DataFrame, best: dict[tuple, dict], settings: dict[tuple, dict] | None = None) -> str:
    """table.md: per dataset, rows = backbone × method, columns = test metrics of the best trial.
    ``settings``: (dataset, backbone, method) → every hyperparameter the best trial trained with
    (:func:`_best_settings`); those no search chose are shown as set."""
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
    if REPLICATE_COLUMN in results and results[REPLICATE_COLUMN].notna().any():
        lines[-1] += (" Where the cells ran several seeds (`--seeds N`: the configuration chosen on validation "
                      "trained again with each seed, teachers included), a cell shows the mean ± std over seeds, and "
                      "a mark comes from the same test paired across the seeds both methods ran, instead of sequences, "
                      "wherever the two share two seeds or more.")
    for dataset in sorted(results["dataset"].unique()):
        sub = results[results["dataset"] == dataset]
        ratings = any(_has_ratings(v) for (d, _, _), v in best.items() if d == dataset)
        columns = [c for c in COLUMNS if ratings or not c[2]]
        lines += ["", f"## {dataset}", ""]
        header = ["backbone", "method", *[c[1] for c in columns], "best config (validation)",
                  "trials completed / run (the rest stopped early or failed)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for backbone in sorted(sub["backbone"].unique()):
            rows = sub[sub["backbone"] == backbone]
            per_seed = seed_values(rows, {label: test_column(metric, plus) for metric, label, plus in columns})
            marks = significance(best, dataset, backbone, per_seed)
            for method in [m for m in METHODS if m in set(rows["method"])]:
                cell = rows[rows["method"] == method]
                lines.append(_table_row(cell, best.get((dataset, backbone, method)), backbone, method, columns, marks,
                                        per_seed.get(method) if per_seed else None,
                                        (settings or {}).get((dataset, backbone, method))))
    return "\n".join(lines) + "\n"


def test_column(metric: str, plus: bool) -> str:
    """The results column of a test metric (``plus``: over positively rated answers)."""
    return f"test/{metric.replace('@', '+@')}" if plus else f"test/{metric}"


def seed_values(rows: pd.DataFrame, columns: dict[str, str]) -> dict[str, dict[str, np.ndarray]] | None:
    """method → {key: test value per seed index, NaN where that seed has no finished run} for one
    (dataset, backbone) whose cells ran seed replicates (:func:`csrec.search.selection.seed_rows`),
    ``columns``: key → results column; None when no cell did."""
    out = {}
    for method in rows["method"].unique():
        seeded = seed_rows(rows[rows["method"] == method])
        if seeded is not None:
            index = seeded.index.to_numpy(dtype=np.int64)
            out[method] = {}
            for key, column in columns.items():
                if column in seeded:
                    values = np.full(int(index.max()) + 1, np.nan)
                    values[index] = seeded[column].astype(float).to_numpy()
                    out[method][key] = values
    return out or None


def _table_row(cell: pd.DataFrame, vectors: dict | None, backbone: str, method: str, columns, marks,
               seeds: dict | None = None, settings: dict | None = None) -> str:
    row = [backbone, method]
    for metric, label, plus in columns:
        if seeds is not None and label in seeds:
            values = finished_seeds(seeds[label])
            spread = f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else ""
            row.append(f"{np.mean(values):.4f}{spread}{marks.get((method, label), {}).get('mark', '')}")
            continue
        if vectors is None:
            row.append("–")
            continue
        mask = vectors["test_positive"] if plus else slice(None)
        value = float(np.mean(vectors[metric][mask])) if np.size(vectors[metric][mask]) else math.nan
        row.append(f"{value:.4f}{marks.get((method, label), {}).get('mark', '')}")
    row.append(_best_config_text(cell, settings))
    searched = cell[cell[REPLICATE_COLUMN].isna()] if REPLICATE_COLUMN in cell else cell
    counts = searched["status"].value_counts().to_dict()
    row.append(f"{counts.get('completed', 0)}/{len(searched)}"
               + (f", {len(finished_seeds(seeds[next(iter(seeds))]))} seeds" if seeds else ""))
    return "| " + " | ".join(row) + " |"


def _best_config_text(cell: pd.DataFrame, settings: dict | None = None) -> str:
    """``β=0.75, T=6`` for what the search chose; values it did not search (``settings``, given on
    the command line or left at their defaults) follow as ``set: m=2, p=0.8``."""
    best = cell[cell.get("is_best", pd.Series(False, index=cell.index)).fillna(False).astype(bool)]
    if not len(best):
        return "–"
    row = best.iloc[0]
    searched, fixed = [], []
    for name, short in SYMBOLS.items():
        value = row.get(f"config/{name}")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            searched.append(f"{short}={value_text(value)}")
        elif (settings or {}).get(name) is not None:
            fixed.append(f"{short}={value_text(settings[name])}")
    text = ", ".join(searched)
    if fixed:
        text += ("; " if text else "") + "set: " + ", ".join(fixed)
    return text or "–"
