"""The dataset × backbone × method grid on Ray (locally, or on a cluster from ``ray up cluster.yaml``).

    python sweeps/grid.py --datasets all --backbones all [--methods all] [--num-samples N]
                          [--search optuna|paper-grid] [--resume] [--smoke] [--storage-path DIR]
                          [--epochs N] [--data-dir DIR] [--address ADDR]
                          [--ablation teachers|ratio|temperature|expectation|all (or a comma list)]

``--ablation`` runs, instead of the main grid, the controlled sweeps of the paper's sensitivity
figures (see :data:`csrec.sweep.space.ABLATIONS`), for every dataset × backbone given, every other
parameter at the paper's default (β 0.5, T 3, m 2, p 0.8, α 0.5); no ASHA, so every point finishes:

* ``teachers`` (Fig. 6): CSRec-M and CSRec-D with m ∈ {1, 2, 3, 4} — 8 trials per backbone;
* ``ratio`` (Fig. 9): CSRec-D and CSRec-T with p ∈ {0.5, …, 0.9} — 10 trials per backbone;
* ``temperature`` (Fig. 7/8): β ∈ {0.25, 0.5, 0.75} × T ∈ {1, 3, 6, 9} for CSRec-M/D, × α ∈
  {0.25, 0.5, 0.75} for CSRec-T — 12 + 12 + 36 trials per backbone;
* ``expectation`` (Fig. 10): CSRec-T with and without the expectation term — 2 trials per backbone.

``--methods`` (when not ``all``) keeps only those of an ablation's methods.  Each ablation cell is
its own Tune experiment (``<dataset>-<backbone>-<method>-ablation-<name>``); its trials go into
``results.parquet`` with ``ablation=<name>`` (``None`` for the main grid's) and never enter the
main grid's best trials, ``best/`` or ``table.md``.  Teachers come from the same pool as the main
grid's (m = 3 reuses m = 2's teachers).  To add ablations to a finished grid, rerun with the same
``--storage-path`` and ``--resume``: results.parquet and summary.json keep the cells of earlier
invocations that this one did not run.

Writes into the run directory (``--storage-path``):

* ``results.parquet`` — one row per trial: dataset, backbone, method, every hyperparameter
  (``config/*``), status, error, every last-reported metric (``valid/*``, ``test/*``, timings);
* ``best/<dataset>__<backbone>__<method>.npz`` — per-sequence test ranks, positive mask and
  Recall@10 / NDCG@10 vectors of each cell's best trial (chosen on validation);
* ``table.md`` — Table 3 layout with paired t-test marks (vs Base ``*``, vs SoftRec ``†``);
* ``summary.json`` — per cell: trials run vs expected, teachers trained, best config and metrics
  (``ablations``: the same per ablation cell), and the command line of this invocation;
* ``teachers/`` (the teacher pool shared by the cells; ``--teacher-pool DIR`` puts it elsewhere, so
  that several run directories train each distinct teacher once between them) and one Tune
  experiment directory per cell.

A killed or interrupted run continues with ``--resume`` (same ``--storage-path``): finished
trials are not rerun, teachers are reused and the Optuna searcher state is restored.
Exit status: 0 when every cell is complete, 3 when some cell is incomplete, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
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
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA: epochs every trial runs before it can be stopped (default epochs // 4)")
    parser.add_argument("--teacher-pool", default=None, metavar="DIR",
                        help="teacher pool shared with other run directories (default: STORAGE_PATH/teachers)")
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
    parser.add_argument("--ablation", default=None, metavar="NAMES",
                        help="run the controlled sweeps of the sensitivity figures instead of the grid: "
                             "teachers (Fig. 6), ratio (Fig. 9), temperature (Fig. 7/8), expectation (Fig. 10), "
                             "a comma list, or all")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Tune verbosity")
    return parser


def ablation_cells(datasets, backbones, ablations, methods=None) -> list[tuple[str, str, str, str]]:
    """(dataset, backbone, method, ablation) of every ablation cell; ``methods`` (None: all) filters."""
    from csrec.sweep.space import ABLATIONS

    cells = []
    for dataset in datasets:
        for backbone in backbones:
            for name in ablations:
                for method in ABLATIONS[name].methods:
                    if methods is None or method in methods:
                        cells.append((dataset, backbone, method, name))
    return cells


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)  # what this invocation was given, recorded as is
    args = build_parser().parse_args(argv)
    started = time.perf_counter()

    from csrec.data.dataset import DataConfig, dataset_names
    from csrec.data.synthetic import SyntheticConfig
    from csrec.methods import METHODS
    from csrec.models import backbone_names

    datasets = _split(args.datasets or ("synthetic" if args.smoke else "all"), dataset_names(), "dataset")
    backbones = _split(args.backbones or (",".join(SMOKE_BACKBONES) if args.smoke else "all"), backbone_names(), "backbone")
    methods = _split(args.methods, list(METHODS), "method")
    from csrec.cli import parse_key_values
    from csrec.errors import CSRecError
    from csrec.sweep.space import ABLATIONS, parse_ablations

    try:
        ablations = parse_ablations(args.ablation)
    except ValueError as exc:
        print(f"grid.py: {exc}", file=sys.stderr)
        return 2
    if ablations:
        keep = None if args.methods == "all" else set(methods)
        for name in ablations:
            if keep is not None and not keep & set(ABLATIONS[name].methods):
                print(f"grid.py: the {name} ablation sweeps {', '.join(ABLATIONS[name].methods)}; "
                      f"--methods {args.methods} keeps none of them", file=sys.stderr)
                return 2
    num_samples = args.num_samples or (2 if args.smoke else 12)
    epochs = args.epochs or (2 if args.smoke else None)
    run_dir = Path(args.storage_path or ("runs/sweep-smoke" if args.smoke else "runs/sweep")).resolve()

    overrides: dict = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.patience is not None:
        overrides["patience"] = args.patience
    if args.grace_period is not None and args.grace_period < 1:
        print(f"grid.py: --grace-period must be at least 1 epoch, got {args.grace_period}", file=sys.stderr)
        return 2
    if args.smoke:
        overrides["synthetic"] = SyntheticConfig(**SMOKE_SYNTHETIC)
    try:
        overrides.update(parse_key_values(args.set, "--set"))
    except CSRecError as exc:
        raise SystemExit(f"grid.py: {exc}") from None
    for name in ablations:
        clash = [k for m in ABLATIONS[name].methods for k in ABLATIONS[name].grid(m) if k in overrides]
        if clash:
            print(f"grid.py: the {name} ablation varies {', '.join(sorted(set(clash)))}: do not fix it with --set",
                  file=sys.stderr)
            return 2

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
    from csrec.sweep.tuner import base_config, known_configs, teacher_label, teacher_pool_dir, trained_by_run

    init_s = sweep.init_ray(address=args.address, num_cpus=args.num_cpus)
    pool_dir, shared_pool = teacher_pool_dir(run_dir, args.teacher_pool)
    resources = sweep.Resources(
        trial_cpus=args.cpus_per_trial, trial_gpus=args.gpus_per_trial, teacher_workers=args.teacher_workers,
        max_concurrent_trials=args.max_concurrent,
    )
    command = "python sweeps/grid.py " + shlex.join(argv)
    # With --ablation this invocation runs the ablation cells only (the main grid is run without it).
    cells = [] if ablations else [(d, b, m) for d in usable for b in backbones for m in methods]
    extra_cells = ablation_cells(usable, backbones, ablations, None if args.methods == "all" else set(methods))
    _write_run_json(run_dir, {"argv": argv, "command": command, "cells": cells,
                              "ablation_cells": extra_cells, "started": time.time()}, args.resume)
    if cells:
        print(f"[grid] {len(cells)} cells ({len(usable)} datasets × {len(backbones)} backbones × {len(methods)} "
              f"methods), search={args.search}, num_samples={num_samples}, run dir {run_dir} "
              f"(ray up in {init_s:.1f}s)", flush=True)
    if extra_cells:
        n_ablation = sum(ABLATIONS[a].trials(m) for _, _, m, a in extra_cells)
        print(f"[grid] {len(extra_cells)} ablation cells ({', '.join(ablations)}; {n_ablation} trials), run dir "
              f"{run_dir} (ray up in {init_s:.1f}s)", flush=True)

    common = dict(epochs=epochs, seed=args.seed, **overrides)

    def ablation_kwargs(method: str, name: str) -> dict:
        return {**ABLATIONS[name].fixed(method), **common}  # --set wins over the paper's defaults

    teacher_report = None
    # Every teacher of the paper grid and of the ablations is known: train them all at once, concurrently.
    known = []
    if args.search == "paper-grid":
        for dataset, backbone, method in cells:
            fixed = tuple(p for p in PARAMS if p in overrides)
            known += known_configs(base_config(dataset, backbone, method, **common), args.search, "auto", fixed)
    for dataset, backbone, method, name in extra_cells:
        kwargs = ablation_kwargs(method, name)
        fixed = tuple(p for p in PARAMS if p in kwargs)
        known += known_configs(base_config(dataset, backbone, method, **kwargs), "grid", "auto", fixed,
                               ABLATIONS[name].grid(method))
    if known:
        prebuild = "ablation" if extra_cells and not cells else "grid"
        teacher_report = sweep.train_teachers(known, pool_dir, resources,
                                              sweep=teacher_label(run_dir, prebuild, shared_pool),
                                              storage_path=run_dir)

    results, ablation_results, failures = [], [], []
    todo = [(d, b, m, None) for d, b, m in cells] + list(extra_cells)
    for i, (dataset, backbone, method, name) in enumerate(todo, 1):
        label = f"{dataset} / {backbone} / {method}" + (f" / ablation {name}" if name else "")
        print(f"[grid] cell {i}/{len(todo)}: {label}", flush=True)
        run_kwargs = dict(resources=resources, storage_path=run_dir, teacher_pool=pool_dir,
                          resume="auto" if args.resume else False,
                          max_failures=args.max_failures, verbose=args.verbose)
        try:
            if name is None:
                result = sweep.tune(dataset, backbone, method, num_samples=num_samples, search=args.search,
                                    grace_period=args.grace_period, **run_kwargs, **common)
            else:  # a controlled grid: no early stopping, every point must reach its test report
                result = sweep.tune(dataset, backbone, method, grid=ABLATIONS[name].grid(method), ablation=name,
                                    asha=False, **run_kwargs, **ablation_kwargs(method, name))
        except Exception as exc:  # noqa: BLE001 - one broken cell must not sink the grid
            print(f"[grid] cell {label} failed: {type(exc).__name__}: {exc}", flush=True)
            failures.append({"cell": [dataset, backbone, method] + ([name] if name else []),
                             "error": f"{type(exc).__name__}: {exc}"})
            continue
        (results if name is None else ablation_results).append(result)
        print(f"[grid] {result.summary()}", flush=True)
        if not result.complete and (result.trials["status"] == "interrupted").any():
            print("[grid] the sweep was interrupted; rerun with --resume to continue", flush=True)
            break

    wall = time.perf_counter() - started
    # A shared pool holds other runs' teachers too: count the ones this run trained.
    trained = trained_by_run(sweep.read_teacher_records(pool_dir), run_dir, shared_pool)
    n_trials = sum(r.trials_run for r in results + ablation_results)
    # Cells of earlier invocations on this run directory that this one did not rerun are kept.
    kept_main, kept_rows, kept_ablations = _previous_outputs(
        run_dir, {(r.dataset, r.backbone, r.method) for r in results},
        {(r.dataset, r.backbone, r.method, r.ablation) for r in ablation_results})
    extra = {
        "argv": argv, "command": command,
        "wall_s": wall, "trials": n_trials, "teachers_trained": len(trained), "teacher_pool": pool_dir,
        "failed_cells": failures,
        "teacher_launch_overhead_s": None if teacher_report is None else teacher_report.launch_overheads,
        "ablations": kept_ablations + [_ablation_summary(r) for r in ablation_results],
    }
    paths = write_outputs(run_dir, results + kept_main, extra)
    _append_ablation_rows(paths["results"], kept_rows, ablation_results)
    done = results + ablation_results
    complete = not failures and len(done) == len(todo) and all(r.complete for r in done)
    print(f"[grid] {'done' if complete else 'INCOMPLETE'}: {n_trials} trials in {len(done)}/{len(todo)} cells, "
          f"{len(trained)} teachers in the pool, {wall:.1f}s wall", flush=True)
    print(f"[grid] wrote {paths['results']}, {paths['table']}, {run_dir / 'best'}", flush=True)
    return 0 if complete else 3


# --- outputs across invocations -------------------------------------------------------------------
def _write_run_json(run_dir: Path, entry: dict, resume: bool) -> None:
    """run.json: this invocation, and (resumed) the earlier ones under ``previous``."""
    from csrec.atomic import write_atomic

    path = run_dir / "run.json"
    previous = []
    if resume and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        previous = list(old.pop("previous", []) or []) + ([old] if old else [])
    write_atomic(path, json.dumps({**entry, "previous": previous}, indent=1))


def _ablation_summary(result) -> dict:
    from csrec.sweep.space import ablation_cell

    return {
        "cell": ablation_cell(result.dataset, result.backbone, result.method, result.ablation),
        "ablation": result.ablation, "dataset": result.dataset, "backbone": result.backbone, "method": result.method,
        "grid": result.grid, "trials_run": result.trials_run, "trials_expected": result.trials_expected,
        "complete": result.complete, "teachers_trained": result.teachers_trained, "best_config": result.best_config,
        "best_valid": result.best_valid, "best_test": result.best_test, "timings": result.timings,
        "path": result.path,
    }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _previous_outputs(run_dir: Path, rerun_main: set, rerun_ablation: set):
    """What an earlier invocation wrote and this one did not rerun.

    Returns (main cells as SweepResult records for ``write_outputs``, the ablation trial rows,
    the ablation cells' summaries).
    """
    import pandas as pd

    from csrec.sweep.tuner import SweepResult

    file = run_dir / "results.parquet"
    if not file.is_file():
        return [], None, []
    try:
        frame = pd.read_parquet(file)
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    except Exception as exc:  # noqa: BLE001 - an unreadable earlier output is not worth failing the run for
        print(f"[grid] earlier results in {run_dir} unreadable ({type(exc).__name__}: {exc}); not kept", flush=True)
        return [], None, []
    if not len(frame) or "dataset" not in frame:
        return [], None, [c for c in summary.get("ablations", []) if
                          (c["dataset"], c["backbone"], c["method"], c["ablation"]) not in rerun_ablation]
    if "ablation" not in frame:
        frame["ablation"] = None
    is_ablation = frame["ablation"].map(lambda v: not _missing(v))
    cells = {(c["dataset"], c["backbone"], c["method"]): c for c in summary.get("cells", [])}
    kept_main = []
    for key, rows in frame[~is_ablation].groupby(["dataset", "backbone", "method"], sort=False):
        if key in rerun_main:
            continue
        info = cells.get(key, {})
        rows = rows.drop(columns=["ablation"]).reset_index(drop=True)
        flagged = rows[rows["is_best"].fillna(False).astype(bool)] if "is_best" in rows else rows.iloc[0:0]
        kept_main.append(SweepResult(
            dataset=key[0], backbone=key[1], method=key[2], search=info.get("search") or str(rows["search"].iloc[0]),
            path=info.get("path", ""), trials=rows.drop(columns=["is_best"], errors="ignore"),
            best_config=info.get("best_config"), best_valid=info.get("best_valid") or {},
            best_test=info.get("best_test") or {},
            best_trial_path=str(flagged["trial_path"].iloc[0]) if len(flagged) else None,
            trials_run=int(info.get("trials_run", len(rows))),
            trials_expected=int(info.get("trials_expected", len(rows))),
            complete=bool(info.get("complete", False)), teachers_trained=int(info.get("teachers_trained", 0)),
            timings=info.get("timings") or {},
        ))
    keys = frame[["dataset", "backbone", "method", "ablation"]].apply(tuple, axis=1)
    rows = frame[is_ablation & ~keys.isin(rerun_ablation)]
    kept_ablations = [c for c in summary.get("ablations", [])
                      if (c["dataset"], c["backbone"], c["method"], c["ablation"]) not in rerun_ablation]
    return kept_main, rows, kept_ablations


def _parquet_ready(frame):
    """One type per object column: None for missing, booleans and numbers kept, anything else as text."""
    import numpy as np
    import pandas as pd

    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = [None if _missing(v) else (v.item() if isinstance(v, np.generic) else v) for v in frame[column]]
        kinds = {type(v) for v in values if v is not None}
        if kinds and kinds <= {bool}:
            pass
        elif kinds and kinds <= {int, float}:
            values = [None if v is None else float(v) for v in values]
        else:
            values = [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values]
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _append_ablation_rows(path: Path, kept_rows, ablation_results) -> None:
    """results.parquet: the main grid's rows (``ablation`` None) and every ablation trial (its name)."""
    import pandas as pd

    from csrec.atomic import atomic_path

    frames = [pd.read_parquet(path)]
    frames[0]["ablation"] = None
    if kept_rows is not None and len(kept_rows):
        frames.append(kept_rows)
    for result in ablation_results:
        frame = result.trials.copy()
        frame["ablation"] = result.ablation
        frame["is_best"] = False
        if result.best_trial_path is not None and len(frame):
            frame.loc[frame["trial_path"] == result.best_trial_path, "is_best"] = True
        frames.append(frame)
    filled = [f for f in frames if len(f)]  # (an empty frame would turn integer columns into floats)
    results = pd.concat(filled, ignore_index=True) if filled else frames[0]
    if len(results.columns):
        first = ["dataset", "backbone", "method", "ablation", "search", "trial_id", "status", "error", "is_best"]
        configs = sorted(c for c in results.columns if c.startswith("config/"))
        rest = [c for c in results.columns if c not in first and c not in configs]
        results = results[[c for c in first if c in results.columns] + configs + rest]
    with atomic_path(path) as tmp:
        _parquet_ready(results).to_parquet(tmp, index=False)


if __name__ == "__main__":
    sys.exit(main())
