"""What a sweep cost, from its run directory, and what the full 8-backbone grid of its dataset would cost.

    python bench/sweep_cost.py RUN_DIR [--pool DIR] [--name yelp]
                               [--throughput bench/results/throughput_yelp.md]
                               [--gpu-throughput bench/results/throughput_gpu.md]

Reads the run's ``results.parquet`` (one row per trial) and its teacher pool (``--pool``, default
the run's ``teachers/``: each teacher's ``.json`` record and, for its epochs, its checkpoint) and
writes bench/results/sweep_cost_<name>.md:

* per cell: trials (completed / stopped early / other), student epochs, trial hours, teachers the
  cell trained and their epochs and hours, the teachers a per-trial design would have trained
  (each CSRec-M/D trial its m teachers, each CSRec-T trial its main and side teacher), the
  soft-label store's bytes and the largest peak RSS of a trial or teacher process;
* the cost model: each backbone's cell costs in epochs (trials × student epochs, teachers ×
  teacher epochs, the means of the cells this run measured) priced at the seconds per epoch of
  ``--throughput`` (one backbone per row: Base epoch, CSRec-M student epoch), scaled by the ratio
  of this run's measured hours to the same model's price for the backbones it ran.  With
  ``--gpu-throughput`` (``bench/gpu.sh`` writes it on a GPU machine) the same epochs are priced
  at the GPU's seconds per epoch too; without it that column says it was not measured.

Hours are wall seconds of one-thread trial and teacher processes (``--num-cpus 1``: one process at
a time per core), so they are core-hours on the machine the run used, inflated by whatever else
shared it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, markdown_table, read_markdown_table, write_result  # noqa: E402

from csrec.models import backbone_names  # noqa: E402

#: Teachers one trial of a method needs (m for CSRec-M/D; CSRec-T: the main teacher and its side teacher).
PER_TRIAL_TEACHERS = {"base": lambda row: 0, "softrec": lambda row: 0,
                      "csrec-m": lambda row: int(row["config/num_teachers"]),
                      "csrec-d": lambda row: int(row["config/num_teachers"]),
                      "csrec-t": lambda row: 2}
METHODS = ("base", "softrec", "csrec-m", "csrec-d", "csrec-t")


def _get(row, name, default):
    value = row.get(name, default) if hasattr(row, "get") else default
    return default if value is None or (isinstance(value, float) and value != value) else value


def trial_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per-trial cost columns: student epochs (epochs_run when it finished, else the last reported epoch), hours."""
    frame = trials.copy()
    epochs = frame["epochs_run"] if "epochs_run" in frame else pd.Series(float("nan"), index=frame.index)
    frame["student_epochs"] = epochs.fillna(frame.get("epoch", 0)).fillna(0).astype(int)
    frame["hours"] = frame.get("time_total_s", pd.Series(0.0, index=frame.index)).fillna(0.0) / 3600
    for column in ("store_bytes", "peak_rss_mib", "config/num_teachers"):
        if column not in frame:
            frame[column] = float("nan")
    if "config/num_teachers" in frame:  # m fixed with --set: not a trial parameter, read the default
        frame["config/num_teachers"] = frame["config/num_teachers"].fillna(2)
    return frame


def teacher_records(pool: Path, run: Path) -> pd.DataFrame:
    """The pool's teachers this run trained: one row each, with its cell, epochs, hours and peak RSS."""
    rows = []
    for record_path in sorted(pool.glob("teacher-*.json")):
        record = json.loads(record_path.read_text())
        sweep = str(record.get("sweep", ""))
        if not sweep.startswith(f"{run}:") or not record.get("trained"):
            continue
        checkpoint = record_path.with_suffix(".pt")
        info = torch.load(checkpoint, map_location="cpu", weights_only=False)["info"] if checkpoint.is_file() else {}
        rows.append({"experiment": sweep.split(":", 1)[1], "describe": record.get("describe"),
                     "trained_by": record.get("trained_by"), "hours": float(record.get("seconds", 0.0)) / 3600,
                     "epochs": int(info.get("epochs_run", 0)), "peak_rss_mib": record.get("peak_rss_mib")})
    return pd.DataFrame(rows, columns=["experiment", "describe", "trained_by", "hours", "epochs", "peak_rss_mib"])


def cell_rows(trials: pd.DataFrame, teachers: pd.DataFrame) -> list[dict]:
    cells = []
    for (backbone, method), group in trials.groupby(["backbone", "method"], sort=False):
        experiment = Path(str(group["trial_path"].iloc[0])).parent.name if "trial_path" in group else ""
        own = teachers[teachers["experiment"] == experiment]
        # Teachers a trial trained are inside its time; those the driver's tasks trained are not.
        outside = own[own["trained_by"] != "trial"]
        peaks = pd.concat([group["peak_rss_mib"], own["peak_rss_mib"]]).dropna()
        cells.append({
            "backbone": backbone, "method": method, "trials": len(group),
            "completed": int((group["status"] == "completed").sum()), "stopped": int((group["status"] == "stopped").sum()),
            "student_epochs": int(group["student_epochs"].sum()),
            "hours": float(group["hours"].sum() + outside["hours"].sum()),
            "teachers": len(own), "teacher_epochs": int(own["epochs"].sum()), "teacher_hours": float(own["hours"].sum()),
            "per_trial_teachers": int(sum(PER_TRIAL_TEACHERS[method](row) for _, row in group.iterrows())),
            "store_bytes": group["store_bytes"].max(), "peak_rss_mib": peaks.max() if len(peaks) else float("nan"),
        })
    return cells


