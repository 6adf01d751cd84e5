"""The paper's figures from a sweep run directory (matplotlib, Agg backend, PNG).

Every builder returns :class:`FigureOut` records: a drawn figure (``file``) with one sentence
saying what was measured, or a skipped one (``skipped``) saying why and which sweep would
produce it.  A builder never raises for missing data: it skips.

Per-sequence figures (Fig. 1/4, Fig. 5) join the best trials' per-sequence test ranks with the
dataset (loaded with the run's data config): the i-th rank belongs to the i-th test sequence of
``SequenceData.eval_split("test")``.  Hyperparameter figures (Fig. 6, 7/8, 9, 10) plot, for each
value (or bin) of the parameter, the test metric of the trial that is best *on validation* among
the completed trials with that value, so that no point is chosen by looking at test data.

Which trials a hyperparameter figure reads, per series (backbone × method): the trials of its
controlled sweep (``sweeps/grid.py --ablation NAME``: ``teachers`` → Fig. 6, ``ratio`` → Fig. 9,
``temperature`` → Fig. 7/8, ``expectation`` → Fig. 10; ``ablation == NAME`` in results.parquet)
when the run has them, else every trial that belongs to no ablation (the main grid and the
``--with`` runs).  A figure without data is skipped with the exact ``--ablation`` command that
would produce it on this run directory.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from csrec.atomic import atomic_path  # noqa: E402
from csrec.methods.config import SYMBOLS  # noqa: E402
from csrec.report.runs import (  # noqa: E402
    Run, backbone_label, best_on_validation, dataset_label, display_path, method_label,
)
from csrec.report.stats import (  # noqa: E402
    ALPHA, POPULAR_FRACTION, group_means, group_tests, length_buckets, popular_items, popular_test_users,
)
from csrec.search.space import ABLATIONS, Ablation  # noqa: E402

METHOD_COLORS = {"base": "#7f7f7f", "softrec": "#ff7f0e", "csrec-m": "#1f77b4", "csrec-d": "#2ca02c",
                 "csrec-t": "#d62728"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
METRICS = (("recall@10", "Recall@10 (%)"), ("ndcg@10", "NDCG@10 (%)"))
DPI = 150

def _describe(ablation: Ablation) -> str:
    """One line on an ablation's sweep, e.g. "CSRec-M and CSRec-D at m ∈ {1, 2, 3, 4}, others at β 0.5,
    T 3, p 0.8: 8 trials per backbone" (read from :data:`csrec.search.ABLATIONS`)."""
    groups: dict[str, list[str]] = {}
    for method in ablation.methods:
        groups.setdefault(_grid_text(ablation.grid(method)), []).append(method_label(method))
    trials = sum(ablation.trials(m) for m in ablation.methods)
    sweeps = "; ".join(f"{' and '.join(methods)} {grid}" for grid, methods in groups.items())
    return f"{sweeps}, others at {_held(ablation.name)}: {trials} trials per backbone"


def _grid_text(grid: dict) -> str:
    """"at β ∈ {0.25, 0.5} × T ∈ {1, 3}", or "with and without the expectation term" for a switch."""
    if len(grid) == 1 and sorted(map(repr, next(iter(grid.values())))) == ["False", "True"]:
        return f"with and without the {_symbol(next(iter(grid)))}"
    return "at " + " × ".join(f"{_symbol(k)} ∈ {{{', '.join(_value(v) for v in vs)}}}" for k, vs in grid.items())


def _held(name: str) -> str:
    """The parameters an ablation holds at their defaults, e.g. "β 0.5, T 3, p 0.8"."""
    ablation = ABLATIONS[name]
    fixed: dict = {}
    for method in ablation.methods:
        fixed.update(ablation.fixed(method))
    return ", ".join(f"{_symbol(k)} {_value(fixed[k])}" for k in SYMBOLS if k in fixed)


def _symbol(name: str) -> str:
    return SYMBOLS.get(name, name.replace("_", " "))


def _value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


#: The controlled sweep of each hyperparameter figure (``sweeps/grid.py --ablation NAME``).
ABLATION_SWEEPS = {name: _describe(ablation) for name, ablation in ABLATIONS.items()}


