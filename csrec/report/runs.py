"""Reading a sweep run directory as ``sweeps/grid.py`` writes it, without importing Ray.

What a run directory holds (see :mod:`csrec.report.outputs` and :mod:`csrec.sweep.trial`):

* ``results.parquet``: one row per trial: ``dataset``, ``backbone``, ``method``, ``ablation``,
  ``search``, ``trial_id``, ``status``, ``is_best``, the searched parameters as ``config/<name>``,
  every last-reported metric (``valid/<metric>``, ``test/<metric>``, ``valid/best_ndcg@10``) and
  ``trial_path``.  ``ablation`` names the controlled sweep (``sweeps/grid.py --ablation NAME``:
  teachers, ratio, temperature, expectation) a trial belongs to, and is empty for the main grid's
  trials (older runs have no such column: every trial is the main grid's);
* ``best/<dataset>__<backbone>__<method>.npz``: ``test_ranks``, ``test_positive``, ``recall@10``,
  ``ndcg@10`` of each cell's best trial (chosen on validation);
* ``<trial_path>/trial_result.json``: ``params``, the full ``config`` (data, model, method,
  train), the final ``metrics`` and the ``teachers`` (each with its own valid/test metrics);
* ``<trial_path>/ranks.npz``: ``test_ranks``, ``test_positive``, ``valid_ranks`` and, on
  synthetic data, ``test_true_ranks``;
* ``summary.json``, ``run.json``, ``teachers/`` (the pool: ``teacher-<key>.pt`` whose ``info``
  holds the teacher's metrics, and a ``teacher-<key>.json`` sidecar naming its sweep).

Ablation trials never enter the tables, the per-sequence figures or a cell's best trial
(:attr:`Run.main` leaves them out); the hyperparameter figures read them (:meth:`Run.ablation`).

Parameters that were fixed for a sweep (``--set num_teachers=2``) or are not searched at all
(``expectation_term``) are not ``config/*`` columns; :class:`Run` fills ``param/<name>`` for every
trial from ``config/*`` first and from the trial's ``trial_result.json`` otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from csrec.data.dataset import DataConfig, SequenceData, load_dataset
from csrec.search.selection import best_row
from csrec.data.synthetic import SyntheticConfig
from csrec.errors import CSRecError
from csrec.methods.config import METHODS as METHOD_ORDER
from csrec.metrics import ndcg_at_k, recall_at_k
from csrec.search.config import GridConfig
from csrec.search.space import PARAMS
from csrec.report.outputs import BEST_TRIAL_SUFFIX, read_json, seed_values, trial_method_values
from csrec.search.selection import REPLICATE_COLUMN
METHOD_LABELS = {"base": "Base", "softrec": "SoftRec", "csrec-m": "CSRec-M", "csrec-d": "CSRec-D", "csrec-t": "CSRec-T"}
BACKBONE_ORDER = ("gru4rec", "nextitnet", "narm", "sasrec", "bert4rec", "srgnn", "dreamrec", "cl4srec")
BACKBONE_LABELS = {
    "gru4rec": "GRU4Rec", "nextitnet": "NextItNet", "narm": "NARM", "sasrec": "SASRec", "bert4rec": "BERT4Rec",
    "srgnn": "SRGNN", "dreamrec": "DreamRec", "cl4srec": "CL4SRec",
}
DATASET_ORDER = ("lastfm", "yelp", "office", "electronics", "movies", "synthetic")
DATASET_LABELS = {"lastfm": "Last.FM", "yelp": "Yelp", "office": "Office", "electronics": "Electronics",
                  "movies": "Movies and TV", "synthetic": "Synthetic"}
#: The selection metric of the sweep (never a test metric).
SELECT = "valid/best_ndcg@10"


class ReportError(CSRecError):
    """The run directory cannot be reported on (nothing there, or unreadable)."""


def method_label(name: str) -> str:
    return METHOD_LABELS.get(name, name)


def display_path(path) -> str:
    """``path`` relative to the working directory when it lies below it (committed reports carry
    no machine-specific prefix), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def backbone_label(name: str) -> str:
    return BACKBONE_LABELS.get(name, name)


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def _order(values, preferred) -> list[str]:
    values = list(dict.fromkeys(values))
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), str(v)))


