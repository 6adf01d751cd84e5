"""The deterministic schedule against asynchronous ASHA: same table at any concurrency, and its cost.

    python bench/schedule_cost.py [--output schedule_cost] [GRID.PY OPTIONS ...]

Runs one ``sweeps/grid.py`` command (default ``--smoke``; any grid.py options may follow, e.g.
``--datasets lastfm --backbones gru4rec --search paper-grid --data-dir ../shared/data``) four
times, each in a fresh run directory, one after another:

* ``--schedule sync --max-concurrent 1`` and ``--schedule sync --max-concurrent 2``: their
  ``table.md`` must be byte-identical (the report says whether it is, with the diff's line count);
* ``--schedule async --max-concurrent 2``, twice: ASHA's tables may differ between the two.

Per run: wall seconds, trials, student epochs trained (the sum of each trial's epochs), trials
stopped early, and the table's digest.  Writes bench/results/<--output>.md; run directories go
under bench/results/runs/ (ignored) and are deleted afterwards; each run's output stays there as
``<--output>-<k>-<schedule>-<concurrent>.log`` (the script prints where, to follow it).
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table, write_result  # noqa: E402

RUNS = (("sync", 1), ("sync", 2), ("async", 2), ("async", 2))


def main() -> None:
    argv = sys.argv[1:]
    output = "schedule_cost"
    if "--output" in argv:
        i = argv.index("--output")
        output, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    grid_args = argv or ["--smoke"]
    rows, tables = [], []
    for k, (schedule, concurrent) in enumerate(RUNS):
        run_dir = RESULTS / "runs" / f"{output}-{k}-{schedule}-{concurrent}"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [sys.executable, "sweeps/grid.py", *grid_args, "--schedule", schedule,
                   "--max-concurrent", str(concurrent), "--storage-path", str(run_dir)]
        log_path = RESULTS / "runs" / f"{output}-{k}-{schedule}-{concurrent}.log"
        print(f"[schedule_cost] run {k + 1}/{len(RUNS)}: --schedule {schedule} --max-concurrent {concurrent} "
              f"(progress: tail -f {log_path})", flush=True)
        started = time.perf_counter()
        with open(log_path, "w") as log:
            done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"schedule_cost.py: {shlex.join(command)} failed ({done.returncode}):\n"
                             f"{log_path.read_text()[-3000:]}")
        results = pd.read_parquet(run_dir / "results.parquet")
        table = (run_dir / "table.md").read_text()
        tables.append(table)
        epochs = results["epochs_run"].fillna(results["training_iteration"]).astype(float)
        rows.append([schedule, concurrent, f"{wall:.0f}", len(results), f"{epochs.sum():.0f}",
                     int((results["status"] == "stopped").sum()), hashlib.sha256(table.encode()).hexdigest()[:12]])
        print(rows[-1], flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)

    def diff_lines(a: str, b: str) -> int:
        return sum(1 for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("+++", "---")))

    body = markdown_table(["schedule", "concurrent trials", "wall s", "trials", "student epochs", "stopped early",
                           "table.md sha256"], rows)
    body += (f"\n\nGrid: `python sweeps/grid.py {shlex.join(grid_args)}`, each run in a fresh run directory (teachers "
             f"trained anew), one after another on the same machine.  `diff` of the two sync tables (1 vs 2 "
             f"concurrent trials): {diff_lines(tables[0], tables[1])} changed lines; of the two async runs: "
             f"{diff_lines(tables[2], tables[3])} changed lines.")
    write_result(output, "Deterministic (sync) schedule vs asynchronous ASHA", body)


if __name__ == "__main__":
    main()