def ablation_command(run: Run, ablation: str, dataset: str, backbones) -> str:
    """The exact ``sweeps/grid.py --ablation`` command that adds ``ablation`` to this run directory."""
    config = run.grid_config()
    words = ["python", "sweeps/grid.py", "--datasets", dataset, "--backbones", ",".join(backbones) or "all",
             "--ablation", ablation, *(config.carried_argv(list(backbones)) if config else []), "--storage-path",
             display_path(run.path), "--resume"]
    return shlex.join(words)


def _needs(run: Run, ablation: str, dataset: str, backbones) -> str:
    return (f"it needs the `{ablation}` ablation ({ABLATION_SWEEPS[ablation]}): "
            f"`{ablation_command(run, ablation, dataset, backbones)}`, then rerun the report")


@dataclass
class FigureOut:
    key: str
    title: str
    file: str | None = None  # relative to the report directory
    sentence: str = ""
    skipped: str | None = None


def _style() -> None:
    plt.rcParams.update({
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "xtick.labelsize": 9,
        "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "figure.dpi": DPI,
    })


def _save(fig, out_dir: Path, name: str) -> str:
    with atomic_path(out_dir / name) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return name


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))


# --- per-sequence figures ------------------------------------------------------------------------------
def _group_figure(run: Run, dataset: str, groups: np.ndarray, labels: list[str], *, kind: str, out_dir: Path,
                  title: str, xlabel: str, bars: bool, records: list) -> str | None:
    """Rows = backbones, columns = Recall@10 / NDCG@10; bars (or lines) per method over the groups.

    Each method's value in a group is marked ``*`` (``↓``) when it is significantly above (below)
    Base's in that group: :func:`group_tests` over the group's test sequences.
    """
    backbones = [b for b in run.backbones(dataset) if any(k[:2] == (dataset, b) for k in run.best)]
    if not backbones:
        return None
    n_groups = len(labels)
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    fig, axes = plt.subplots(len(backbones), 2, figsize=(11, 3.3 * len(backbones) + 1.0), squeeze=False,
                             layout="constrained")
    handles = {}
    for r, backbone in enumerate(backbones):
        methods = [m for m in run.methods(dataset, backbone) if (dataset, backbone, m) in run.best]
        means, marks = {}, {}
        base = run.best.get((dataset, backbone, "base"))
        for method in methods:
            vectors = run.best[(dataset, backbone, method)]
            tests = {}
            for metric, _ in METRICS:
                means[(method, metric)] = group_means(vectors[metric], groups, n_groups)[0]
                if method != "base" and base is not None and len(base[metric]) == len(vectors[metric]):
                    tests[metric] = group_tests(vectors[metric], base[metric], groups, n_groups)
                    marks[(method, metric)] = tests[metric][1]
            for g in range(n_groups):
                record = {"dataset": dataset, "backbone": backbone, "method": method,
                          "group": labels[g].split("\n")[0], "sequences": int(counts[g]),
                          **{metric: float(means[(method, metric)][g]) for metric, _ in METRICS}}
                for metric, (p_values, group_marks) in tests.items():
                    record[f"p_vs_base_{metric}"] = float(p_values[g])
                    record[f"vs_base_{metric}"] = group_marks[g]
                records.append(record)
        width = 0.8 / max(len(methods), 1)
        x = np.arange(n_groups)
        for c, (metric, ylabel) in enumerate(METRICS):
            ax = axes[r][c]
            for i, method in enumerate(methods):
                values = 100 * means[(method, metric)]
                at = x - 0.4 + width * (i + 0.5) if bars else x
                if bars:
                    h = ax.bar(at, values, width, color=METHOD_COLORS.get(method),
                               label=method_label(method), edgecolor="white", linewidth=0.5)
                else:
                    (h,) = ax.plot(x, values, marker=MARKERS[i % len(MARKERS)], color=METHOD_COLORS.get(method),
                                   label=method_label(method), linewidth=1.8)
                handles[method] = h
                for where, value, mark in zip(at, values, marks.get((method, metric), ())):
                    if mark and np.isfinite(value):
                        # Lines: each method's mark a few points to the side, so marks at one x do not overlap.
                        offset = (0, 1) if bars else (7 * (i - (len(methods) - 1) / 2), 5)
                        ax.annotate(mark, (where, value), xytext=offset, textcoords="offset points",
                                    ha="center", va="bottom", fontsize=9, color=METHOD_COLORS.get(method, "black"))
            ax.set_xticks(x)
            ax.set_xticklabels([f"{lab}\n(n={int(k)})" for lab, k in zip(labels, counts)])
            ax.set_ylabel(f"test {ylabel}")
            ax.set_xlabel(xlabel)
            ax.set_title(f"{backbone_label(backbone)}: {ylabel.split(' ')[0]}")
            ax.set_ylim(0, ax.get_ylim()[1] * 1.06)  # room for the marks above the highest bar
    ordered = [m for m in ("base", "softrec", "csrec-m", "csrec-d", "csrec-t") if m in handles]
    ordered += [m for m in handles if m not in ordered]
    fig.suptitle(title, fontsize=12)
    fig.legend([handles[m] for m in ordered], [method_label(m) for m in ordered], loc="outside lower center",
               ncol=len(ordered), frameon=False)
    return _save(fig, out_dir, f"{kind}_{_slug(dataset)}.png")


