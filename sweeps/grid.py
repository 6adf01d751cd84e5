"""The dataset × backbone × method grid on Ray (locally, or on a cluster from ``ray up cluster.yaml``).

    python sweeps/grid.py --datasets all --backbones all [--methods all] [--num-samples N]
                          [--search optuna|paper-grid] [--resume] [--smoke] [--storage-path DIR]
                          [--epochs N] [--data-dir DIR] [--address ADDR]

Writes into the run directory (``--storage-path``):

* ``results.parquet`` — one row per trial: dataset, backbone, method, every hyperparameter
  (``config/*``), status, error, every last-reported metric (``valid/*``, ``test/*``, timings);
* ``best/<dataset>__<backbone>__<method>.npz`` — per-sequence test ranks, positive mask and
  Recall@10 / NDCG@10 vectors of each cell's best trial (chosen on validation);
* ``table.md`` — Table 3 layout with paired t-test marks (vs Base ``*``, vs SoftRec ``†``);
* ``summary.json`` — per cell: trials run vs expected, teachers trained, best config and metrics;
* ``teachers/`` (the shared teacher pool) and one Tune experiment directory per cell.

A killed or interrupted run continues with ``--resume`` (same ``--storage-path``): finished
trials are not rerun, teachers are reused and the Optuna searcher state is restored.
Exit status: 0 when every cell is complete, 3 when some cell is incomplete, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

SMOKE_SYNTHETIC = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)
SMOKE_BACKBONES = ("gru4rec", "sasrec")


def _split(value: str, every: list[str], what: str) -> list[str]:
    if value == "all":
        return list(every)
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"grid.py: unknown {what} {', '.join(unknown)}; valid: all, {', '.join(every)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None, help="all, or a comma list (default: all; --smoke: synthetic)")
    parser.add_argument("--backbones", default=None, help="all, or a comma list (default: all; --smoke: gru4rec,sasrec)")
    parser.add_argument("--methods", default="all", help="all, or a comma list of base,softrec,csrec-m,csrec-d,csrec-t")
    parser.add_argument("--num-samples", type=int, default=None, help="Optuna trials per soft-label method (default 12; --smoke 2)")
    parser.add_argument("--search", default="optuna", choices=("optuna", "paper-grid"))
    parser.add_argument("--resume", action="store_true", help="continue the run in --storage-path")
    parser.add_argument("--fresh", action="store_true", help="delete an existing --storage-path first")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic grid, a few minutes on a laptop")
    parser.add_argument("--storage-path", default=None, help="run directory (default runs/sweep, --smoke runs/sweep-smoke)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per student and teacher (default 100; --smoke 2)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default 10)")
    parser.add_argument("--data-dir", default=None, help="data directory (default $CSREC_DATA_DIR or ./data)")
    parser.add_argument("--address", default=None, help="join a running cluster (e.g. auto, or HOST:PORT)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray runtime (default: all)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=None, help="default: 1 when the cluster has GPUs")
    parser.add_argument("--teacher-workers", type=int, default=1, help=">1: data-parallel TorchTrainer per teacher")
    parser.add_argument("--max-concurrent", type=int, default=None, help="concurrent trials per cell")
    parser.add_argument("--max-failures", type=int, default=1, help="retries per failing trial")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any DataConfig/TrainConfig/MethodConfig field (repeatable); a searched "
                             "parameter set here (e.g. num_teachers=2) is fixed")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Tune verbosity")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()

    from csrec.data.dataset import DataConfig, dataset_names
    from csrec.data.synthetic import SyntheticConfig
    from csrec.methods import METHODS
    from csrec.models import backbone_names

    datasets = _split(args.datasets or ("synthetic" if args.smoke else "all"), dataset_names(), "dataset")
    backbones = _split(args.backbones or (",".join(SMOKE_BACKBONES) if args.smoke else "all"), backbone_names(), "backbone")
    methods = _split(args.methods, list(METHODS), "method")
    num_samples = args.num_samples or (2 if args.smoke else 12)
    epochs = args.epochs or (2 if args.smoke else None)
    run_dir = Path(args.storage_path or ("runs/sweep-smoke" if args.smoke else "runs/sweep")).resolve()

    overrides: dict = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.patience is not None:
        overrides["patience"] = args.patience
    if args.smoke:
        overrides["synthetic"] = SyntheticConfig(**SMOKE_SYNTHETIC)
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"grid.py: --set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip().replace("-", "_")] = value

    usable = []
    for name in datasets:
        source = DataConfig(name=name, data_dir=args.data_dir).source_path()
        if source is not None and not source.is_file():
            print(f"[grid] skipping dataset {name}: {source} not found (set --data-dir or $CSREC_DATA_DIR)", flush=True)
            continue
        usable.append(name)
    if not usable:
        print("[grid] no dataset to run", file=sys.stderr)
        return 2

    if run_dir.exists() and not args.resume:
        if not args.fresh:
            print(f"[grid] {run_dir} exists: pass --resume to continue it, --fresh to start over, "
                  f"or another --storage-path", file=sys.stderr)
            return 2
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    import csrec.sweep as sweep
    from csrec.sweep.report import write_outputs
    from csrec.sweep.space import PARAMS
    from csrec.sweep.tuner import base_config, known_configs

    init_s = sweep.init_ray(address=args.address, num_cpus=args.num_cpus)
    resources = sweep.Resources(
        trial_cpus=args.cpus_per_trial, trial_gpus=args.gpus_per_trial, teacher_workers=args.teacher_workers,
        max_concurrent_trials=args.max_concurrent,
    )
    cells = [(d, b, m) for d in usable for b in backbones for m in methods]
    (run_dir / "run.json").write_text(json.dumps({"argv": sys.argv[1:], "cells": cells, "started": time.time()}, indent=1))
    print(f"[grid] {len(cells)} cells ({len(usable)} datasets × {len(backbones)} backbones × {len(methods)} methods), "
          f"search={args.search}, num_samples={num_samples}, run dir {run_dir} (ray up in {init_s:.1f}s)", flush=True)

    common = dict(epochs=epochs, seed=args.seed, **overrides)
    teacher_report = None
    if args.search == "paper-grid":
        # Every teacher of the whole grid is known: train them all at once, concurrently.
        known = []
        for dataset, backbone, method in cells:
            fixed = tuple(p for p in PARAMS if p in overrides)
            known += known_configs(base_config(dataset, backbone, method, **common), args.search, "auto", fixed)
        if known:
            teacher_report = sweep.train_teachers(known, run_dir / "teachers", resources, sweep="grid",
                                                  storage_path=run_dir)

    results, failures = [], []
    for i, (dataset, backbone, method) in enumerate(cells, 1):
        print(f"[grid] cell {i}/{len(cells)}: {dataset} / {backbone} / {method}", flush=True)
        try:
            result = sweep.tune(
                dataset, backbone, method, num_samples=num_samples, search=args.search, resources=resources,
                storage_path=run_dir, resume="auto" if args.resume else False, max_failures=args.max_failures,
                verbose=args.verbose, **common,
            )
        except Exception as exc:  # noqa: BLE001 - one broken cell must not sink the grid
            print(f"[grid] cell {dataset}/{backbone}/{method} failed: {type(exc).__name__}: {exc}", flush=True)
            failures.append({"cell": [dataset, backbone, method], "error": f"{type(exc).__name__}: {exc}"})
            continue
        results.append(result)
        print(f"[grid] {result.summary()}", flush=True)
        if not result.complete and (result.trials["status"] == "interrupted").any():
            print("[grid] the sweep was interrupted; rerun with --resume to continue", flush=True)
            break

    wall = time.perf_counter() - started
    trained = [r for r in sweep.read_teacher_records(run_dir / "teachers") if r.get("trained")]
    n_trials = sum(r.trials_run for r in results)
    extra = {
        "wall_s": wall, "trials": n_trials, "teachers_trained": len(trained), "failed_cells": failures,
        "teacher_launch_overhead_s": None if teacher_report is None else teacher_report.launch_overheads,
    }
    paths = write_outputs(run_dir, results, extra)
    complete = not failures and len(results) == len(cells) and all(r.complete for r in results)
    print(f"[grid] {'done' if complete else 'INCOMPLETE'}: {n_trials} trials in {len(results)}/{len(cells)} cells, "
          f"{len(trained)} teachers in the pool, {wall:.1f}s wall", flush=True)
    print(f"[grid] wrote {paths['results']}, {paths['table']}, {run_dir / 'best'}", flush=True)
    return 0 if complete else 3


if __name__ == "__main__":
    sys.exit(main())
