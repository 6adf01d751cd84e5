"""Robustness runner (beyond the paper): every method fitted at every injected noise rate.

The synthetic generator records the true next item of every position before it injects noisy
interactions (:mod:`csrec.data.synthetic`), so a model's test Recall@10 / NDCG@10 can be measured
against the true item (``true:`` metrics, ``test_true_ranks``) instead of the observed, possibly
noisy one.  :func:`run_robustness` fits every method at every noise rate with :func:`csrec.fit` (a
plain loop in this process, no Ray; teachers are shared through an on-disk pool, so CSRec-T reuses
CSRec-D's first teacher as its side teacher), saves each :class:`~csrec.experiment.FitResult`
(JSON + ranks ``.npz``) and skips the fits already saved with the same config, so an interrupted
run continues where it stopped.  :mod:`csrec.report.robustness` draws the curve.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from csrec.data.dataset import load_dataset
from csrec.data.synthetic import SyntheticConfig
from csrec.experiment.fit import fit, make_config
from csrec.methods.config import METHODS, SYMBOLS, method_hyperparameters
from csrec.methods.teachers import TeacherPool
from csrec.metrics import ndcg_at_k, recall_at_k

DEFAULT_NOISE = (0.0, 0.1, 0.2, 0.4)
DEFAULT_EPOCHS = 20


def _noise_dir(out_dir: Path, rate: float) -> Path:
    return out_dir / "runs" / f"noise-{rate:g}"


def run_robustness(
    out_dir: str | Path,
    noise_rates=DEFAULT_NOISE,
    epochs: int = DEFAULT_EPOCHS,
    *,
    backbone: str = "gru4rec",
    methods=METHODS,
    synthetic: SyntheticConfig | dict | None = None,
    log=print,
    **fit_kwargs,
) -> pd.DataFrame:
    """Fit each method at each noise rate on synthetic data (results under ``out_dir/runs``).

    ``synthetic``: the generator's settings apart from ``noise_rate`` (default: its defaults).
    ``fit_kwargs``: any other :func:`csrec.make_config` keyword (``batch_size=``, ``beta=``, ...).
    Returns one row per (noise rate, method) with observed and true-preference metrics.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(synthetic, dict):
        synthetic = SyntheticConfig(**synthetic)
    synthetic = synthetic or SyntheticConfig()
    fit_kwargs.setdefault("progress", False)
    rows = []
    for rate in noise_rates:
        rate = float(rate)
        directory = _noise_dir(out_dir, rate)
        data = None
        pool = TeacherPool(out_dir / "teachers")
        for method in methods:
            config = make_config("synthetic", backbone, method, epochs=epochs,
                                 synthetic=dataclasses.replace(synthetic, noise_rate=rate), **fit_kwargs)
            target = directory / f"{backbone}__{method}.json"
            wanted = json.loads(json.dumps(config.to_dict(), default=str))
            saved = _read(target)
            if saved is not None and saved.get("config") == wanted and target.with_suffix(".npz").is_file():
                log(f"[robustness] noise {rate:g} {method}: already done ({target})")
            else:
                if data is None:
                    data = load_dataset(config.data)
                started = time.perf_counter()
                result = fit(config=config, data=data, pool=pool)
                result.save(target)
                log(f"[robustness] noise {rate:g} {method}: true Recall@10 "
                    f"{result.metrics.get('true:recall@10', float('nan')):.4f} NDCG@10 "
                    f"{result.metrics.get('true:ndcg@10', float('nan')):.4f} "
                    f"({time.perf_counter() - started:.1f}s)")
            rows.append(_row(target, rate, method, backbone, epochs))
    return pd.DataFrame(rows)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _settings(config: dict, method: str) -> str:
    """The fit's fixed hyperparameters and seed, e.g. "β 0.5, T 3, m 2, seed 2022"."""
    values = config.get("method") or {}
    parts = [f"{SYMBOLS[n]} {values[n]:g}" for n in method_hyperparameters(method) if n in values]
    seed = (config.get("train") or {}).get("seed")
    return ", ".join(parts + ([f"seed {seed}"] if seed is not None else []))


def _row(target: Path, rate: float, method: str, backbone: str, epochs: int) -> dict:
    saved = _read(target) or {}
    test = saved.get("test") or {}
    row = {"noise_rate": rate, "method": method, "backbone": backbone, "epochs": epochs,
           "recall@10": test.get("recall@10"), "ndcg@10": test.get("ndcg@10"),
           "true:recall@10": test.get("true:recall@10"), "true:ndcg@10": test.get("true:ndcg@10"),
           "sequences": None, "true:recall@10_se": None, "true:ndcg@10_se": None,
           "seconds": (saved.get("timings") or {}).get("total_s"),
           "settings": _settings(saved.get("config") or {}, method)}
    npz = target.with_suffix(".npz")
    if npz.is_file():
        with np.load(npz) as arrays:
            if "test_true_ranks" in arrays.files:
                ranks = arrays["test_true_ranks"]
                row["sequences"] = int(len(ranks))
                vectors = {"true:recall@10": recall_at_k(ranks, 10), "true:ndcg@10": ndcg_at_k(ranks, 10)}
                for name, vector in vectors.items():
                    row[f"{name}_se"] = float(vector.std(ddof=1) / np.sqrt(len(vector))) if len(vector) > 1 else 0.0
    return row