def popularity_figures(run: Run, out_dir: Path) -> tuple[list[FigureOut], pd.DataFrame]:
    """Fig. 1/4: metrics of popular-type vs niche-type users (test answer in the top 20% items or not)."""
    outs, records = [], []
    for dataset in run.datasets():
        title = f"Fig. 1/4 – {dataset_label(dataset)}: popular-type vs niche-type users"
        if not any(k[0] == dataset for k in run.best):
            outs.append(FigureOut("fig1_4", title, skipped=f"no per-sequence test vectors of a best trial for "
                                                            f"{dataset} (best/*.npz or the trials' ranks.npz)"))
            continue
        data, why = run.load_data(dataset)
        if data is None or why:
            outs.append(FigureOut("fig1_4", title, skipped=why))
            continue
        popular = popular_test_users(data, POPULAR_FRACTION)
        groups = np.where(popular, 0, 1)
        n_pop = int(popular_items(data.item_counts()).sum())
        labels = [f"popular-type\n(answer in top {n_pop} items)", f"niche-type\n(other {data.n_items - n_pop} items)"]
        file = _group_figure(run, dataset, groups, labels, kind="fig1_4_popularity", out_dir=out_dir,
                             title=f"{dataset_label(dataset)}: users grouped by their test answer's popularity "
                                   f"(top {int(100 * POPULAR_FRACTION)}% items by training frequency)",
                             xlabel="user group", bars=True, records=records)
        outs.append(FigureOut(
            "fig1_4", title, file,
            f"Test Recall@10 and NDCG@10 (%) of each method's best trial on {dataset_label(dataset)}, separately for "
            f"users whose test item is among the {int(100 * POPULAR_FRACTION)}% most frequent training items "
            f"({int(popular.sum())} users) and for the others ({int((~popular).sum())} users). {GROUP_MARKS_TEXT} "
            + _group_marks_summary([r for r in records if r["dataset"] == dataset])))
    return outs, pd.DataFrame(records)


GROUP_MARKS_TEXT = (f"Above a bar or point, * marks a method significantly above Base within that group and ↓ "
                    f"significantly below (two-sided paired t-test over the group's test sequences, p < {ALPHA:g}).")


def _group_marks_summary(records: list[dict]) -> str:
    """One sentence per backbone: which methods are significantly above or below Base in each group."""
    sentences = []
    for backbone in dict.fromkeys(r["backbone"] for r in records):
        rows = [r for r in records if r["backbone"] == backbone and "vs_base_recall@10" in r]
        if not rows:
            continue
        parts = []
        for group in dict.fromkeys(r["group"] for r in rows):
            listed = []
            for r in rows:
                if r["group"] != group:
                    continue
                pair = "/".join(r[f"vs_base_{metric}"] or "–" for metric, _ in METRICS)
                if pair != "–/–":
                    listed.append(f"{method_label(r['method'])} {pair}")
            parts.append(f"{group}: {', '.join(listed) if listed else 'none'}")
        sentences.append(f"{backbone_label(backbone)} against Base (Recall@10/NDCG@10), {'; '.join(parts)}.")
    return " ".join(sentences)