def vectors_from_ranks(ranks: np.ndarray, positive: np.ndarray | None = None,
                       true_ranks: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-sequence Recall@10 / NDCG@10 vectors (and against the true item when known)."""
    ranks = np.asarray(ranks)
    out = {"test_ranks": ranks, "recall@10": recall_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10),
           "test_positive": np.ones(len(ranks), dtype=bool) if positive is None else np.asarray(positive, dtype=bool)}
    if true_ranks is not None:
        true_ranks = np.asarray(true_ranks)
        out["test_true_ranks"] = true_ranks
        out["true:recall@10"] = recall_at_k(true_ranks, 10)
        out["true:ndcg@10"] = ndcg_at_k(true_ranks, 10)
    return out


@dataclass
class Run:
    """A finished (or partial) sweep run directory, plus optional extra runs for ablations.

    ``results``: every trial of the main run (``source == "main"``) and of the extra runs
    (``source`` = their path), with ``param/<name>`` columns and ``ablation`` (None for the main
    grid's trials).  Tables and per-sequence figures read the main run's main grid only
    (:attr:`main`); the hyperparameter figures read every trial.
    """

    path: Path
    results: pd.DataFrame
    summary: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    data_dir: str | None = None
    _payloads: dict = field(default_factory=dict, repr=False)
    _best: dict | None = field(default=None, repr=False)
    _data: dict = field(default_factory=dict, repr=False)

    # --- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, data_dir: str | None = None, extra_runs=()) -> "Run":
        path = Path(path).resolve()
        frames = [_read_results(path).assign(source="main", run_dir=str(path))]
        for extra in extra_runs:
            extra = Path(extra).resolve()
            frames.append(_read_results(extra).assign(source=str(extra), run_dir=str(extra)))
        results = pd.concat(frames, ignore_index=True)
        results["ablation"] = _ablation_labels(results)
        summary = read_json(path / "summary.json") or {}
        info = read_json(path / "run.json") or {}
        run = cls(path=path, results=results, summary=summary, info=info, data_dir=data_dir)
        run._fill_params()
        return run

    def resolve_trial_path(self, trial_path, run_dir=None) -> Path | None:
        """The trial directory; a run directory copied elsewhere is searched by its last two parts."""
        if trial_path is None or (isinstance(trial_path, float) and math.isnan(trial_path)):
            return None
        original = Path(str(trial_path))
        if original.is_dir():
            return original
        base = Path(run_dir) if run_dir else self.path
        moved = base / original.parent.name / original.name
        return moved if moved.is_dir() else None

    def payload(self, trial_path, run_dir=None) -> dict | None:
        """``trial_result.json`` of a trial (cached), or None when it is not there."""
        key = (str(trial_path), str(run_dir))
        if key not in self._payloads:
            directory = self.resolve_trial_path(trial_path, run_dir)
            self._payloads[key] = (read_json(directory / "trial_result.json") if directory is not None
                                   else self._best_copy(trial_path, run_dir))
        return self._payloads[key]

    def _best_copy(self, trial_path, run_dir=None) -> dict | None:
        """A best trial's ``best/<cell>.trial.json`` (grid.py's copy), for a run directory whose
        trial directories are gone (moved, or kept compact: results.parquet, summary.json, best/)."""
        rows = self.results[(self.results["trial_path"].astype(str) == str(trial_path))
                            & self.results["is_best"].fillna(False).astype(bool)] if "is_best" in self.results else []
        for row in (rows.to_dict("records") if len(rows) else []):
            base = Path(row.get("run_dir") or run_dir or self.path)
            found = read_json(base / "best" / f"{row['dataset']}__{row['backbone']}__{row['method']}{BEST_TRIAL_SUFFIX}")
            if found is not None:
                return found
        return None

    def _fill_params(self) -> None:
        frame = self.results
        values: dict[str, list] = {name: [] for name in PARAMS}
        for row in frame.to_dict("records"):
            payload = None
            for name in PARAMS:
                value = _clean(row.get(f"config/{name}"))
                if value is None and row.get("method") != "base":
                    if payload is None:
                        payload = self.payload(row.get("trial_path"), row.get("run_dir")) or {}
                    value = _clean(trial_method_values(payload).get(name))
                    if value is None:
                        value = _clean((payload.get("params") or {}).get(name))
                values[name].append(value)
        for name in PARAMS:
            frame[f"param/{name}"] = pd.Series(values[name], index=frame.index, dtype=object)

    # --- views --------------------------------------------------------------------------------
    @property
    def main(self) -> pd.DataFrame:
        """The main run's main-grid search trials (no extra run's, no ablation's, no seed replicate)."""
        main = self.results[(self.results["source"] == "main") & self.results["ablation"].isna()]
        return main[main[REPLICATE_COLUMN].isna()] if REPLICATE_COLUMN in main else main

    def seed_values(self, dataset: str, backbone: str, columns: dict[str, str]) -> dict | None:
        """method → {key: test value per seed index} of the cells of (dataset, backbone) that ran
        several seeds (``--seeds N``); ``columns``: key → results column.  None when none did."""
        rows = self.results[(self.results["source"] == "main") & self.results["ablation"].isna()
                            & (self.results["dataset"] == dataset) & (self.results["backbone"] == backbone)]
        return seed_values(rows, columns)

    def ablation(self, name: str) -> pd.DataFrame:
        """The trials of the ``--ablation NAME`` sweeps (of the main run and of the extra runs)."""
        return self.results[self.results["ablation"] == name]

    def ablations(self) -> list[str]:
        return sorted(self.results["ablation"].dropna().unique())

    def sweep_datasets(self) -> list[str]:
        """Datasets of every trial, ablations and extra runs included (the hyperparameter figures')."""
        return _order(self.results["dataset"].dropna().unique(), DATASET_ORDER) if len(self.results) else []

    def sweep_backbones(self, dataset: str) -> list[str]:
        frame = self.results[self.results["dataset"] == dataset]
        return _order(frame["backbone"].dropna().unique(), BACKBONE_ORDER)

    def completed(self, main_only: bool = False) -> pd.DataFrame:
        frame = self.main if main_only else self.results
        if "status" in frame:
            frame = frame[frame["status"] == "completed"]
        metric = "test/ndcg@10"
        return frame[frame[metric].notna()] if metric in frame else frame.iloc[0:0]

    def datasets(self) -> list[str]:
        return _order(self.main["dataset"].dropna().unique(), DATASET_ORDER) if len(self.main) else []

    def backbones(self, dataset: str | None = None) -> list[str]:
        frame = self.main if dataset is None else self.main[self.main["dataset"] == dataset]
        return _order(frame["backbone"].dropna().unique(), BACKBONE_ORDER)

    def methods(self, dataset: str | None = None, backbone: str | None = None) -> list[str]:
        frame = self.main
        if dataset is not None:
            frame = frame[frame["dataset"] == dataset]
        if backbone is not None:
            frame = frame[frame["backbone"] == backbone]
        return _order(frame["method"].dropna().unique(), METHOD_ORDER)

    def best_row(self, dataset: str, backbone: str, method: str) -> pd.Series | None:
        """The cell's best trial on validation (``is_best``; else the best completed by validation)."""
        main = self.main
        cell = main[(main["dataset"] == dataset) & (main["backbone"] == backbone) & (main["method"] == method)]
        if not len(cell):
            return None
        if "is_best" in cell:
            flagged = cell[cell["is_best"].fillna(False).astype(bool)]
            if len(flagged):
                return flagged.iloc[0]
        return best_on_validation(cell[cell["status"] == "completed"] if "status" in cell else cell)

    # --- per-sequence vectors of the best trials ------------------------------------------------
    @property
    def best(self) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
        """(dataset, backbone, method) → per-sequence test vectors of the cell's best trial."""
        if self._best is None:
            self._best = {}
            for dataset in self.datasets():
                for backbone in self.backbones(dataset):
                    for method in self.methods(dataset, backbone):
                        vectors = self._load_best(dataset, backbone, method)
                        if vectors is not None:
                            self._best[(dataset, backbone, method)] = vectors
        return self._best

    def _load_best(self, dataset: str, backbone: str, method: str) -> dict | None:
        row = self.best_row(dataset, backbone, method)
        trial_dir = None if row is None else self.resolve_trial_path(row.get("trial_path"), row.get("run_dir"))
        ranks_file = None if trial_dir is None else trial_dir / "ranks.npz"
        trial_arrays = _read_npz(ranks_file) if ranks_file is not None else None
        best_arrays = _read_npz(self.path / "best" / f"{dataset}__{backbone}__{method}.npz")
        # The best row's own trial first: best/ is a copy written by grid.py and may be stale if a
        # resumed sweep changed its mind; it stands in when the trial directories are gone.
        arrays = trial_arrays if trial_arrays is not None and "test_ranks" in trial_arrays else best_arrays
        if arrays is None or "test_ranks" not in arrays:
            return None
        true_ranks = None
        if trial_arrays is not None and "test_true_ranks" in trial_arrays \
                and len(trial_arrays["test_true_ranks"]) == len(arrays["test_ranks"]):
            true_ranks = trial_arrays["test_true_ranks"]
        elif "test_true_ranks" in arrays:
            true_ranks = arrays["test_true_ranks"]
        return vectors_from_ranks(arrays["test_ranks"], arrays.get("test_positive"), true_ranks)

    # --- the dataset behind the run -------------------------------------------------------------
    def data_config(self, dataset: str) -> DataConfig:
        """The data config the run used: from a trial's ``trial_result.json``, else ``run.json``."""
        frame = self.main[self.main["dataset"] == dataset]
        for row in frame.to_dict("records"):
            payload = self.payload(row.get("trial_path"), row.get("run_dir"))
            data = ((payload or {}).get("config") or {}).get("data")
            if data:
                return _data_config_from_dict(data, self.data_dir)
        config = self.grid_config()
        data = config.data_config(dataset) if config is not None else DataConfig(name=dataset)
        return data if self.data_dir is None else dataclasses.replace(data, data_dir=self.data_dir)

    def grid_config(self) -> GridConfig | None:
        """The config of the run's latest ``sweeps/grid.py`` invocation (``run.json``), if it parses."""
        try:
            return GridConfig.from_argv(self.info.get("argv") or [])
        except (CSRecError, SystemExit):  # a command line of another csrec version
            return None

    def load_data(self, dataset: str) -> tuple[SequenceData | None, str]:
        """(data, "") or (None, why it could not be loaded or does not match the sweep's vectors)."""
        if dataset not in self._data:
            try:
                data = load_dataset(self.data_config(dataset))
            except Exception as exc:  # noqa: BLE001 - a missing data file only skips figures
                self._data[dataset] = (None, f"the {dataset} data could not be loaded ({type(exc).__name__}: {exc}); "
                                             f"pass --data-dir")
            else:
                self._data[dataset] = (data, self._check_match(dataset, data))
        return self._data[dataset]

    def _check_match(self, dataset: str, data: SequenceData) -> str:
        split = data.eval_split("test")
        for (d, _, _), vectors in self.best.items():
            if d != dataset:
                continue
            if len(vectors["test_ranks"]) != len(split.targets):
                return (f"the {dataset} data loaded with the run's config has {len(split.targets)} test sequences "
                        f"but the sweep's vectors have {len(vectors['test_ranks'])}: not the same data "
                        f"(pass the --data-dir the sweep used)")
            if not np.array_equal(vectors["test_positive"], split.positive) and not vectors["test_positive"].all():
                return (f"the {dataset} data loaded with the run's config disagrees with the sweep's test ratings: "
                        f"not the same data (pass the --data-dir the sweep used)")
        return ""

    # --- teachers ---------------------------------------------------------------------------------
    def teacher_infos(self, dataset: str, backbone: str, method: str) -> list[dict]:
        """The teachers of the cell's best trial (each with its own ``test`` metrics and ``role``)."""
        row = self.best_row(dataset, backbone, method)
        if row is None:
            return []
        payload = self.payload(row.get("trial_path"), row.get("run_dir")) or {}
        teachers = [t for t in payload.get("teachers") or [] if isinstance(t, dict) and t.get("test")]
        if teachers:
            return teachers
        return self._pool_teachers(dataset, backbone, method, row)

    def _pool_teachers(self, dataset: str, backbone: str, method: str, row) -> list[dict]:
        """Fallback: the teacher pool's checkpoints (``info`` holds the metrics), matched by sweep name."""
        pool = self.path / "teachers"
        if not pool.is_dir():
            return []
        wanted = f"{dataset}-{backbone}-{method}-"
        out = []
        for sidecar in sorted(pool.glob("teacher-*.json")):
            record = read_json(sidecar) or {}
            name = str(record.get("sweep", ""))
            if not name.startswith(wanted) or name.startswith(f"{wanted}ablation-"):
                continue
            checkpoint = sidecar.with_suffix(".pt")
            if not checkpoint.is_file():
                continue
            try:
                import torch

                info = torch.load(checkpoint, map_location="cpu", weights_only=False).get("info") or {}
            except Exception:  # noqa: BLE001 - an unreadable checkpoint is just not listed
                continue
            if info.get("test"):
                spec = record.get("spec") or info.get("spec") or {}
                role = "main" if spec.get("robust") else "teacher"
                out.append(dict(info, key=record.get("key"), describe=record.get("describe"), role=role))
        return out


def best_on_validation(frame: pd.DataFrame) -> pd.Series | None:
    """The row with the best validation NDCG@10 (``valid/best_ndcg@10``, else ``valid/ndcg@10``)."""
    if not len(frame):
        return None
    for metric in (SELECT, "valid/ndcg@10"):
        if metric in frame and frame[metric].notna().any():
            return best_row(frame.assign(**{metric: frame[metric].astype(float)}), metric)
    return frame.iloc[0]


# --- helpers --------------------------------------------------------------------------------------
def _read_results(path: Path) -> pd.DataFrame:
    file = path / "results.parquet"
    if not file.is_file():
        raise ReportError(f"{path}: no results.parquet (not a finished sweeps/grid.py run directory)")
    try:
        frame = pd.read_parquet(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise ReportError(f"{file}: unreadable ({type(exc).__name__}: {exc})") from None
    for column in ("dataset", "backbone", "method"):
        if column not in frame:
            raise ReportError(f"{file}: column {column!r} missing")
    return frame


def _ablation_labels(frame: pd.DataFrame) -> pd.Series:
    """The ``ablation`` column as names or None (absent in runs written before ablations existed)."""
    if "ablation" not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame["ablation"].map(lambda v: None if _clean(v) is None else str(v)).astype(object)


def _read_npz(path: Path | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        with np.load(path) as payload:
            return {k: payload[k] for k in payload.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # a damaged file counts as absent
        return None


def _clean(value):
    """None for missing values (NaN, None, the string 'None'); numbers and booleans as Python values."""
    if value is None:
        return None
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "null", "nan"):
            return None
        if text in ("true", "false"):
            return text == "true"
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _data_config_from_dict(data: dict, data_dir: str | None) -> DataConfig:
    names = {f.name for f in dataclasses.fields(DataConfig)}
    kwargs = {k: v for k, v in data.items() if k in names}
    synthetic = kwargs.pop("synthetic", None)
    if isinstance(synthetic, dict):
        syn_names = {f.name for f in dataclasses.fields(SyntheticConfig)}
        kwargs["synthetic"] = SyntheticConfig(**{k: v for k, v in synthetic.items() if k in syn_names})
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    cache = kwargs.get("cache_dir")
    if cache and not Path(cache).is_dir():
        kwargs["cache_dir"] = None  # a temporary cache of the sweep's machine: use this machine's
    return DataConfig(**kwargs)
