"""Robustness curve (beyond the paper): accuracy against the *true* preference as noise grows.

The synthetic generator records the true next item of every position before it injects noisy
interactions (:mod:`csrec.data.synthetic`), so a model's test Recall@10 / NDCG@10 can be measured
against the true item (``true:`` metrics, ``test_true_ranks``) instead of the observed, possibly
noisy one.  :func:`run_robustness` fits every method at every injected noise rate with
:func:`csrec.fit` (a plain loop in this process, no Ray; teachers are shared through an on-disk
pool, so CSRec-T reuses CSRec-D's first teacher as its side teacher), saves each
:class:`~csrec.api.FitResult` (JSON + ranks ``.npz``) and skips the fits already saved with the
same config, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from csrec.atomic import atomic_path, write_atomic
from csrec.data.synthetic import SyntheticConfig
from csrec.methods.config import SYMBOLS, method_hyperparameters
from csrec.metrics import ndcg_at_k, recall_at_k
from csrec.report.runs import METHOD_ORDER, backbone_label, method_label

DEFAULT_NOISE = (0.0, 0.1, 0.2, 0.4)
CSV = "robustness.csv"
PNG = "robustness.png"


def _noise_dir(out_dir: Path, rate: float) -> Path:
    return out_dir / "runs" / f"noise-{rate:g}"


def run_robustness(
    out_dir: str | Path,
    noise_rates=DEFAULT_NOISE,
    epochs: int = 20,
    *,
    backbone: str = "gru4rec",
    methods=METHOD_ORDER,
    synthetic: SyntheticConfig | dict | None = None,
    log=print,
    **fit_kwargs,
) -> pd.DataFrame:
    """Fit each method at each noise rate on synthetic data; write robustness.csv/.md/.png.

    ``synthetic``: the generator's settings apart from ``noise_rate`` (default: its defaults).
    ``fit_kwargs``: any other :func:`csrec.make_config` keyword (``batch_size=``, ``beta=``, ...).
    Returns one row per (noise rate, method) with observed and true-preference metrics.
    """
    from csrec.api import fit, make_config
    from csrec.data.dataset import load_dataset
    from csrec.methods.teachers import TeacherPool

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
    frame = pd.DataFrame(rows)
    write_robustness(out_dir, frame)
    return frame


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


def write_robustness(out_dir: str | Path, frame: pd.DataFrame) -> dict[str, Path]:
    """robustness.csv, robustness.md and robustness.png in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / CSV, "md": out_dir / "robustness.md", "png": out_dir / PNG}
    write_atomic(paths["csv"], frame.to_csv(index=False))
    plot_robustness(frame, paths["png"])
    write_atomic(paths["md"], robustness_markdown(frame, PNG))
    return paths


def robustness_markdown(frame: pd.DataFrame, png: str) -> str:
    rates = sorted(frame["noise_rate"].unique())
    lines = ["| Method | " + " | ".join(f"noise {100 * r:g}%: RC* / NG* (%)" for r in rates) + " |",
             "|---|" + "---:|" * len(rates)]
    for method in [m for m in METHOD_ORDER if m in set(frame["method"])]:
        cells = []
        for r in rates:
            row = frame[(frame["method"] == method) & (frame["noise_rate"] == r)]
            if len(row):
                cells.append(f"{100 * row['true:recall@10'].iloc[0]:.2f} / {100 * row['true:ndcg@10'].iloc[0]:.2f}")
            else:
                cells.append("–")
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    backbone = ", ".join(backbone_label(b) for b in frame["backbone"].unique())
    epochs = ", ".join(str(e) for e in frame["epochs"].unique())
    if "settings" in frame:  # one fixed configuration per method, untuned
        settings = frame.drop_duplicates("method").set_index("method")["settings"].fillna("")
        lines += ["", "Each method ran once per noise rate at fixed, untuned settings: " + "; ".join(
            f"{method_label(m)} ({settings[m]})" for m in METHOD_ORDER if m in settings.index) + "."]
    return (
        f"![robustness curve]({png})\n\n"
        f"Test Recall@10 and NDCG@10 against the **true** next item of the synthetic generator (RC*, NG*), for the "
        f"{backbone} student trained {epochs} epochs by each method, as the rate of injected noisy interactions grows. "
        f"Error bars: ± one standard error over the test sequences.\n\n" + "\n".join(lines) + "\n"
    )


def plot_robustness(frame: pd.DataFrame, path: str | Path) -> Path:
    from csrec.report.figures import DPI, MARKERS, METHOD_COLORS, _style
    import matplotlib.pyplot as plt

    _style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False, layout="constrained")
    methods = [m for m in METHOD_ORDER if m in set(frame["method"])] + \
              [m for m in frame["method"].unique() if m not in METHOD_ORDER]
    for c, (metric, label) in enumerate((("true:recall@10", "Recall@10"), ("true:ndcg@10", "NDCG@10"))):
        ax = axes[0][c]
        rates = 100 * frame["noise_rate"].astype(float)
        step = 0.012 * max(float(rates.max() - rates.min()), 10.0)  # dodge: error bars side by side
        for i, method in enumerate(methods):
            sub = frame[frame["method"] == method].sort_values("noise_rate")
            dodge = (i - (len(methods) - 1) / 2) * step
            se = sub.get(f"{metric}_se")
            yerr = None if se is None or se.isna().all() else 100 * se.astype(float).fillna(0).to_numpy()
            ax.errorbar(100 * sub["noise_rate"].astype(float) + dodge, 100 * sub[metric].astype(float), yerr=yerr,
                        marker=MARKERS[i % len(MARKERS)], color=METHOD_COLORS.get(method), capsize=3, linewidth=1.8,
                        label=method_label(method))
        ax.set_xlabel("injected noise rate (% of interactions replaced by popularity-driven noise)")
        ax.set_ylabel(f"test {label} vs true next item (%)")
        ax.set_title(f"{label} against the true preference")
        ticks = sorted(rates.unique())
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}%" for t in ticks])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(methods), frameon=False)
    backbone = ", ".join(backbone_label(b) for b in frame["backbone"].unique())
    fig.suptitle(f"Robustness on synthetic data ({backbone} student): accuracy against the true preference "
                 f"(± 1 standard error)", fontsize=12)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