def length_figures(run: Run, out_dir: Path, n_buckets: int = 4) -> tuple[list[FigureOut], pd.DataFrame]:
    """Fig. 5: metrics by the length of the user's interaction history (the paper's §5.2.3).

    The test input itself is a fixed-length window (on Last.FM about 80% of them are full), so
    the buckets use the source user's whole history, which the windows cut up.
    """
    outs, records = [], []
    for dataset in run.datasets():
        title = f"Fig. 5 – {dataset_label(dataset)}: metrics by user history length"
        if not any(k[0] == dataset for k in run.best):
            outs.append(FigureOut("fig5", title, skipped=f"no per-sequence test vectors of a best trial for {dataset}"))
            continue
        data, why = run.load_data(dataset)
        if data is None or why:
            outs.append(FigureOut("fig5", title, skipped=why))
            continue
        groups, labels = length_buckets(data.source_history_lengths(), n_buckets)
        file = _group_figure(run, dataset, groups, labels, kind="fig5_length", out_dir=out_dir,
                             title=f"{dataset_label(dataset)}: test metrics by the user's history length",
                             xlabel="user history length (interactions)",
                             bars=False, records=records)
        outs.append(FigureOut(
            "fig5", title, file,
            f"Test Recall@10 and NDCG@10 (%) of each method's best trial on {dataset_label(dataset)}, with the test "
            f"sequences bucketed by the length of their source user's whole interaction history "
            f"({', '.join(labels)}; the sub-session windows themselves are at most {data.max_len} items). "
            f"{GROUP_MARKS_TEXT}"))
    return outs, pd.DataFrame(records)


def item_popularity_figure(run: Run, out_dir: Path) -> FigureOut:
    """Fig. 3: training interactions per item, items sorted by popularity."""
    title = "Fig. 3 – item popularity distribution"
    loaded, why = [], []
    for dataset in run.datasets():
        data, reason = run.load_data(dataset)
        if data is None:
            why.append(reason)
        else:
            loaded.append((dataset, data))
    if not loaded:
        return FigureOut("fig3", title, skipped="; ".join(why) or "no dataset in the run")
    n = len(loaded)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    shares = []
    for ax, (dataset, data) in zip(axes.ravel(), loaded):
        counts = np.sort(data.item_counts()[1:])[::-1]
        n_pop = int(popular_items(data.item_counts()).sum())
        share = counts[:n_pop].sum() / max(counts.sum(), 1)
        shares.append(f"{100 * share:.0f}% ({dataset_label(dataset)})")
        x = np.arange(1, len(counts) + 1)
        ax.fill_between(x, counts, step="mid", color="#1f77b4", alpha=0.35, linewidth=0)
        ax.plot(x, counts, drawstyle="steps-mid", color="#1f77b4", linewidth=1.2, label="items")
        ax.axvspan(0.5, n_pop + 0.5, color="#ff7f0e", alpha=0.15,
                   label=f"top {int(100 * POPULAR_FRACTION)}% items: {100 * share:.0f}% of interactions")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlim(0.5, len(counts) + 0.5)
        ax.set_xlabel("item rank by training interactions (1 = most popular)")
        ax.set_ylabel("training interactions per item\n(log scale; linear below 1)")
        ax.set_title(f"{dataset_label(dataset)} ({data.n_items:,} items)")
        ax.legend(loc="upper right")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    file = _save(fig, out_dir, "fig3_item_popularity.png")
    return FigureOut("fig3", title, file,
                     "Number of training interactions of every item, items sorted from most to least popular; the "
                     f"shaded top {int(100 * POPULAR_FRACTION)}% of items hold {', '.join(shares)} of the training "
                     "interactions.")


