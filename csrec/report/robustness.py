"""The robustness curve (beyond the paper): accuracy against the *true* preference as noise grows.

:func:`csrec.experiment.run_robustness` runs the fits; this module writes what they measured as
robustness.csv, a Markdown table and a figure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from csrec.atomic import atomic_path, write_atomic
from csrec.report.runs import METHOD_ORDER, backbone_label, method_label

CSV = "robustness.csv"
PNG = "robustness.png"


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
