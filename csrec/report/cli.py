"""``python sweeps/report.py``: the paper's tables and figures from a finished sweep, and the robustness curve on synthetic data.

    python sweeps/report.py RUN_DIR [--data-dir DIR] [--with OTHER_RUN_DIR ...] [--out DIR]
                            [--robustness-dir DIR]
    python sweeps/report.py --robustness OUT_DIR [--noise 0,0.1,0.2,0.4] [--epochs N] [--backbone B]
                            [--methods base,softrec,csrec-m,csrec-d,csrec-t] [--synthetic KEY=VALUE ...]
                            [--set KEY=VALUE ...]

The first form writes ``RUN_DIR/report/`` (report.md, table3/4/5 .md + .tex, significance.csv,
the figures as PNG, the per-group CSVs).  The hyperparameter figures (Fig. 6, 7/8, 9, 10) read
the run's ``sweeps/grid.py --ablation`` trials (teachers, temperature, ratio, expectation) when it
has them; a figure without data is skipped with the ``--ablation`` command that would produce it.
``--with`` adds the trials of other run directories to the hyperparameter figures only.  The second form fits every method at every injected noise rate on synthetic
data (plain loop, no Ray; resumable) and writes robustness.csv/.md/.png into OUT_DIR; a report of
RUN_DIR includes ``RUN_DIR/robustness`` when it exists (or the one given by ``--robustness-dir``).
``--compact-copy DIR`` copies the run's compact part instead (see :func:`csrec.report.outputs.copy_compact`).
Exit status: 0 on success, 2 on bad arguments or an unreadable run directory.
"""

from __future__ import annotations

import argparse
import sys
import time

from csrec.cli import parse_key_values
from csrec.errors import CSRecError
from csrec.experiment import DEFAULT_EPOCHS, DEFAULT_NOISE, run_robustness
from csrec.methods.config import METHODS
from csrec.report.outputs import copy_compact
from csrec.report.build import report
from csrec.report.robustness import write_robustness


def _pairs(values: list[str], what: str) -> dict:
    try:
        return parse_key_values(values, what)
    except CSRecError as exc:
        raise SystemExit(f"report.py: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeps/report.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a sweeps/grid.py run directory (its --storage-path)")
    parser.add_argument("--data-dir", default=None, help="where the real datasets are (default: as the sweep)")
    parser.add_argument("--with", dest="extra", action="append", default=[], metavar="RUN_DIR",
                        help="another run directory whose trials join the hyperparameter figures (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (default RUN_DIR/report)")
    parser.add_argument("--compact-copy", default=None, metavar="DIR",
                        help="instead of a report: copy RUN_DIR's compact part (results.parquet, summary.json, "
                             "run.json, table.md, best/*.npz and *.trial.json; no weights) into DIR, to commit it or "
                             "move the run to another machine (grid.py --resume continues it there)")
    parser.add_argument("--robustness-dir", default=None, metavar="DIR",
                        help="a --robustness OUT_DIR to include (default: RUN_DIR/robustness when it exists)")
    group = parser.add_argument_group("robustness curve")
    group.add_argument("--robustness", metavar="OUT_DIR", default=None, help="run the robustness fits into OUT_DIR")
    group.add_argument("--noise", default=",".join(f"{r:g}" for r in DEFAULT_NOISE),
                       help="comma list of injected noise rates in [0, 1)")
    group.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                       help=f"epochs per student and teacher (default {DEFAULT_EPOCHS})")
    group.add_argument("--backbone", default="gru4rec")
    group.add_argument("--methods", default="base,softrec,csrec-m,csrec-d,csrec-t")
    group.add_argument("--synthetic", action="append", default=[], metavar="KEY=VALUE",
                       help="synthetic generator setting, e.g. n_users=500 (repeatable)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any DataConfig/TrainConfig/MethodConfig field for every fit (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.robustness is None):
        parser.print_usage(sys.stderr)
        print("report.py: give either RUN_DIR or --robustness OUT_DIR", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if args.robustness is not None:
        try:
            noise = [float(v) for v in args.noise.split(",") if v.strip()]
        except ValueError:
            print(f"report.py: --noise expects numbers, got {args.noise!r}", file=sys.stderr)
            return 2
        if not noise or any(not 0.0 <= r < 1.0 for r in noise):
            print(f"report.py: noise rates must lie in [0, 1), got {args.noise!r}", file=sys.stderr)
            return 2
        methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            print(f"report.py: unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}", file=sys.stderr)
            return 2
        frame = run_robustness(args.robustness, noise, args.epochs, backbone=args.backbone.lower(), methods=methods,
                               synthetic=_pairs(args.synthetic, "--synthetic") or None, **_pairs(args.set, "--set"))
        write_robustness(args.robustness, frame)
        print(f"[report] robustness: {len(frame)} fits, wrote {args.robustness}/robustness.png "
              f"({time.perf_counter() - started:.1f}s)")
        return 0

    if args.compact_copy is not None:
        try:
            written = copy_compact(args.run_dir, args.compact_copy)
        except FileNotFoundError as exc:
            print(f"report.py: error: {exc}", file=sys.stderr)
            return 2
        size = sum(p.stat().st_size for p in written)
        print(f"[report] copied {len(written)} files ({size / 1024:.0f} KiB) of {args.run_dir} into {args.compact_copy}")
        return 0
    try:
        path = report(args.run_dir, data_dir=args.data_dir, out_dir=args.out, extra_runs=args.extra,
                      robustness_dir=args.robustness_dir, log=print)
    except CSRecError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"[report] wrote {path} ({time.perf_counter() - started:.1f}s)")
    return 0