# --- hyperparameter figures ------------------------------------------------------------------------------
def _trials(run: Run, dataset: str, methods, ablated_ok: bool = False) -> pd.DataFrame:
    """Completed trials of ``methods`` on ``dataset``; without the expectation-term ablation unless asked."""
    frame = run.completed()
    frame = frame[(frame["dataset"] == dataset) & frame["method"].isin(methods)]
    if not ablated_ok:
        frame = frame[_default_expectation(frame)]
    return frame


def _controlled(frame: pd.DataFrame, ablation: str, keys) -> tuple[pd.DataFrame, dict]:
    """Per group of ``keys``: the trials of ``ablation`` when the group has any, else those of no ablation.

    Returns the chosen rows and {group key: "ablation" or "grid"}.
    """
    tags = frame["ablation"] if "ablation" in frame else pd.Series(None, index=frame.index, dtype=object)
    parts, sources = [], {}
    keys = list(keys)
    for key, group in frame.groupby(keys if len(keys) > 1 else keys[0], sort=False):
        own = group[tags.loc[group.index] == ablation]
        if len(own):
            parts.append(own)
            sources[key] = "ablation"
        else:
            rest = group[tags.loc[group.index].isna()]
            if len(rest):
                parts.append(rest)
                sources[key] = "grid"
    return (pd.concat(parts) if parts else frame.iloc[0:0]), sources


def _source_text(sources: dict, ablation: str, fixed: str) -> str:
    """How the figure's sentence names where its points come from."""
    kinds = set(sources.values())
    if kinds == {"ablation"}:
        return f" The points come from the controlled `--ablation {ablation}` sweep ({fixed})."
    if "ablation" in kinds:
        return (f" Series marked “ablation” come from the controlled `--ablation {ablation}` sweep ({fixed}); the "
                f"others from the run's other trials, whose remaining parameters vary.")
    return (f" The points come from the run's searched trials, whose remaining parameters vary; the controlled "
            f"`--ablation {ablation}` sweep holds them fixed.")


def _default_expectation(frame: pd.DataFrame) -> pd.Series:
    """Trials with CSRec-T's expectation term on (or not applicable): the ablated ones join Fig. 10 only."""
    return frame["param/expectation_term"].map(lambda v: v is None or bool(v)).astype(bool)


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _sweep_lines(run: Run, dataset: str, methods, param: str, ablation: str | None = None
                 ) -> list[tuple[str, str, pd.DataFrame, int, str]]:
    """(backbone, method, best-on-validation row per param value, trials, source) per series with ≥2 values.

    ``ablation``: the figure's controlled sweep; a series that has trials of it reads only those
    (source "ablation"), the others read the trials of no ablation (source "grid").
    """
    frame = _trials(run, dataset, methods)
    sources: dict = {}
    if ablation is not None:
        frame, sources = _controlled(frame, ablation, ("backbone", "method"))
    out = []
    for (backbone, method), group in frame.groupby(["backbone", "method"], sort=False):
        values = _numeric(group[f"param/{param}"])
        group = group.assign(_value=values)[values.notna()]
        if group["_value"].nunique() < 2:
            continue
        best = [best_on_validation(g) for _, g in group.groupby("_value", sort=True)]
        out.append((backbone, method, pd.DataFrame(best), len(group), sources.get((backbone, method), "grid")))
    order = {m: i for i, m in enumerate(methods)}
    return sorted(out, key=lambda t: (t[0], order.get(t[1], 99)))


def _line_figure(run: Run, dataset: str, lines, param_label: str, name: str, title: str, integer_x: bool) -> object:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + 0.25 * math.ceil(len(lines) / 3)), squeeze=False,
                             layout="constrained")
    backbones = list(dict.fromkeys(b for b, *_ in lines))
    ticks = sorted({float(v) for _, _, best, _, _ in lines for v in best["_value"]})
    for c, (metric, ylabel) in enumerate(METRICS):
        ax = axes[0][c]
        for backbone, method, best, n, source in lines:
            style = LINESTYLES[backbones.index(backbone) % len(LINESTYLES)]
            tail = f"{n} trials, ablation" if source == "ablation" else f"{n} trials"
            ax.plot(best["_value"], 100 * best[f"test/{metric}"].astype(float), linestyle=style,
                    marker=MARKERS[backbones.index(backbone) % len(MARKERS)], color=METHOD_COLORS.get(method),
                    linewidth=1.8, label=f"{backbone_label(backbone)} {method_label(method)} ({tail})")
        ax.set_xlabel(param_label)
        ax.set_ylabel(f"test {ylabel}")
        ax.set_title(ylabel.split(" ")[0])
        if len(ticks) <= 12:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
        elif integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(lines)), frameon=False)
    fig.suptitle(title, fontsize=12)
    return fig


