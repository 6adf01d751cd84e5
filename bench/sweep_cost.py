"""What a sweep cost, from its run directory, and what the full 8-backbone grid of its dataset would cost.

    python bench/sweep_cost.py RUN_DIR [--pool DIR] [--name yelp]
                               [--throughput bench/results/throughput_<dataset>.md]
                               [--gpu-throughput bench/results/throughput_gpu_<dataset>.md]

Reads the run's ``results.parquet`` (one row per trial) and its teacher pool (``--pool``, default
the run's ``teachers/``: each teacher's ``.json`` record and, for its epochs, its checkpoint; for a
teacher the pool no longer holds, the record its best trial keeps (``best/*.trial.json``), so a
compact copy alone is enough) and writes bench/results/sweep_cost_<name>.md:

* per cell: trials (completed / stopped early / other), student epochs, trial hours, teachers the
  cell trained and their epochs and hours, the teachers a per-trial design would have trained
  (each CSRec-M/D trial its m teachers, each CSRec-T trial its main and side teacher), the
  soft-label store's bytes and the largest peak RSS of a trial or teacher process;
* the cost model: each backbone's cell costs in epochs (trials × student epochs, teachers ×
  teacher epochs, the means of the cells this run measured) priced at the seconds per epoch of
  ``--throughput`` (one backbone per row: Base epoch, CSRec-M student epoch), scaled by the ratio
  of this run's measured hours to the same model's price for the backbones it ran.  With
  ``--gpu-throughput`` (``bench/gpu.sh`` writes it on a GPU machine) the same epochs are priced
  at the GPU's seconds per epoch too; without it that column says it was not measured.  Only the
  rows of the run's dataset are read from either table (and of its training precision where the
  table has several): an epoch of Last.FM says nothing about one of Yelp.

Hours are wall seconds of one-thread trial and teacher processes (``--num-cpus 1``: one process at
a time per core), so they are core-hours on the machine the run used, inflated by whatever else
shared it.  A trial's hours leave out its set-up (the teachers it trained or waited for, its
soft-label store): every teacher is counted once, by its own training time, in the cell whose
experiment trained it, or in the "(before the cells)" row for those grid.py trained up front.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, markdown_table, read_markdown_table, write_result  # noqa: E402

from csrec.methods.config import MethodConfig  # noqa: E402
from csrec.report.paper import METHODS  # noqa: E402
from csrec.report.runs import Run  # noqa: E402
from csrec.models import backbone_names  # noqa: E402
from csrec.sweep.teachers import read_teacher_records  # noqa: E402
from csrec.sweep.tuner import trained_by_run  # noqa: E402

#: Teachers one trial of a method needs (m for CSRec-M/D; CSRec-T: the main teacher and its side teacher).
PER_TRIAL_TEACHERS = {"base": lambda row: 0, "softrec": lambda row: 0,
                      "csrec-m": lambda row: int(row["config/num_teachers"]),
                      "csrec-d": lambda row: int(row["config/num_teachers"]),
                      "csrec-t": lambda row: 2}


def _get(row, name, default):
    value = row.get(name, default) if hasattr(row, "get") else default
    return default if value is None or (isinstance(value, float) and value != value) else value


def fixed_setting(run: Path, name: str, default):
    """A setting the sweep fixed for every cell (``--set NAME=VALUE``), else ``default``; read through the
    report's parser of run.json's command line."""
    config = Run.load(run).grid_config()
    return config.overrides.get(name, default) if config else default


def fixed_teacher_count(run: Path) -> int:
    """m where the run fixed it (``--set num_teachers=K``), else MethodConfig's default."""
    return int(fixed_setting(run, "num_teachers", MethodConfig().num_teachers))


def trial_table(trials: pd.DataFrame, m: int) -> pd.DataFrame:
    """Per-trial cost columns: student epochs (epochs_run when it finished, else the last reported
    epoch) and hours of training (the trial's time less its set-up: the teachers it trained or
    waited for, and its soft-label store, are counted apart)."""
    frame = trials.copy()
    for column in ("epochs_run", "epoch", "time_total_s", "setup_s", "store_bytes", "peak_rss_mib", "config/num_teachers"):
        if column not in frame:
            frame[column] = float("nan")
    frame["student_epochs"] = frame["epochs_run"].fillna(frame["epoch"]).fillna(0).astype(int)
    frame["hours"] = (frame["time_total_s"].fillna(0.0) - frame["setup_s"].fillna(0.0)).clip(lower=0.0) / 3600
    frame["config/num_teachers"] = frame["config/num_teachers"].fillna(m)
    return frame