def per_epoch_seconds(table: list[dict]) -> dict[str, tuple[float, float]]:
    """backbone → (Base epoch s (train + valid), CSRec-M student epoch s (train + the same valid))."""
    out = {}
    for row in table:
        base = float(str(row["s per epoch (train+valid)"]).replace(",", ""))
        valid = float(str(row["s per valid pass"]).replace(",", ""))
        student = [v for k, v in row.items() if k.startswith("CSRec-M student") and "s per train epoch" in k and "CPU" not in k]
        soft = float(str(student[0]).split(" ")[0].replace(",", "")) + valid if student else base
        out[str(row["backbone"])] = (base, soft)
    return out


def model_rows(cells: list[dict], cpu: dict, gpu: dict | None) -> tuple[list[list], float, float, float | None]:
    """Price every backbone × method cell at the run's mean epochs per cell; returns rows and totals."""
    frame = pd.DataFrame(cells)
    by_method = frame.groupby("method")[["trials", "student_epochs", "teachers", "teacher_epochs"]].mean()
    measured = frame.groupby("backbone")["hours"].sum()

    def price(backbone: str, per_epoch: dict) -> float:
        base_s, soft_s = per_epoch[backbone]
        total = 0.0
        for method, mean in by_method.iterrows():
            total += mean["student_epochs"] * (base_s if method == "base" else soft_s) + mean["teacher_epochs"] * base_s
        return total / 3600

    ran = [b for b in measured.index if b in cpu]
    scale = float(measured[ran].sum() / sum(price(b, cpu) for b in ran)) if ran else 1.0
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
                     f"{measured[backbone]:.1f}" if backbone in measured.index else "–", f"{model_h:.1f}",
                     "not measured (no GPU run)" if gpu_h is None else f"{gpu_h:.2f}"])
    return rows, total_cpu, scale, total_gpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pool", type=Path, default=None, help="teacher pool (default RUN/teachers)")
    parser.add_argument("--name", default=None, help="result name: bench/results/sweep_cost_<name>.md (default: the dataset)")
    parser.add_argument("--throughput", type=Path, default=RESULTS / "throughput_yelp.md")
    parser.add_argument("--gpu-throughput", type=Path, default=RESULTS / "throughput_gpu.md")
    args = parser.parse_args()
    run = args.run.resolve()
    trials = trial_table(pd.read_parquet(run / "results.parquet"))
    trials = trials[trials["ablation"].isna()] if "ablation" in trials else trials
    dataset = str(trials["dataset"].iloc[0])
    teachers = teacher_records((args.pool or run / "teachers").resolve(), run)
    cells = cell_rows(trials, teachers)

    header = ["backbone", "method", "trials (completed / stopped early)", "student epochs", "hours (trials + driver-trained teachers)",
              "teachers trained (epochs, hours)", "a per-trial design's teachers", "soft-label store", "peak RSS (MiB)"]
    rows = [[c["backbone"], c["method"], f"{c['trials']} ({c['completed']} / {c['stopped']})", f"{c['student_epochs']:,}",
             f"{c['hours']:.2f}", f"{c['teachers']} ({c['teacher_epochs']:,}, {c['teacher_hours']:.2f} h)",
             f"{c['per_trial_teachers']}", "–" if pd.isna(c["store_bytes"]) or not c["store_bytes"] else f"{c['store_bytes'] / 2**20:,.0f} MiB",
             "–" if pd.isna(c["peak_rss_mib"]) else f"{c['peak_rss_mib']:,.0f}"] for c in cells]
    total = {k: sum(c[k] for c in cells) for k in ("trials", "student_epochs", "hours", "teachers", "teacher_epochs", "per_trial_teachers")}
    peak = max((c["peak_rss_mib"] for c in cells if not pd.isna(c["peak_rss_mib"])), default=float("nan"))
    rows.append(["**all**", "", f"{total['trials']}", f"{total['student_epochs']:,}", f"{total['hours']:.1f}",
                 f"{total['teachers']} ({total['teacher_epochs']:,})", f"{total['per_trial_teachers']}", "",
                 "–" if pd.isna(peak) else f"{peak:,.0f}"])
    body = [f"Run: `{run.name}`, {len(cells)} cells.", "", markdown_table(header, rows), ""]

    cpu = per_epoch_seconds(read_markdown_table(args.throughput))
    gpu = per_epoch_seconds(read_markdown_table(args.gpu_throughput)) if args.gpu_throughput.is_file() else None
    model, total_cpu, scale, total_gpu = model_rows(cells, cpu, gpu)
    body += [
        f"**Cost model: every backbone × {', '.join(m for m in METHODS if m in {c['method'] for c in cells})} "
        f"(the methods this run has) at this run's budget.** Each cell costs the mean "
        f"trials × student epochs and teachers × teacher epochs this run measured per method, priced at "
        f"`{args.throughput.relative_to(RESULTS.parents[1]) if args.throughput.is_relative_to(RESULTS.parents[1]) else args.throughput}`'s "
        f"seconds per epoch (Base / CSRec-M student, train + valid) and multiplied by {scale:.2f}, the ratio of this run's "
        f"measured hours to the model's price for the backbones it ran.", "",
        markdown_table(["backbone", "s per epoch (Base / student)", "hours measured here", "hours, model (this machine)",
                        "hours, model (one GPU)"], model), "",
        f"The full grid: about {total_cpu:.0f} core-hours here"
        + (f", {total_gpu:.1f} hours on the GPU of `{args.gpu_throughput.name}`." if total_gpu is not None else
           "; on a GPU not measured: no GPU was available to `bench/gpu.sh`, which writes the GPU throughput this model reads."),
    ]
    write_result(f"sweep_cost_{args.name or dataset}", f"What the {dataset} sweep cost, and the full grid's cost model", "\n".join(body))


if __name__ == "__main__":
    main()