def _one_parameter_figures(run: Run, out_dir: Path, *, key: str, ablation: str, methods: tuple[str, str],
                           param: str, name: str, x_label: str, integer_x: bool, held: str, about: str) -> list[FigureOut]:
    """Fig. 6 / Fig. 9: test metrics against one teacher parameter, a line per (backbone, method)."""
    first, second = (method_label(m) for m in methods)
    outs = []
    for dataset in run.sweep_datasets():
        title = f"{key.replace('fig', 'Fig. ')} – {dataset_label(dataset)}: {name}"
        lines = _sweep_lines(run, dataset, methods, param, ablation)
        if not lines:
            outs.append(FigureOut(key, title, skipped=(
                f"the run has no {first}/{second} trials on {dataset} with two or more values of {name.split()[-1]}; "
                + _needs(run, ablation, dataset, run.sweep_backbones(dataset)))))
            continue
        fig = _line_figure(run, dataset, lines, x_label, key, title, integer_x=integer_x)
        file = _save(fig, out_dir, f"{key}_{ablation}_{_slug(dataset)}.png")
        outs.append(FigureOut(key, title, file,
                              f"Test Recall@10 and NDCG@10 (%) on {dataset_label(dataset)} as a function of {about}; "
                              f"each point is the trial with that value that is best on validation."
                              + _source_text({(b, m): src for b, m, _, _, src in lines}, ablation, held)))
    return outs


def teacher_count_figures(run: Run, out_dir: Path) -> list[FigureOut]:
    """Fig. 6: the number of teachers m (CSRec-M, CSRec-D)."""
    return _one_parameter_figures(
        run, out_dir, key="fig6", ablation="teachers", methods=("csrec-m", "csrec-d"), param="num_teachers",
        name="number of teachers m", x_label="number of teachers m", integer_x=True, held=_held("teachers"),
        about="the number of teachers m")


def ratio_figures(run: Run, out_dir: Path) -> list[FigureOut]:
    """Fig. 9: the sub-sampling ratio p (CSRec-D; CSRec-T's side teacher when it varies too)."""
    return _one_parameter_figures(
        run, out_dir, key="fig9", ablation="ratio", methods=("csrec-d", "csrec-t"), param="subsample",
        name="sub-sampling ratio p", x_label="sub-sampling ratio p (fraction of training sub-sessions per teacher)",
        integer_x=False, held=_held("ratio"),
        about="the sub-sampling ratio p of the teachers' training data (CSRec-D; CSRec-T's side teacher where it "
              "varies)")


def _axis(values: pd.Series, max_distinct: int, n_bins: int) -> tuple[np.ndarray, list[str]]:
    """Category index per value and labels: the distinct values, or equal-width bins when there are many.

    A few Optuna floats (a small search: 0.2547, 4.9925, ...) are shown as themselves, to 3 significant
    digits, not binned: with bins, 4.99 fell in a bin printed "5–6.2" beside one printed "3.8–5".
    """
    values = values.astype(float)
    distinct = np.sort(values.unique())
    if len(distinct) <= max_distinct:
        printed = [f"{v:.3g}" for v in distinct]
        labels = list(dict.fromkeys(printed))  # values equal to 3 digits share one row
        column = np.array([labels.index(text) for text in printed])
        return column[np.searchsorted(distinct, values.to_numpy())], labels
    edges = np.linspace(distinct[0], distinct[-1], n_bins + 1)
    index = np.clip(np.searchsorted(edges, values.to_numpy(), side="right") - 1, 0, n_bins - 1)
    return index, [f"[{lo:.3g}, {hi:.3g}{']' if i == n_bins - 1 else ')'}" for i, (lo, hi) in
                   enumerate(zip(edges[:-1], edges[1:]))]


