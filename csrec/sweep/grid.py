"""A run directory's sweep: every cell of a :class:`~csrec.search.GridConfig`, one after another.

:func:`run_grid` trains every teacher the cells know up front in one concurrent batch, runs each
cell with :func:`csrec.sweep.tune` (a failing cell is recorded, the others go on), and hands the
trials to :func:`csrec.report.write_run_outputs` (results.parquet, best/, table.md, summary.json).
``run.json`` records each invocation's command line; a resumed one keeps the earlier ones.

It prints what it does, briefly: the run's plan, each cell's trials (one line per start and end)
and summary (from :func:`csrec.sweep.tune`), and at the end the run's table.md.
``resume`` needs a run to continue (a run directory with its ``run.json``); ``resume_or_start``
starts one when there is none.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from csrec.atomic import write_atomic
from csrec.errors import ConfigError
from csrec.report.outputs import write_run_outputs
from csrec.search.config import GridConfig, SweepConfig
from csrec.search.space import ABLATIONS
from csrec.sweep.runtime import check_address, init_ray
from csrec.sweep.teachers import read_teacher_records, train_teachers
from csrec.sweep.tuner import (
    REPLICATES_SUFFIX,
    SweepResult, cell_known_configs, store_registry, teacher_label, teacher_pool_dir, trained_by_run, tune,
)


@dataclass
class GridResult:
    """What :func:`run_grid` did: the cells that ran, the ones that failed, and where it wrote."""

    cells: list[SweepResult] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    expected: int = 0
    paths: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failures and len(self.cells) == self.expected and all(r.complete for r in self.cells)


def run_grid(config: GridConfig, log=print) -> GridResult:
    """Run every cell of ``config`` into its run directory; ConfigError when there is nothing to run
    or the run directory exists without ``resume`` / ``fresh``."""
    started = time.perf_counter()
    datasets = config.usable_datasets(log=lambda text: log(text, flush=True))
    if not datasets:
        raise ConfigError("no dataset to run")
    run_dir = Path(config.storage_path).resolve()
    check_address(config.address)  # before anything is written: a wrong address fails in seconds
    _prepare(run_dir, config, log=lambda text: log(text, flush=True))
    cells = config.cells(datasets)
    redo = _set_aside(run_dir, cells, config.redo, log=lambda text: log(text, flush=True))
    init_s = init_ray(address=config.address, num_cpus=config.num_cpus)
    pool_dir, shared_pool = teacher_pool_dir(run_dir, config.teacher_pool)
    _record_invocation(run_dir, config, cells)
    log(_announce(config, cells, datasets, run_dir, init_s), flush=True)

    kept = _finished_elsewhere(run_dir, cells) - redo if config.resume or config.resume_or_start else set()
    # Every teacher the unfinished cells know up front (paper grid, ablations): trained at once,
    # concurrently.  An Optuna cell's one shared teacher set trains when its cell starts instead, so
    # that the first cells finish (and are recorded) without waiting for every later cell's teachers.
    known = [c for cell in cells if _key(cell) not in kept for c in cell_known_configs(cell, shared_set=False)]
    teacher_report = None
    if known:
        prebuild = "ablation" if config.ablations else "grid"
        teacher_report = train_teachers(known, pool_dir, config.resources, notes=store_registry(),
                                        sweep=teacher_label(run_dir, prebuild, shared_pool), storage_path=run_dir)

    outcome = GridResult(expected=len(cells))

    def write_outputs() -> None:
        # After every cell, so a killed run keeps each finished cell's compact results (results.parquet,
        # best/, summary.json), which are all a run directory moved to another machine needs.
        trained = trained_by_run(read_teacher_records(pool_dir), run_dir, shared_pool)
        outcome.paths = write_run_outputs(run_dir, outcome.cells, {
            "argv": config.argv, "command": config.command, "wall_s": time.perf_counter() - started,
            "trials": sum(r.trials_run for r in outcome.cells), "teachers_trained": len(trained),
            "teacher_pool": pool_dir, "failed_cells": outcome.failures,
            "teacher_launch_overhead_s": None if teacher_report is None else teacher_report.launch_overheads,
        })

    for i, cell in enumerate(cells, 1):
        if _key(cell) in kept:
            log(f"[grid] cell {i}/{len(cells)}: {cell.label}: finished in an earlier invocation "
                f"(its Tune experiment is not here; results.parquet and best/ keep it)", flush=True)
            outcome.expected -= 1
            continue
        log(f"[grid] cell {i}/{len(cells)}: {cell.label}", flush=True)
        try:
            result = tune(cell)
        except Exception as exc:  # noqa: BLE001 - one broken cell must not sink the grid
            log(f"[grid] cell {cell.label} failed: {type(exc).__name__}: {exc}", flush=True)
            outcome.failures.append({"cell": [cell.dataset, cell.backbone, cell.method]
                                     + ([cell.ablation] if cell.ablation else []),
                                     "error": f"{type(exc).__name__}: {exc}"})
            continue
        outcome.cells.append(result)  # (tune printed its summary)
        write_outputs()
        if not result.complete and (result.trials["status"] == "interrupted").any():
            log("[grid] the sweep was interrupted; rerun with --resume to continue", flush=True)
            break

    write_outputs()
    wall = time.perf_counter() - started
    trained = trained_by_run(read_teacher_records(pool_dir), run_dir, shared_pool)
    n_trials = sum(r.trials_run for r in outcome.cells)
    log("\n" + outcome.paths["table"].read_text().rstrip() + "\n", flush=True)
    log(f"[grid] {'done' if outcome.complete else 'INCOMPLETE'}: {n_trials} trials in {len(outcome.cells)}/"
        f"{outcome.expected} cells{f' (+{len(kept)} kept from earlier invocations)' if kept else ''}, "
        f"{len(trained)} teachers in the pool, {wall:.1f}s wall", flush=True)
    log(f"[grid] wrote {outcome.paths['results']}, {outcome.paths['table']}, {run_dir / 'best'} "
        f"(per cell: the best trial's ranks .npz, result .trial.json and model .model.pt)", flush=True)
    return outcome


def _key(cell: SweepConfig) -> tuple:
    return cell.dataset, cell.backbone, cell.method, cell.ablation


def _set_aside(run_dir: Path, cells: list[SweepConfig], labels: tuple[str, ...], log=print) -> set[tuple]:
    """``--redo``: the keys of the named cells, whose Tune experiments (and seed replicates) are renamed
    NAME.redo-TIME so that the cells start over; their rows are replaced once they finish again."""
    by_label = {f"{c.dataset}/{c.backbone}/{c.method}": c for c in cells if c.ablation is None}
    unknown = [label for label in labels if label not in by_label]
    if unknown:
        raise ConfigError(f"--redo {unknown[0]}: not a cell of this grid; its cells: {', '.join(by_label)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pending = _redo_pending(run_dir)
    keys = set()
    for label in labels:
        cell = by_label[label]
        # Once per cell: the same command rerun after an interruption continues the redo instead of
        # starting it over (an earlier redo's experiment is there beside the one it moved aside).
        earlier = sorted(run_dir.glob(f"{cell.experiment_name}.redo-*"))
        if earlier and ((run_dir / cell.experiment_name).is_dir() or _key(cell) in pending):
            log(f"[grid] --redo {label}: already redone ({earlier[-1].name} holds the run before); the cell "
                f"continues as it is (to redo it again, delete {earlier[-1].name})")
            continue
        keys.add(_key(cell))
        for name in (cell.experiment_name, cell.experiment_name + REPLICATES_SUFFIX):
            if (run_dir / name).is_dir():
                aside = run_dir / f"{name}.redo-{stamp}"
                (run_dir / name).rename(aside)
                log(f"[grid] --redo {label}: moved {name} aside to {aside.name}")
        marker = run_dir / f"{cell.experiment_name}.redo-{stamp}"
        if not marker.is_dir():  # a compact copy has no experiment to move: the marker says it was redone
            marker.mkdir()
            write_atomic(marker / "REDO.txt", f"{label} was redone on {stamp}; its earlier run was only in "
                                              f"results.parquet and best/ (a compact copy).\n")
        log(f"[grid] --redo {label}: the cell runs again from scratch")
    _mark_redo(run_dir, keys, stamp)
    return keys


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _redo_pending(run_dir: Path) -> set[tuple]:
    """The main cells that summary.json says a ``--redo`` is running again (until they finish)."""
    return {(c.get("dataset"), c.get("backbone"), c.get("method"), None)
            for c in _summary(run_dir).get("cells", []) if c.get("redo") and not c.get("complete")}


def _mark_redo(run_dir: Path, keys: set[tuple], stamp: str) -> None:
    """Record in summary.json that the cells ``keys`` are not finished: a redo interrupted before its
    Tune experiment exists must not pass for the earlier, finished run on the next invocation (with or
    without --redo).  Their earlier rows stay in results.parquet until the cell finishes again."""
    summary = _summary(run_dir)
    cells = summary.get("cells", [])
    marked = [c for c in cells if (c.get("dataset"), c.get("backbone"), c.get("method"), None) in keys]
    for entry in marked:
        entry.update(complete=False, redo=stamp)
    if marked:
        write_atomic(run_dir / "summary.json", json.dumps(summary, indent=1, default=str))


def _finished_elsewhere(run_dir: Path, cells: list[SweepConfig]) -> set[tuple]:
    """The cells that summary.json records as complete but whose Tune experiment is not in ``run_dir``:
    a run directory copied (compact: results.parquet, summary.json, run.json, best/) from another
    machine.  Their rows are kept as they are; rerunning them would only repeat the same work."""
    summary = _summary(run_dir)
    recorded = {(c.get("dataset"), c.get("backbone"), c.get("method"), c.get("ablation"))
                for c in [*summary.get("cells", []), *summary.get("ablations", [])] if c.get("complete")}
    return {_key(cell) for cell in cells
            if _key(cell) in recorded and not (run_dir / cell.experiment_name).is_dir()}


def _prepare(run_dir: Path, config: GridConfig, log=print) -> None:
    """Check the run directory against resume/fresh; then create it."""
    resumable = (run_dir / "run.json").is_file()  # every invocation writes it before its first cell
    if config.resume and not resumable:
        what = "does not exist" if not run_dir.exists() else "holds no sweep run (no run.json)"
        raise ConfigError(f"--resume: {run_dir} {what}; check --storage-path, or pass --resume-or-start "
                          f"to start a run there when there is none")
    if config.resume_or_start and not resumable:
        log(f"[grid] nothing to resume in {run_dir}: starting a fresh run there")
    elif run_dir.exists() and not (config.resume or config.resume_or_start):
        if not config.fresh:
            raise ConfigError(f"{run_dir} exists: pass --resume to continue it, --fresh to start over, "
                              f"or another --storage-path")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _announce(config: GridConfig, cells: list[SweepConfig], datasets, run_dir: Path, init_s: float) -> str:
    if config.ablations:
        n_trials = sum(ABLATIONS[c.ablation].trials(c.method) for c in cells)
        return (f"[grid] {len(cells)} ablation cells ({', '.join(config.ablations)}; {n_trials} trials), run dir "
                f"{run_dir} (ray up in {init_s:.1f}s)")
    n_methods = len(cells) // max(1, len(datasets) * len(config.backbones))
    return (f"[grid] {len(cells)} cells ({len(datasets)} datasets × {len(config.backbones)} backbones × "
            f"{n_methods} methods), search={config.search}, num_samples={config.num_samples}, run dir {run_dir} "
            f"(ray up in {init_s:.1f}s)")


def _record_invocation(run_dir: Path, config: GridConfig, cells: list[SweepConfig]) -> None:
    """run.json: this invocation, and (resumed) the earlier ones under ``previous``."""
    path = run_dir / "run.json"
    previous = []
    if (config.resume or config.resume_or_start) and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        previous = list(old.pop("previous", []) or []) + ([old] if old else [])
    main = [(c.dataset, c.backbone, c.method) for c in cells if c.ablation is None]
    ablation = [(c.dataset, c.backbone, c.method, c.ablation) for c in cells if c.ablation is not None]
    entry = {"argv": config.argv, "command": config.command, "cells": main, "ablation_cells": ablation,
             "started": time.time()}
    write_atomic(path, json.dumps({**entry, "previous": previous}, indent=1))
