"""``csrec.report(run_dir)``: every table and figure of a sweep run directory into ``RUN_DIR/report/``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from csrec.atomic import write_atomic
from csrec.errors import CSRecError
from csrec.experiment.robustness import DEFAULT_EPOCHS, DEFAULT_NOISE
from csrec.report import figures as F
from csrec.report.robustness import CSV as ROBUSTNESS_CSV
from csrec.report.robustness import PNG as ROBUSTNESS_PNG
from csrec.report.robustness import robustness_markdown, write_robustness
from csrec.report.runs import Run, backbone_label, dataset_label, display_path, method_label
from csrec.report.tables import Table, main_table, paper_table, seed_noise_section, teacher_table

FIGURE_TITLES = {
    "fig1_4": "Fig. 1/4 – popular-type vs niche-type users", "fig3": "Fig. 3 – item popularity distribution",
    "fig5": "Fig. 5 – metrics by user history length", "fig6": "Fig. 6 – number of teachers m",
    "fig7_8": "Fig. 7/8 – β × T", "fig9": "Fig. 9 – sub-sampling ratio p",
    "fig10": "Fig. 10 – CSRec-T with / without the expectation term",
}
ROBUSTNESS_CMD = ("python sweeps/report.py --robustness {out} --noise "
                  + ",".join(f"{r:g}" for r in DEFAULT_NOISE) + f" --epochs {DEFAULT_EPOCHS}")


def report(run_dir: str | Path, data_dir: str | None = None, *, out_dir: str | Path | None = None,
           extra_runs=(), robustness_dir: str | Path | None = None, log=None) -> Path:
    """Write the report of a ``sweeps/grid.py`` run directory; returns the path of ``report.md``.

    ``out_dir``: default ``RUN_DIR/report``.  ``data_dir``: where the real datasets are (default:
    the one the sweep recorded, else ``$CSREC_DATA_DIR`` or ``./data``); the data are loaded to
    split users by popularity and sequence length.  ``extra_runs``: more run directories whose
    trials join the hyperparameter figures only (e.g. a ``--set expectation_term=false`` run for
    Fig. 10).  The run's own ``--ablation`` trials (``ablation`` column of results.parquet) feed
    the hyperparameter figures and never the tables.  ``robustness_dir``: output of :func:`csrec.report.run_robustness` to include
    (default: ``RUN_DIR/robustness`` when it holds a robustness.csv).
    """
    started = time.perf_counter()
    run = Run.load(run_dir, data_dir=data_dir, extra_runs=extra_runs)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    F._style()
    say = log or (lambda *_: None)

    tables, failed = [], []
    for kind in ("table3", "table4", "table4_negative", "table_true"):
        try:
            table = main_table(run, kind)
        except Exception as exc:  # noqa: BLE001 - one broken table must not sink the report
            failed.append(f"{kind}: {type(exc).__name__}: {exc}")
            continue
        if not table.empty:
            tables.append(table)
        if kind == "table3" and not table.empty:
            beside = paper_table(table)
            if not beside.empty:
                tables.append(beside)
    try:
        table5 = teacher_table(run)
    except Exception as exc:  # noqa: BLE001
        failed.append(f"table5: {type(exc).__name__}: {exc}")
        table5 = Table(title="Table 5", key="table5", row_header=[], groups=[])
    significance = [entry for t in tables for entry in t.significance]
    for table in tables + ([table5] if not table5.empty else []):
        write_atomic(out / f"{table.key}.md", table.markdown())
        write_atomic(out / f"{table.key}.tex", table.latex())
    if significance:
        write_atomic(out / "significance.csv", pd.DataFrame(significance).to_csv(index=False))
    say(f"[report] tables: {', '.join(t.key for t in tables + ([table5] if not table5.empty else []))}")

    figures: list[F.FigureOut] = []
    builders = [
        ("fig1_4", lambda: F.popularity_figures(run, out)),
        ("fig3", lambda: ([F.item_popularity_figure(run, out)], None)),
        ("fig5", lambda: F.length_figures(run, out)),
        ("fig6", lambda: (F.teacher_count_figures(run, out), None)),
        ("fig7_8", lambda: (F.heatmap_figures(run, out), None)),
        ("fig9", lambda: (F.ratio_figures(run, out), None)),
        ("fig10", lambda: (F.expectation_figures(run, out), None)),
    ]
    for key, build in builders:
        try:
            outs, frame = build()
        except Exception as exc:  # noqa: BLE001 - one broken figure must not sink the report
            import matplotlib.pyplot as plt

            plt.close("all")
            outs, frame = [F.FigureOut(key, FIGURE_TITLES[key], skipped=f"failed: {type(exc).__name__}: {exc}")], None
        figures += outs
        if frame is not None and len(frame):
            write_atomic(out / {"fig1_4": "popularity_groups.csv", "fig5": "length_buckets.csv"}[key], frame.to_csv(index=False))
        say(f"[report] {key}: " + ", ".join(o.file or "skipped" for o in outs))

    robustness = _robustness_section(run, out, robustness_dir)
    text = _markdown(run, tables, table5, figures, robustness, failed)
    path = out / "report.md"
    write_atomic(path, text)
    table_keys = [t.key for t in tables] + ([table5.key] if not table5.empty else [])
    for name in _stale_outputs(out, table_keys, figures):
        (out / name).unlink()
        say(f"[report] removed {name}: the previous report in {display_path(out)} wrote it, this one does not")
    write_atomic(out / "report.json", json.dumps({
        "run_dir": display_path(run.path), "extra_runs": [display_path(e) for e in extra_runs],
        "ablations": {name: int(len(run.ablation(name))) for name in run.ablations()},
        "tables": table_keys,
        "figures": [f.__dict__ for f in figures], "robustness": robustness[0] if robustness else None,
        "seconds": time.perf_counter() - started,
    }, indent=1))
    return path


def _stale_outputs(out: Path, table_keys: list[str], figures) -> list[str]:
    """Files the previous report in ``out`` wrote (as its report.json lists them) that this one did not.

    A rerun into the same directory over a run whose m, p or α are now fixed skips Fig. 6/9/10; their
    old PNGs would otherwise sit beside the new report.md as if they belonged to it.  Only files that
    report.json names are touched, never anything else in the directory.
    """
    def files(keys, figure_files) -> set[str]:  # the names the table loop above writes, and the PNGs
        return {f"{key}.{ext}" for key in keys for ext in ("md", "tex")} | {f for f in figure_files if f}

    try:
        previous = json.loads((out / "report.json").read_text())
        old = files(previous.get("tables", []), [figure.get("file") for figure in previous.get("figures", [])])
    except (OSError, ValueError, TypeError, AttributeError):
        return []  # no previous report, or one we cannot read: remove nothing
    current = files(table_keys, [figure.file for figure in figures])
    return sorted(name for name in old - current
                  if "/" not in name and "\\" not in name and (out / name).is_file())


def _robustness_section(run: Run, out: Path, robustness_dir) -> tuple[str, str] | None:
    """(png name, markdown) of a robustness run to include, or None."""
    directory = Path(robustness_dir) if robustness_dir is not None else run.path / "robustness"
    csv = directory / ROBUSTNESS_CSV
    if not csv.is_file():
        if robustness_dir is not None:
            raise CSRecError(f"{csv} not found: give --robustness-dir the OUT_DIR of a finished "
                             f"`python sweeps/report.py --robustness OUT_DIR` run")
        return None
    try:
        frame = pd.read_csv(csv)
        if not len(frame):
            return None
        write_robustness(out / "robustness", frame)
    except Exception as exc:  # noqa: BLE001 - a broken robustness file must not sink the report
        import matplotlib.pyplot as plt

        plt.close("all")
        return None, f"*Failed* to read {csv}: {type(exc).__name__}: {exc}."
    return f"robustness/{ROBUSTNESS_PNG}", robustness_markdown(frame, f"robustness/{ROBUSTNESS_PNG}")


def _markdown(run: Run, tables, table5, figures, robustness, failed_tables=()) -> str:
    cells = run.summary.get("cells") or []
    main = run.main
    status = main["status"].value_counts().to_dict() if "status" in main else {}
    lines = [f"# CSRec report: `{run.path.name}`", ""]
    if len(main):
        lines.append(
            f"Run directory `{display_path(run.path)}`: {len(main)} trials ({', '.join(f'{v} {k}' for k, v in status.items())}) "
            f"over {len(run.datasets())} dataset(s) ({', '.join(dataset_label(d) for d in run.datasets())}), "
            f"backbones {', '.join(backbone_label(b) for b in run.backbones())}, methods "
            f"{', '.join(method_label(m) for m in run.methods())}.")
    else:
        lines.append(f"Run directory `{display_path(run.path)}`: no trial of the main grid (`sweeps/grid.py` without `--ablation` "
                     f"on this directory, with `--resume`, adds it and the tables).")
    incomplete = [c for c in cells if not c.get("complete", True)]
    if incomplete:
        lines.append(f"**Incomplete cells** ({len(incomplete)}): " + ", ".join(
            f"{c['dataset']}/{c['backbone']}/{c['method']} ({c.get('trials_run')}/{c.get('trials_expected')})"
            for c in incomplete) + ".")
    ablations = run.ablations()
    if ablations:
        lines.append("Ablation sweeps (`sweeps/grid.py --ablation`), whose trials enter the hyperparameter figures "
                     "only: " + ", ".join(f"`{name}` ({len(run.ablation(name))} trials)" for name in ablations) + ".")
    extras = sorted(set(run.results["source"]) - {"main"})
    if extras:
        lines.append("Extra runs whose trials enter the hyperparameter figures only: "
                     + ", ".join(f"`{e}`" for e in extras) + ".")
    lines += ["", "Every number is a test metric of the configuration chosen on validation NDCG@10 "
              "(per cell for the tables; per parameter value for the hyperparameter figures).", ""]

    lines += ["## Effectiveness (RQ1) and robustness (RQ2): Tables 3 and 4", ""]
    for failure in failed_tables:
        lines.append(f"*Failed*: {failure}.")
    if not tables:
        lines.append("No completed trial with test metrics: no table.")
    for table in tables:
        lines += [table.markdown(), f"LaTeX: [`{table.key}.tex`]({table.key}.tex). "
                  "P-values: [`significance.csv`](significance.csv).", ""]

    noise = seed_noise_section(run)
    if noise:
        lines += ["### Beyond seed noise", "",
                  "Where a backbone's cells ran several seeds (`--seeds N`), the question that a single run cannot "
                  "answer: does a method's gain exceed what changing the seed alone does? Each method's test "
                  "Recall@10 is paired by seed with Base's and SoftRec's by seed index (replicate k of every cell, "
                  "teachers included, trains with its seeds shifted by k). With few seeds the t-test detects only gains several times the "
                  "seed-to-seed spread; NDCG@10 is in the tables' marks and `significance.csv`. Backbones that ran one seed "
                  "are read against the seed-to-seed spread measured on the dataset's seeded cells.", ""]
        for paragraph in noise:
            lines += [paragraph, ""]

    lines += ["## Teachers: Table 5", ""]
    if table5.empty:
        lines.append("Skipped: no teacher metrics found (neither in the best CSRec trials' `trial_result.json` nor "
                     "in the teacher pool `teachers/`); a sweep with `--methods base,csrec-m,csrec-d,csrec-t` "
                     "produces them.")
    else:
        lines += [table5.markdown(), "LaTeX: [`table5.tex`](table5.tex).", ""]

    lines += ["", "## Figures", ""]
    for figure in figures:
        lines.append(f"### {figure.title}")
        lines.append("")
        if figure.file:
            lines += [figure.sentence, "", f"![{figure.title}]({figure.file})", ""]
        else:
            lines += [f"*Skipped*: {figure.skipped}.", ""]

    lines += ["## Robustness curve (synthetic data, beyond the paper)", ""]
    if robustness is None:
        lines.append("Not included: it needs fits at several injected noise rates on synthetic data, e.g. "
                     f"`{ROBUSTNESS_CMD.format(out=display_path(run.path / 'robustness'))}` (then rerun this report).")
    else:
        lines.append(robustness[1])
    return "\n".join(lines).rstrip() + "\n"