def _heat_panels(group: pd.DataFrame, method: str) -> list[tuple[str, pd.DataFrame]]:
    """Panels of one method: one for CSRec-M/D, one per α value or bin for CSRec-T."""
    if method != "csrec-t":
        return [(method_label(method), group)]
    alpha = _numeric(group["param/alpha"])
    group = group[alpha.notna()]
    if not len(group):
        return []
    index, labels = _axis(_numeric(group["param/alpha"]), 3, 2)
    return [(f"{method_label(method)}, α={labels[i]}", group[index == i]) for i in range(len(labels))
            if (index == i).any()]


def heatmap_figures(run: Run, out_dir: Path) -> list[FigureOut]:
    """Fig. 7/8: test metrics over β × T (per α for CSRec-T), one figure per dataset and backbone."""
    outs = []
    frame = run.completed()
    frame = frame[_default_expectation(frame)]
    for dataset in run.sweep_datasets():
        for backbone in run.sweep_backbones(dataset):
            title = f"Fig. 7/8 – {dataset_label(dataset)}, {backbone_label(backbone)}: β × T"
            panels, sources = [], {}
            for method in ("csrec-m", "csrec-d", "csrec-t"):
                group = frame[(frame["dataset"] == dataset) & (frame["backbone"] == backbone)
                              & (frame["method"] == method)]
                group, chosen = _controlled(group, "temperature", ("method",))
                group = group[_numeric(group["param/beta"]).notna() & _numeric(group["param/temperature"]).notna()]
                for label, panel in _heat_panels(group, method):
                    betas, temps = _numeric(panel["param/beta"]), _numeric(panel["param/temperature"])
                    if betas.nunique() >= 2 and temps.nunique() >= 2:
                        panels.append((label, panel))
                        sources.update(chosen)
            if not panels:
                outs.append(FigureOut("fig7_8", title, skipped=(
                    f"the run has no CSRec trials on {dataset}/{backbone} covering two or more values of both β and "
                    f"T; " + _needs(run, "temperature", dataset, [backbone]))))
                continue
            file = _heatmap(panels, out_dir, f"fig7_8_beta_T_{_slug(dataset)}_{_slug(backbone)}.png",
                            f"{dataset_label(dataset)}, {backbone_label(backbone)}: test metrics over β × T")
            outs.append(FigureOut("fig7_8", title, file,
                                  f"Test Recall@10 and NDCG@10 (%) of {backbone_label(backbone)} on "
                                  f"{dataset_label(dataset)} for each combination of the KL weight β and the "
                                  f"temperature T ({'; '.join(p[0] for p in panels)}); each cell is the trial in that "
                                  f"cell that is best on validation among those tested; a blank cell had no trial, or only "
                                  f"trials the schedule stopped early, which are never tested."
                                  + _source_text(sources, "temperature", "m 2, p 0.8")))
    return outs


