"""Last.FM sweeps on Ray (OptunaSearch and the paper's grid) next to the paper's Table 3.

    python bench/lastfm_sweep.py [--backbones gru4rec] [--searches optuna,paper-grid]
                                 [--num-samples 12] [--epochs 100] [--grace-period N]
                                 [--tabulate-only]

Runs ``sweeps/grid.py --datasets lastfm`` once per search into its own run directory
(``runs/lastfm-<search>``, resumable: rerunning this script continues an interrupted sweep and
reruns no finished trial; by default the searches share one teacher pool, so the paper grid
reuses the teachers the Optuna sweep trained and each run counts only those it trained itself;
``--teacher-pool ''`` gives each run its own), then reads each run's ``summary.json`` and writes
bench/results/lastfm_sweep.md (optuna) or bench/results/lastfm_sweep_<search>.md: per cell the
trials run, the teachers the cell trained, the best configuration chosen on validation NDCG@10
and its test Recall@10 / NDCG@10, beside the paper.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, ROOT, markdown_table, write_result  # noqa: E402
from lastfm_methods import PAPER  # noqa: E402

from csrec.methods.config import SYMBOLS  # noqa: E402

SEARCHED = tuple(SYMBOLS)


def run_name(search: str, tag: str = "") -> str:
    return f"lastfm-{search}" + (f"-{tag}" if tag else "")


def run_dir(search: str, tag: str = "") -> Path:
    return ROOT / "runs" / run_name(search, tag)


def run_sweep(search: str, args: argparse.Namespace) -> None:
    command = [sys.executable, str(ROOT / "sweeps" / "grid.py"), "--datasets", "lastfm", "--backbones", args.backbones,
               "--search", search, "--num-samples", str(args.num_samples), "--epochs", str(args.epochs),
               "--storage-path", str(run_dir(search, args.tag)), "--data-dir", args.data_dir, "--resume-or-start"]
    if args.methods:
        command += ["--methods", args.methods]
    if args.grace_period is not None:
        command += ["--grace-period", str(args.grace_period)]
    if args.teacher_pool:
        command += ["--teacher-pool", args.teacher_pool]
    print("$", " ".join(command), flush=True)
    code = subprocess.call(command, cwd=ROOT)
    if code not in (0, 3):  # 3: some cell incomplete (reported in the table)
        raise SystemExit(f"grid.py exited with {code}")


def trial_effort(path: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """(backbone, method) → (epochs run, seconds) summed over the run's trials (``results.parquet``).

    A trial's seconds include the teachers it trained and its soft-label store build.
    """
    results = path / "results.parquet"
    if not results.is_file():
        return {}
    import pandas as pd

    frame = pd.read_parquet(results, columns=["backbone", "method", "epochs_run", "time_total_s"])
    grouped = frame.groupby(["backbone", "method"]).agg(epochs=("epochs_run", "sum"), seconds=("time_total_s", "sum"))
    return {key: (int(row.epochs), float(row.seconds)) for key, row in grouped.iterrows()}


def own_pool_seconds(run: Path, summary: dict) -> str:
    """", their training took N min in all" when the run has its own pool (a shared one mixes runs)."""
    pool = run / "teachers"
    if Path(str(summary.get("teacher_pool") or "")).resolve() != pool.resolve():
        return ""
    seconds = 0.0
    for sidecar in pool.glob("teacher-*.json"):
        record = json.loads(sidecar.read_text())
        if record.get("trained"):
            seconds += float(record.get("seconds") or 0.0)
    return f"; their training took {seconds / 60:.0f} min of task time in all"


def describe(config: dict) -> str:
    # Optuna's categorical m comes back as a string.
    return ", ".join(f"{SYMBOLS[k]} {float(config[k]):.3g}" for k in SEARCHED if config.get(k) is not None) or "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="gru4rec")
    parser.add_argument("--searches", default="optuna,paper-grid")
    parser.add_argument("--num-samples", type=int, default=12, help="Optuna trials per soft-label method")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--grace-period", type=int, default=None, help="ASHA grace period (grid.py's default: epochs // 4)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--teacher-pool", default=str(run_dir("optuna") / "teachers"),
                        help="one teacher pool for all the searches (default: the Optuna run's); '' for one per run")
    parser.add_argument("--methods", default="",
                        help="comma-separated methods, in this order (default: grid.py's, all of them)")
    parser.add_argument("--tag", default="",
                        help="a separate run: runs/lastfm-<search>-<tag> and bench/results/lastfm_sweep_<search>_<tag>.md")
    parser.add_argument("--tabulate-only", action="store_true", help="only read the run directories")
    args = parser.parse_args()
    for search in args.searches.split(","):
        if not args.tabulate_only:
            run_sweep(search, args)
        tabulate(search, args.tag)


def result_name(search: str, tag: str = "") -> str:
    # One result file per run, so tabulating one never drops another's table.
    name = "lastfm_sweep" if search == "optuna" else f"lastfm_sweep_{search.replace('-', '_')}"
    return name + (f"_{tag.replace('-', '_')}" if tag else "")


def tabulate(search: str, tag: str = "") -> None:
    rows, notes = [], []
    path = run_dir(search, tag) / "summary.json"
    if not path.is_file():
        print(f"{search}: no summary in {path.parent.relative_to(ROOT)} (not run yet); "
              f"bench/results/{result_name(search, tag)}.md left as it is", file=sys.stderr)
        return
    summary = json.loads(path.read_text())
    effort = trial_effort(path.parent)
    cells = summary["cells"]
    # Summed over cells, not the last invocation's totals: a resumed sweep restores finished
    # cells in a fraction of a second, so its own wall time and counts say little.
    # The paper grid's teachers are all known up front and trained before its cells start, so
    # its cells train none themselves: the run-level count (every teacher this run directory
    # trained, over all its invocations) is the one to report.
    in_cells = sum(int(c.get('teachers_trained') or 0) for c in cells)
    teachers = max(in_cells, int(summary.get("teachers_trained") or 0))
    notes.append(f"{search}: {sum(c['trials_run'] for c in cells)} trials, "
                 f"{teachers} teachers trained ({teachers - in_cells} before the cells started{own_pool_seconds(path.parent, summary)}), "
                 f"{sum(e[0] for e in effort.values()):,} student epochs, "
                 f"{sum(e[1] for e in effort.values()) / 3600:.1f} h of trial time "
                 f"({path.parent.relative_to(ROOT)}; the last invocation took {summary.get('wall_s', 0):.0f} s)")
    for cell in cells:
        paper = PAPER.get(cell["backbone"], {}).get(cell["method"])
        test, valid = cell.get("best_test") or {}, cell.get("best_valid") or {}
        pct = lambda d, k: f"{100 * d[k]:.2f}" if k in d else "–"  # noqa: E731
        epochs, seconds = effort.get((cell["backbone"], cell["method"]), (0, 0.0))
        rows.append([
            search, cell["backbone"], cell["method"], f"{cell['trials_run']} / {cell['trials_expected']}",
            cell.get("teachers_trained", ""), describe(cell.get("best_config") or {}), pct(valid, "ndcg@10"),
            pct(test, "recall@10"), pct(test, "ndcg@10"),
            f"{epochs:,}", f"{seconds / 60:.0f}",
            "" if paper is None else paper[0], "" if paper is None else paper[1],
        ])
    body = markdown_table(["search", "backbone", "method", "trials run / expected", "teachers trained in the cell",
                           "best config (on validation)", "valid NDCG@10 %", "test Recall@10 %", "test NDCG@10 %",
                           "student epochs", "trial time (min)",
                           "paper Recall@10", "paper NDCG@10"], rows)
    body += "\n\n" + "\n".join(f"- {n}" for n in notes)
    body += ("\n\nEach cell's best trial is chosen on validation NDCG@10 only; its test metrics come from its best "
             "epoch. A cell counts only the teachers it trained itself (later cells, and later searches sharing "
             "the pool, reuse earlier ones' teachers). Student epochs and trial time are summed "
             "over the cell's trials; a trial's time includes the teachers it trained and its soft-label store.")
    title = f"Last.FM sweep on Ray ({search}{', ' + tag if tag else ''}) vs the paper's Table 3"
    write_result(result_name(search, tag), title, body)

if __name__ == "__main__":
    main()