def experiments_of(trials: pd.DataFrame) -> set[str]:
    """The Tune experiments (directory names) the trials ran in."""
    return {Path(str(p)).parent.name for p in trials["trial_path"].dropna()} if "trial_path" in trials else set()


def _teacher_row(record: dict, experiment: str, epochs: int) -> dict:
    return {"experiment": experiment, "describe": record.get("describe"), "trained_by": record.get("trained_by"),
            "hours": float(record.get("seconds", 0.0)) / 3600, "epochs": epochs,
            "peak_rss_mib": record.get("peak_rss_mib")}


def teacher_records(pool: Path, run: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """The teachers this run trained: one row each, with the experiment that trained it (a cell's,
    or ``grid`` for those the run trained before its cells), epochs, hours and peak RSS.

    From the pool's records, and, for those the pool no longer holds (a run continued on another
    machine from its compact copy, whose earlier teachers stayed behind), from the records the
    cells' best trials keep (:meth:`csrec.report.runs.Run.teacher_infos`): such a record counts
    when one of this run's experiments trained it."""
    shared = pool != (run / "teachers").resolve()
    rows, seen = [], set()
    for record in trained_by_run(read_teacher_records(pool), run, shared) if pool.is_dir() else []:
        checkpoint = pool / f"teacher-{record['key']}.pt"
        info = torch.load(checkpoint, map_location="cpu", weights_only=False)["info"] if checkpoint.is_file() else {}
        label = str(record.get("sweep", ""))
        seen.add(record["key"])
        rows.append(_teacher_row(record, label.rsplit(":", 1)[-1] if shared else label, int(info.get("epochs_run", 0))))
    experiments, report_run = experiments_of(trials), Run.load(run)
    for cell in trials[["dataset", "backbone", "method"]].drop_duplicates().itertuples(index=False):
        for record in report_run.teacher_infos(*cell):
            experiment = str(record.get("sweep", "")).rsplit(":", 1)[-1]
            if record.get("trained") and record.get("key") not in seen and experiment in experiments:
                seen.add(record["key"])
                rows.append(_teacher_row(record, experiment, int(record.get("epochs_run", 0))))
    return pd.DataFrame(rows, columns=["experiment", "describe", "trained_by", "hours", "epochs", "peak_rss_mib"])


def _cell(backbone, method, group: pd.DataFrame, own: pd.DataFrame) -> dict:
    peaks = pd.concat([group["peak_rss_mib"], own["peak_rss_mib"]]).dropna()
    return {
        "backbone": backbone, "method": method, "trials": len(group),
        "completed": int((group["status"] == "completed").sum()), "stopped": int((group["status"] == "stopped").sum()),
        "student_epochs": int(group["student_epochs"].sum()), "student_hours": float(group["hours"].sum()),
        "hours": float(group["hours"].sum() + own["hours"].sum()),
        "teachers": len(own), "teacher_epochs": int(own["epochs"].sum()), "teacher_hours": float(own["hours"].sum()),
        "per_trial_teachers": int(sum(PER_TRIAL_TEACHERS[method](row) for _, row in group.iterrows())) if method else 0,
        "store_bytes": group["store_bytes"].max() if len(group) else float("nan"),
        "peak_rss_mib": peaks.max() if len(peaks) else float("nan"),
    }


def cell_rows(trials: pd.DataFrame, teachers: pd.DataFrame) -> list[dict]:
    """One row per cell (its trials and the teachers its own experiment trained), then one for the
    teachers the run trained before its cells (grid.py trains every teacher it can name up front)."""
    cells, claimed = [], set()
    for (backbone, method), group in trials.groupby(["backbone", "method"], sort=False):
        experiments = experiments_of(group)
        own = teachers[teachers["experiment"].isin(experiments)]
        claimed |= experiments
        cells.append(_cell(backbone, method, group, own))
    before = teachers[~teachers["experiment"].isin(claimed)]
    if len(before):
        cells.append(_cell("(before the cells)", "", trials.iloc[:0], before))
    return cells


def per_epoch_seconds(table: list[dict], dataset: str, precision: str = "fp32") -> dict[str, tuple[float, float]]:
    """backbone → (Base epoch s (train + valid), CSRec-M student epoch s (train + the same valid)), from the
    rows of ``dataset`` (and, where the table has a precision column, of ``precision``)."""
    out = {}
    for row in table:
        if str(row.get("dataset", dataset)) != dataset:
            continue
        if "precision" in row and str(row["precision"]) != precision:
            continue
        base = float(str(row["s per epoch (train+valid)"]).replace(",", ""))
        valid = float(str(row["s per valid pass"]).replace(",", ""))
        student = [v for k, v in row.items() if k.startswith("CSRec-M student") and "s per train epoch" in k and "CPU" not in k]
        soft = float(str(student[0]).split(" ")[0].replace(",", "")) + valid if student else base
        out[str(row["backbone"])] = (base, soft)
    return out


def model_rows(cells: list[dict], cpu: dict, gpu: dict | None) -> tuple[list[list], float, float, float | None]:
    """Price every backbone × method at the run's epochs per method; returns rows and totals.

    Teacher epochs (the run's, per method: all its teachers, spread over the backbones it ran)
    are priced at a Base epoch; the robust CSRec-T teacher costs somewhat more per epoch and a
    p-subsample teacher less, which the calibration against the measured hours absorbs."""
    frame = pd.DataFrame([c for c in cells if c["method"]])
    backbones_run = sorted(set(frame["backbone"]))
    per_method = frame.groupby("method")[["student_epochs"]].mean()
    teacher_epochs = sum(c["teacher_epochs"] for c in cells) / max(len(backbones_run), 1)
    measured = {b: sum(c["student_hours"] for c in cells if c["backbone"] == b) for b in backbones_run}
    teacher_hours = sum(c["teacher_hours"] for c in cells)

    def price(backbone: str, per_epoch: dict, epochs_of=None) -> float:
        base_s, soft_s = per_epoch[backbone]
        students = sum((epochs_of(method) if epochs_of else mean["student_epochs"]) * (base_s if method == "base" else soft_s)
                       for method, mean in per_method.iterrows())
        return (students + teacher_epochs * base_s) / 3600

    # Calibration: this run's measured hours against the model's price of exactly what it ran.
    ran = [b for b in backbones_run if b in cpu]
    priced = sum(price(b, cpu, lambda m, b=b: frame[(frame.backbone == b) & (frame.method == m)]["student_epochs"].sum())
                 for b in ran)
    actual = sum(measured[b] for b in ran) + teacher_hours * len(ran) / max(len(backbones_run), 1)
    scale = actual / priced if priced > 0 else 1.0
    rows, total_cpu, total_gpu = [], 0.0, 0.0 if gpu else None
    for backbone in backbone_names():
        if backbone not in cpu:
            continue
        model_h = price(backbone, cpu) * scale
        gpu_h = price(backbone, gpu) if gpu and backbone in gpu else None
        total_cpu += model_h
        if total_gpu is not None and gpu_h is not None:
            total_gpu += gpu_h
        rows.append([backbone, f"{cpu[backbone][0]:.1f} / {cpu[backbone][1]:.1f}",
                     "yes" if backbone in backbones_run else "–", f"{model_h:.1f}",
                     "not measured (no GPU run)" if not gpu else "not timed on the GPU" if gpu_h is None
                     else f"{gpu_h:.2f}"])
    return rows, total_cpu, scale, total_gpu


def _size(nbytes) -> str:
    if pd.isna(nbytes) or not nbytes:
        return "–"
    return f"{nbytes / 2**20:,.0f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.0f} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pool", type=Path, default=None, help="teacher pool (default RUN/teachers)")
    parser.add_argument("--name", default=None, help="result name: bench/results/sweep_cost_<name>.md (default: the dataset)")
    parser.add_argument("--throughput", type=Path, default=None, help="default bench/results/throughput_<dataset>.md")
    parser.add_argument("--gpu-throughput", type=Path, default=None,
                        help="default bench/results/throughput_gpu_<dataset>.md, else throughput_gpu.md "
                             "(bench/gpu.sh writes them)")
    args = parser.parse_args()
    run = args.run.resolve()
    trials = trial_table(pd.read_parquet(run / "results.parquet"), fixed_teacher_count(run))
    trials = trials[trials["ablation"].isna()] if "ablation" in trials else trials
    dataset = str(trials["dataset"].iloc[0])
    teachers = teacher_records((args.pool or run / "teachers").resolve(), run, trials)
    cells = cell_rows(trials, teachers)

    header = ["backbone", "method", "trials (completed / stopped early)", "student epochs", "hours (students + teachers)",
              "teachers trained (epochs, hours)", "a per-trial design's teachers", "soft-label store", "peak RSS (MiB)"]
    rows = [[c["backbone"], c["method"], f"{c['trials']} ({c['completed']} / {c['stopped']})", f"{c['student_epochs']:,}",
             f"{c['hours']:.2f}", f"{c['teachers']} ({c['teacher_epochs']:,}, {c['teacher_hours']:.2f} h)",
             f"{c['per_trial_teachers']}", _size(c["store_bytes"]),
             "–" if pd.isna(c["peak_rss_mib"]) else f"{c['peak_rss_mib']:,.0f}"] for c in cells]
    total = {k: sum(c[k] for c in cells) for k in ("trials", "student_epochs", "hours", "teachers", "teacher_epochs", "per_trial_teachers")}
    peak = max((c["peak_rss_mib"] for c in cells if not pd.isna(c["peak_rss_mib"])), default=float("nan"))
    rows.append(["**all**", "", f"{total['trials']}", f"{total['student_epochs']:,}", f"{total['hours']:.1f}",
                 f"{total['teachers']} ({total['teacher_epochs']:,})", f"{total['per_trial_teachers']}", "",
                 "–" if pd.isna(peak) else f"{peak:,.0f}"])
    body = [f"Run: `{args.run}`, {len(cells)} cells.", "", markdown_table(header, rows), ""]

    precision = str(fixed_setting(run, "precision", "fp32"))
    args.throughput = args.throughput or RESULTS / f"throughput_{dataset}.md"
    if args.gpu_throughput is None:  # bench/gpu.sh: Yelp in its own table, Last.FM in throughput_gpu.md
        candidates = [RESULTS / f"throughput_gpu_{dataset}.md", RESULTS / "throughput_gpu.md"]
        args.gpu_throughput = next((c for c in candidates if c.is_file()), candidates[0])
    if not args.throughput.is_file():
        raise SystemExit(f"{args.throughput}: not found; time {dataset} first: python bench/throughput.py "
                         f"--datasets {dataset} --backbones all --epochs 1 --warmup 0 --output throughput_{dataset}")
    cpu = per_epoch_seconds(read_markdown_table(args.throughput), dataset)
    if not cpu:
        raise SystemExit(f"{args.throughput}: no rows for dataset {dataset}")
    gpu = per_epoch_seconds(read_markdown_table(args.gpu_throughput), dataset, precision) \
        if args.gpu_throughput.is_file() else None
    gpu = gpu or None  # a GPU table without this dataset's rows prices nothing
    model, total_cpu, scale, total_gpu = model_rows(cells, cpu, gpu)
    gpu_backbones = sorted(gpu) if gpu else []
    body += [
        f"**Cost model: every backbone × {', '.join(m for m in METHODS if m in {c['method'] for c in cells})} "
        f"(the methods this run has) at this run's budget.** Each cell costs the mean "
        f"trials × student epochs and teachers × teacher epochs this run measured per method, priced at "
        f"`{args.throughput.relative_to(RESULTS.parents[1]) if args.throughput.is_relative_to(RESULTS.parents[1]) else args.throughput}`'s "
        f"seconds per epoch (Base / CSRec-M student, train + valid; teachers at a Base epoch) and multiplied by {scale:.2f}, "
        f"the ratio of this run's measured hours to the model's price of exactly the epochs it ran. The GPU column is the "
        f"unscaled price at the GPU's seconds per epoch.", "",
        markdown_table(["backbone", "s per epoch (Base / student)", "in this run", "hours, model (this machine)",
                        "hours, model (one GPU)"], model), "",
        f"The full grid: about {total_cpu:.0f} core-hours here"
        + (f"; on the GPU of `{args.gpu_throughput.name}` ({precision}), {total_gpu:.1f} hours for the "
           f"{len(gpu_backbones)} backbones it timed ({', '.join(gpu_backbones)})." if total_gpu is not None else
           f"; on a GPU not measured: `{args.gpu_throughput.name}` does not exist or has no {dataset} rows in "
           f"{precision} (`bench/gpu.sh` writes it on a GPU machine)."),
    ]
    write_result(f"sweep_cost_{args.name or dataset}", f"What the {dataset} sweep cost, and the full grid's cost model", "\n".join(body))


if __name__ == "__main__":
    main()