def _heatmap(panels, out_dir: Path, name: str, title: str) -> str:
    all_trials = pd.concat([p for _, p in panels])
    beta_index, beta_labels = _axis(_numeric(all_trials["param/beta"]), 5, 3)
    temp_index, temp_labels = _axis(_numeric(all_trials["param/temperature"]), 6, 4)
    all_trials = all_trials.assign(_b=beta_index, _t=temp_index)
    cols = len(panels)
    fig, axes = plt.subplots(2, cols, figsize=(3.7 * cols + 1.2, 7.0), squeeze=False, layout="constrained")
    start = 0
    grids = []
    for label, panel in panels:
        sub = all_trials.iloc[start:start + len(panel)]
        start += len(panel)
        grid = {m: np.full((len(beta_labels), len(temp_labels)), np.nan) for m, _ in METRICS}
        for (b, t), cell in sub.groupby(["_b", "_t"]):
            best = best_on_validation(cell)
            for metric, _ in METRICS:
                grid[metric][b, t] = float(best[f"test/{metric}"])
        grids.append((label, grid))
    for r, (metric, ylabel) in enumerate(METRICS):
        values = np.concatenate([g[metric].ravel() for _, g in grids])
        finite = values[np.isfinite(values)]
        vmin, vmax = (100 * finite.min(), 100 * finite.max()) if len(finite) else (0, 1)
        if vmax - vmin < 1e-9:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
        image = None
        for c, (label, grid) in enumerate(grids):
            ax = axes[r][c]
            data = 100 * grid[metric]
            image = ax.imshow(np.ma.masked_invalid(data), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                              aspect="auto")
            for (b, t), value in np.ndenumerate(data):
                if np.isfinite(value):
                    shade = (value - vmin) / (vmax - vmin)
                    ax.text(t, b, f"{value:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if shade > 0.55 else "white")
            ax.set_xticks(range(len(temp_labels)))
            ax.set_xticklabels(temp_labels)
            ax.set_yticks(range(len(beta_labels)))
            ax.set_yticklabels(beta_labels)
            ax.set_xlabel("temperature T")
            ax.set_ylabel("KL weight β")
            ax.set_title(f"{label}: {ylabel.split(' ')[0]}")
            ax.grid(False)
        fig.colorbar(image, ax=list(axes[r]), label=f"test {ylabel}", shrink=0.95)
    fig.suptitle(title, fontsize=12)
    return _save(fig, out_dir, name)


def expectation_figures(run: Run, out_dir: Path) -> list[FigureOut]:
    """Fig. 10: CSRec-T with and without the expectation term of the robust loss."""
    outs = []
    for dataset in run.sweep_datasets():
        title = f"Fig. 10 – {dataset_label(dataset)}: CSRec-T with / without the expectation term"
        frame, sources = _controlled(_trials(run, dataset, ("csrec-t",), ablated_ok=True), "expectation", ("backbone",))
        flags = frame["param/expectation_term"].map(lambda v: None if v is None else bool(v))
        frame = frame.assign(_flag=flags)[flags.notna().astype(bool)]
        pairs = []
        for backbone, group in frame.groupby("backbone", sort=False):
            if group["_flag"].nunique() == 2:
                best = {flag: best_on_validation(g) for flag, g in group.groupby("_flag")}
                counts = group["_flag"].value_counts().to_dict()
                pairs.append((backbone, best, counts))
        if not pairs:
            outs.append(FigureOut("fig10", title, skipped=(
                f"the run has no CSRec-T trials on {dataset} both with and without the expectation term; "
                + _needs(run, "expectation", dataset, run.sweep_backbones(dataset)))))
            continue
        fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(pairs) + 4), 4.2), squeeze=False,
                                 layout="constrained")
        x = np.arange(len(pairs))
        for c, (metric, ylabel) in enumerate(METRICS):
            ax = axes[0][c]
            for i, (flag, label, color) in enumerate(((True, "with expectation term", "#d62728"),
                                                       (False, "without", "#f4a582"))):
                values = [100 * float(best[flag][f"test/{metric}"]) for _, best, _ in pairs]
                bars = ax.bar(x - 0.2 + 0.4 * i, values, 0.4, color=color, label=label)
                ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
            ax.set_xticks(x)
            ax.set_xticklabels([f"{backbone_label(b)}\n({n.get(True, 0)} / {n.get(False, 0)} trials)"
                                for b, _, n in pairs])
            ax.set_xlabel("student backbone (trials with / without)")
            ax.set_ylabel(f"test {ylabel}")
            ax.set_title(ylabel.split(" ")[0])
            ax.margins(y=0.15)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle(f"{dataset_label(dataset)}: CSRec-T with and without the expectation term of the robust loss "
                     r"$\ell_r$", fontsize=12)
        file = _save(fig, out_dir, f"fig10_expectation_{_slug(dataset)}.png")
        outs.append(FigureOut("fig10", title, file,
                              f"Test Recall@10 and NDCG@10 (%) of CSRec-T on {dataset_label(dataset)} with and "
                              f"without the expectation term of the robust teacher loss; each bar is the best trial "
                              f"on validation of its group."
                              + _source_text({b: sources.get(b, "grid") for b, _, _ in pairs}, "expectation",
                                             _held("expectation"))))
    return outs
