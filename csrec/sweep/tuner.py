"""``csrec.tune``: one (dataset, backbone, method) cell searched with Ray Tune, from a
:class:`~csrec.search.SweepConfig`.

Pipeline of one cell:

1. start or join Ray (:func:`csrec.sweep.runtime.init_ray`); load the data once in the driver
   and ``ray.put`` it (trials and teacher tasks map it instead of reading files on their node);
2. teachers: every teacher the cell can know up front is trained now, concurrently, as Ray tasks
   (``prebuild``; default: the whole paper grid; with Optuna only a teacher set every trial shares,
   see below), skipping those
   already in ``<storage_path>/teachers``;
3. soft-label stores: each distinct store of those configs is built once and put in the object
   store; the :class:`StoreRegistry` hands its ref to every trial that needs it;
4. Tune: OptunaSearch (TPE, seeded) or the paper grid, ASHA on ``valid/best_ndcg@10``,
   ``FailureConfig(max_failures)`` retries, per-epoch checkpoints; the experiment lives in
   ``<storage_path>/<dataset>-<backbone>-<method>-<search>`` and is resumed with
   ``Tuner.restore`` when it exists;
5. the trials table, the best configuration on validation (ties broken by the configuration,
   :func:`csrec.search.selection.best_row`) and its test metrics; the best trial's student is
   saved as a model file (:mod:`csrec.artifacts`) in its trial directory.

**Output.**  By default a cell prints one line per trial start and end (cell, configuration,
validation NDCG@10, epochs, time) and one summary; Ray Tune's own status tables and result boxes
only with ``verbose`` 1 or 2 (:data:`csrec.search.config.VERBOSITY`).

**Resume.**  ASHA decides from the results its rungs recorded so far; Tune does not keep them
across ``Tuner.restore``, so the sweep's scheduler keeps its rungs and decisions in the experiment
directory (:class:`ResumableASHA`): a restored sweep replays the decisions already taken and
takes the next ones from the same rungs, as the uninterrupted sweep would.

**Explicit grids and ablations.**  ``grid={"num_teachers": [1, 2, 3, 4]}`` replaces the search by a
Tune ``grid_search`` over exactly those values (the product when several parameters are given;
``search``/``num_samples`` are then ignored and the trials are labelled ``search="grid"``); every
other parameter keeps the value given as an override or its default.  All teachers of a grid are
known, so they are pre-built like the paper grid's.  ``ablation="teachers"`` labels the cell as
one of the controlled sweeps of :data:`csrec.search.ABLATIONS`: its experiment is
``<dataset>-<backbone>-<method>-ablation-<name>`` (never a main cell's) and every trial row
carries ``ablation=<name>``; ``sweeps/grid.py --ablation NAME`` runs them.

**Teachers under Optuna.**  m, p and α are sampled per trial, and CSRec-T's main teacher depends
on the continuous α, so the teachers of an Optuna trial are not all known before it starts.
Trials whose teachers are missing train them in their own process through the shared on-disk
pool; a per-teacher file lock and a re-check make sure two trials never train the same teacher
(one trains, the other waits and loads it), and a trial first trains the missing teachers nobody
else is training.  Pre-training the union of the discrete (m, p) choices (``prebuild=True``)
trains many teachers a short TPE run never samples (every m × p for CSRec-D), so it is opt-in,
except when m and p (and α for CSRec-T) are fixed: then every trial needs the same teachers and
they are pre-built by default. The paper grid is fully known and is always pre-built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import ray
import torch
from ray import tune as ray_tune
from ray.tune.search import Searcher

from csrec import artifacts
from csrec.atomic import write_atomic
from csrec.data.dataset import load_dataset
from csrec.experiment import make_config
from csrec.methods.config import SYMBOLS, ExperimentConfig, value_text
from csrec.models.base import build_backbone
from csrec.report.outputs import TRIAL_MODEL_FILE
from csrec.search.config import SweepConfig
from csrec.search.selection import best_row, seed_rows
from csrec.search.space import (
    PAPER_GRID, ablation_cell, discrete_points, grid_points, grid_product, method_params, optuna_space,
)
from csrec.sweep.runtime import Clock, init_ray, resolve_resources
from csrec.sweep.schedule import (
    ASHA_STATE_FILE, SYNC_STATE_FILE, BatchRungStopper, GridPoints, ResumableASHA, batched,
)
from csrec.sweep.stores import make_registry, prebuild_stores
from csrec.sweep.teachers import NoteFeed, TeacherReport, progress_line, read_teacher_records, train_teachers
from csrec.sweep.trial import METRIC, MODE, REPLICATE, SweepContext, drop_training_states, run_trial

OUTCOMES_FILE = "csrec_trial_outcomes.jsonl"
#: A cell's seed replicates (``seeds`` > 1) live in ``<experiment>-seeds``, which records the
#: configuration they replicate in this file.
REPLICATES_SUFFIX = "-seeds"
REPLICATES_FILE = "csrec_replicates.json"


@dataclass
class SweepResult:
    """One cell's sweep: every trial, the best configuration on validation, and its test metrics."""

    dataset: str
    backbone: str
    method: str
    search: str
    path: str
    trials: pd.DataFrame
    best_config: dict | None
    best_valid: dict
    best_test: dict
    best_trial_path: str | None
    trials_run: int
    trials_expected: int
    complete: bool
    teachers_trained: int = 0
    teacher_report: TeacherReport | None = None
    stores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    grid: dict | None = None  # the explicit grid, when the cell ran one
    ablation: str | None = None  # the ablation the cell belongs to (None: a main grid cell)
    best_model_path: str | None = None  # the best trial's student (csrec.artifacts.load reads it)

    @property
    def errors(self) -> dict[str, str]:
        failed = self.trials[self.trials["status"] == "error"] if len(self.trials) else self.trials
        return {row.trial_id: row.error for row in failed.itertuples()} if len(failed) else {}

    def record(self) -> dict:
        """The cell's entry in the run's summary.json."""
        common = {"trials_run": self.trials_run, "trials_expected": self.trials_expected, "complete": self.complete,
                  "teachers_trained": self.teachers_trained, "best_config": self.best_config,
                  "best_valid": self.best_valid, "best_test": self.best_test, "timings": self.timings,
                  "path": self.path, "best_model": self.best_model_path}
        seeded = seed_rows(self.trials) if len(self.trials) else None
        if seeded is not None:  # test metrics per seed index (0: the best search trial)
            common["seeds"] = {m: [_plain(v) for v in seeded[f"test/{m}"]] for m in ("recall@10", "ndcg@10")
                               if f"test/{m}" in seeded}
        labels = {"dataset": self.dataset, "backbone": self.backbone, "method": self.method}
        if self.ablation is None:
            return {**labels, "search": self.search, **common}
        cell = ablation_cell(self.dataset, self.backbone, self.method, self.ablation)
        return {"cell": cell, "ablation": self.ablation, **labels, "grid": self.grid, **common}

    def summary(self) -> str:
        what = self.search if self.ablation is None else f"ablation {self.ablation}"
        head = f"{self.dataset} / {self.backbone} / {self.method} ({what}): "
        counts = self.trials["status"].value_counts().to_dict() if len(self.trials) else {}
        words = {"completed": "completed", "stopped": "stopped early", "error": "failed", "interrupted": "interrupted"}
        states = ", ".join(f"{counts[k]} {w}" for k, w in words.items() if counts.get(k))
        text = head + (
            f"{self.trials_run}/{self.trials_expected} trials ({states or 'none run'}), "
            f"{self.teachers_trained} teachers trained, {self.timings.get('total_s', 0):.1f}s"
        )
        if self.best_config is not None:
            params = ", ".join(f"{k}={value_text(v)}" for k, v in self.best_config.items()) or "-"
            text += (
                f"\n  best on validation: {params}  valid NDCG@10 {self.best_valid.get('ndcg@10', math.nan):.4f}"
                f"  → test Recall@10 {self.best_test.get('recall@10', math.nan):.4f}"
                f" NDCG@10 {self.best_test.get('ndcg@10', math.nan):.4f}"
            )
        seeded = seed_rows(self.trials) if len(self.trials) else None
        if seeded is not None and "test/recall@10" in seeded:
            values = seeded["test/recall@10"].astype(float)
            text += (f"\n  over {len(values)} seeds: test Recall@10 {values.mean():.4f} ± "
                     f"{values.std(ddof=1) if len(values) > 1 else 0.0:.4f}")
        if not self.complete:
            text += "\n  INCOMPLETE: rerun with resume to finish it"
        return text


def params_text(params: dict | None) -> str:
    """A trial's searched parameters in the paper's symbols: ``β=0.412 T=2.31 m=3``."""
    shown = {k: v for k, v in (params or {}).items() if v is not None}
    if not shown:
        return "(nothing searched)"
    return " ".join(f"{SYMBOLS.get(k, k)}={value_text(v)}" for k, v in shown.items())


class _OutcomeLog(ray_tune.Callback):
    """Appends how each trial ended (complete/stopped vs error) to a file in the experiment dir.

    Tune marks interrupted trials TERMINATED too (and ``fit()`` returns normally on SIGINT), so
    this log is how the sweep tells a finished trial from an interrupted one, across restores.
    """

    def __init__(self, path: str):
        self.path = path

    def _write(self, trial, event: str) -> None:
        final = bool((trial.last_result or {}).get("final"))
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"trial_id": trial.trial_id, "event": event, "final": final}) + "\n")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trial, "complete")
        drop_training_states(trial.trial_id, getattr(trial, "path", None))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trial, "error")
        drop_training_states(trial.trial_id, getattr(trial, "path", None))


class _TrialLines(ray_tune.Callback):
    """One line in the driver's output when a trial starts, ends, fails or is retried; and, for a
    trial that runs long (real data), a progress line at most every ``every_s`` seconds."""

    def __init__(self, cell: str, epochs: int, every_s: float = 120.0, poll_s: float = 5.0):
        self.cell = cell
        self.epochs = epochs
        self.every_s = every_s
        self.poll_s = poll_s
        self._last: dict[str, float] = {}
        self._feed = NoteFeed()
        self._polled = 0.0

    def on_step_end(self, iteration, trials, **info):
        """Print the teacher progress notes of this cell's trials (csrec.sweep.teachers.TeacherProgress)."""
        if self._feed.pending is not None or time.monotonic() - self._polled >= self.poll_s:
            self._print_notes(trials)

    def on_experiment_end(self, trials, **info):
        for _ in range(2):  # an earlier request's answer, then the notes of the last seconds
            self._print_notes(trials, wait_s=5.0)

    def _print_notes(self, trials, wait_s: float = 0.0) -> None:
        """Ask the driver's registry for new notes, or print the answer to an earlier request once it
        has come: the Tune loop never waits on the registry (except ``wait_s`` at the end)."""
        if not ray.is_initialized():  # a callback outside a sweep (tests)
            return
        if self._feed.pending is None:
            self._polled = time.monotonic()
        notes = self._feed.fetch(store_registry(), wait_s)
        mine = {t.trial_id: t for t in trials}
        for note in notes:
            trial = mine.get(note.get("who"))
            if trial is not None:
                self._print(trial, progress_line(note))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._print_notes(trials)  # a trial's teachers before its student's epochs
        now = time.monotonic()
        last = self._last.setdefault(trial.trial_id, now)
        if result.get("final") or now - last < self.every_s:
            return
        self._last[trial.trial_id] = now
        value = result.get(METRIC)
        self._print(trial, f"epoch {result.get('epoch', '–')}/{self.epochs}  valid NDCG@10 best so far "
                           f"{'–' if value is None else f'{value:.4f}'} (epoch {result.get('best_epoch', '–')}), "
                           f"{result.get('time_total_s', 0.0):.0f}s{_memory(result)}")

    def _print(self, trial, text: str) -> None:
        print(f"  {self.cell}  trial {trial.trial_id}  {text}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(trial, f"started  {params_text(trial.config)}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._print(trial, f"failed, retrying: {_error_line(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print_notes(trials)
        result = trial.last_result or {}
        final = bool(result.get("final"))
        epochs = result.get("epochs_run") if final else result.get("epoch")
        value = result.get(METRIC)
        metric = "–" if value is None else f"{value:.4f}"
        what = "done   " if final else "stopped early"
        self._print(trial, f"{what}  valid NDCG@10 {metric} (best epoch {result.get('best_epoch', '–')}), "
                           f"{epochs if epochs is not None else '–'}/{self.epochs} epochs, "
                           f"{result.get('time_total_s', 0.0):.1f}s{_memory(result)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trial, f"FAILED: {_error_line(trial)}")


def _memory(result: dict) -> str:
    peak = result.get("peak_rss_mib")
    return "" if peak is None else f", peak RSS {peak:,.0f} MiB"


def _error_line(trial) -> str:
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - the error file may be gone; the line is informative only
        error = None
    if error is None:
        return "see the trial's error.txt"
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


_REGISTRIES: dict[str, object] = {}


def store_registry():
    """One store registry per Ray job (driver), shared by every cell the driver sweeps."""
    job = ray.get_runtime_context().get_job_id()
    if job not in _REGISTRIES:
        _REGISTRIES.clear()
        _REGISTRIES[job] = make_registry()
    return _REGISTRIES[job]


def registry_stats() -> dict:
    """Build/hit log of this driver's store registry (tests and reports)."""
    return ray.get(store_registry().stats.remote())


def store_refs() -> dict:
    """{fingerprint: ObjectRef} of every soft-label store this driver's sweeps put in the object store
    (e.g. for ``ray.experimental.get_object_locations``: sizes and the nodes holding copies)."""
    return ray.get(store_registry().refs.remote())


def base_config(dataset: str, backbone: str, method: str, *, epochs=None, seed=None, model=None, **overrides) -> ExperimentConfig:
    """The cell's ExperimentConfig before the search sets the method parameters."""
    kwargs = dict(overrides)
    if epochs is not None:
        kwargs["epochs"] = epochs
    if seed is not None:
        kwargs["seed"] = seed
    kwargs.setdefault("progress", False)
    config = make_config(dataset, backbone, method, model=model, **kwargs)
    if config.data.cache_dir is None and os.environ.get("CSREC_CACHE_DIR"):
        # Workers of a cluster started elsewhere do not inherit this driver's environment.
        config.data = dataclasses.replace(config.data, cache_dir=os.environ["CSREC_CACHE_DIR"])
    return config


def cell_base_config(config: SweepConfig) -> ExperimentConfig:
    return base_config(config.dataset, config.backbone, config.method, epochs=config.epochs, seed=config.seed,
                       model=config.model, protocol=config.protocol, **config.overrides)


def known_configs(base: ExperimentConfig, search: str, prebuild, fixed=(), grid: dict | None = None,
                  shared_set: bool = True) -> list[ExperimentConfig]:
    """The configs whose teachers (and stores) can be built before the trials start.

    ``grid``: an explicit grid (every point is known, so ``prebuild="auto"`` builds them all).
    ``prebuild="auto"`` also builds an Optuna cell's teachers when every parameter that decides
    them is fixed (m and p; α too for CSRec-T): one teacher set, needed by every trial, trained
    concurrently up front instead of one after another inside the first trial while the others
    wait for its store (``shared_set=False`` leaves those to the cell).
    """
    method = base.method.name
    if prebuild == "auto":
        shared = len(discrete_points(method, fixed)) == 1 and (method != "csrec-t" or "alpha" in fixed)
        prebuild = search == "paper-grid" or bool(grid) or (shared_set and shared)
    if not prebuild:
        return []
    ctx = SweepContext(base=base, pool_dir="", sweep="")
    if grid:
        points = grid_product(grid)
    else:
        points = grid_points(method, fixed) if search == "paper-grid" else discrete_points(method, fixed)
    return [ctx.config_for(p) for p in points]


def cell_known_configs(config: SweepConfig, shared_set: bool = True) -> list[ExperimentConfig]:
    """The configs of a cell whose teachers are known before its trials start (see :func:`known_configs`)."""
    return known_configs(cell_base_config(config), config.search, config.prebuild, config.fixed, config.grid,
                         shared_set=shared_set)


def tune(config: SweepConfig | str = "synthetic", backbone: str | None = None, method: str | None = None,
         **options) -> SweepResult:
    """Search one (dataset, backbone, method) cell; see the module docstring and :class:`SweepConfig`.

    ``tune(SweepConfig(...))``, or as keywords: ``tune("lastfm", "gru4rec", "csrec-m", num_samples=12,
    storage_path="runs/tune", data_dir="data")``, where any keyword that is not a :class:`SweepConfig`
    field is a DataConfig / TrainConfig / MethodConfig field (an override).
    """
    if not isinstance(config, SweepConfig):
        names = {f.name for f in dataclasses.fields(SweepConfig)} - {"overrides"}
        fields = {k: v for k, v in options.items() if k in names}
        overrides = {k: v for k, v in options.items() if k not in names}
        config = SweepConfig(dataset=config, backbone=backbone or SweepConfig.backbone,
                             method=method or SweepConfig.method, overrides=overrides, **fields)
    elif backbone is not None or method is not None or options:
        raise TypeError("tune(config) takes a SweepConfig alone")
    return _tune(config)


def _tune(config: SweepConfig) -> SweepResult:
    clock = Clock()
    total_started = time.perf_counter()
    with clock.time("ray_init_s"):
        init_ray(address=config.address, num_cpus=config.num_cpus)
    resources = resolve_resources(config.resources)
    base = cell_base_config(config)
    storage = Path(config.storage_path).resolve()
    pool_dir, shared_pool = teacher_pool_dir(storage, config.teacher_pool)
    exp_path = storage / config.experiment_name
    label = teacher_label(storage, config.experiment_name, shared_pool)
    with clock.time("data_s"):
        data = load_dataset(base.data)
        data_ref = ray.put(data)
    registry = store_registry()

    # Teachers and stores known before the trials start.
    teacher_report, stores = None, {}
    known = cell_known_configs(config)
    if known and _nothing_left_to_train(config, exp_path):
        # Its students are trained: teachers whose pool key changed since (a fix to how they train)
        # would otherwise be trained again for nothing; --redo runs such a cell anew.
        print(f"  {_cell_label(config)}  every trial finished in an earlier invocation: its teachers and soft "
              f"labels are not prepared again", flush=True)
        known = []
    if known:
        with clock.time("teachers_s"):
            teacher_report = train_teachers(known, pool_dir, resources, sweep=label, storage_path=storage,
                                            data_refs={data.fingerprint: data_ref}, notes=registry)
        # CSRec-T's main teacher depends on α: known only when α is (paper grid, explicit grid).
        buildable = [c for c in known if not (c.method.name == "csrec-t" and config.search == "optuna"
                                              and "alpha" not in config.fixed)]
        with clock.time("stores_s"):
            stores = prebuild_stores(buildable, data, data_ref, registry, pool_dir,
                                     num_cpus=resources.teacher_cpus, num_gpus=resources.teacher_gpus)

    ctx = SweepContext(base=base, pool_dir=pool_dir, sweep=label, trial_cpus=resources.trial_cpus, fault=config.fault,
                       protocol=config.protocol)
    trial_resources = {"cpu": resources.trial_cpus}
    if resources.trial_gpus:
        trial_resources["gpu"] = resources.trial_gpus
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(run_trial, ctx=ctx, data=data_ref, registry=registry), trial_resources)
    with clock.time("tune_s"), _tune_output(config.verbose):
        fitted = _tuner(config, trainable, base, resources, storage, exp_path).fit()

    labels = dict(dataset=config.dataset, backbone=config.backbone, method=config.method, search=config.search)
    if config.ablation is not None:
        labels["ablation"] = config.ablation
    frame = trials_frame(fitted, exp_path, **labels)
    result = _result(config, frame, str(exp_path), teacher_report=teacher_report, stores=stores)
    # The seeds replicate the configuration chosen over the whole search: never that of a search
    # stopped part-way (Tune's fit returns normally on Ctrl-C), whose choice may still change.
    if config.seeds > 1 and result.best_config is not None and config.grid is None and result.complete:
        with clock.time("seeds_s"):
            result = _with_replicates(config, result, trainable, base, resources, storage, labels)
    records = [r for r in read_teacher_records(pool_dir) if r.get("sweep") == label and r.get("trained")]
    clock.sections["total_s"] = time.perf_counter() - total_started
    result.teachers_trained, result.timings = len(records), dict(clock.sections)
    if result.best_trial_path is not None:
        result.best_model_path = save_trial_model(result.best_trial_path, base, data)
    print(f"[csrec.sweep] {result.summary()}", flush=True)
    return result


def _with_replicates(config: SweepConfig, result: SweepResult, trainable, base: ExperimentConfig, resources,
                     storage: Path, labels: dict) -> SweepResult:
    """``result`` with its seed replicates: the configuration chosen on validation trained again under
    seed indices 1 … seeds − 1 (one Tune grid, ``<experiment>-seeds``, resumed like the cell)."""
    exp_path = storage / f"{config.experiment_name}{REPLICATES_SUFFIX}"
    params = dict(result.best_config or {})
    record = exp_path / REPLICATES_FILE
    recorded = json.loads(record.read_text()).get("params") if record.is_file() else None
    unrecorded = recorded is None and ray_tune.Tuner.can_restore(str(exp_path))
    if unrecorded or (recorded is not None and recorded != json.loads(json.dumps(params))):
        # Seeds of a configuration no longer chosen (e.g. started by an older csrec before its search
        # had finished), or of one nobody recorded: kept aside, not deleted, never continued under
        # another configuration.
        stale = exp_path.with_name(f"{exp_path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        exp_path.rename(stale)
        held = "seeds of no recorded configuration" if unrecorded else f"the seeds of {recorded}"
        print(f"  {_cell_label(config)}/seeds  {exp_path.name} held {held}, not of the configuration chosen "
              f"now; moved to {stale.name}", flush=True)
        if config.resume is True:  # nothing left to resume: these seeds start afresh
            config = dataclasses.replace(config, resume="auto")
    with _tune_output(config.verbose):
        tuner = _tuner(config, trainable, base, resources, storage, exp_path, replicate_of=params)
        # Recorded before the seeds start, so an interrupted run's seeds stay tied to their configuration.
        write_atomic(record, json.dumps({"params": params}, sort_keys=True))
        fitted = tuner.fit()
    frame = trials_frame(fitted, exp_path, **labels)
    replicate = pd.to_numeric(frame.pop(f"config/{REPLICATE}"), errors="coerce")
    # A trial that never started may carry no configuration: it is simply not done (see ``done``).
    frame = frame[replicate.notna()].assign(**{REPLICATE: replicate[replicate.notna()].astype(int)})
    done = bool((frame["status"] == "completed").all()) and len(frame) == config.seeds - 1
    trials = pd.concat([result.trials.assign(**{REPLICATE: None}), frame], ignore_index=True)
    return dataclasses.replace(result, trials=trials, trials_run=result.trials_run + len(frame),
                               trials_expected=result.trials_expected + config.seeds - 1,
                               complete=result.complete and done)


def save_trial_model(trial_path: str | os.PathLike, base: ExperimentConfig, data) -> str | None:
    """The trial's best-epoch student as a model file (``TRIAL_MODEL_FILE`` in its trial directory),
    for :func:`csrec.artifacts.load`; returns its path (None, with a line saying why, if it cannot).

    Written by the driver, once per cell, from the trial's weights (``student.pt``) and parameters
    (``trial_result.json``): the model file records the catalogue's raw item ids, which takes
    reading the data source again, so the trials do not each write one.
    """
    trial_dir = Path(trial_path)
    target = trial_dir / TRIAL_MODEL_FILE
    if target.is_file():  # a trial's weights never change once it finished
        return str(target)
    try:
        params = json.loads((trial_dir / "trial_result.json").read_text())["params"]
        config = SweepContext(base=base, pool_dir="", sweep="").config_for(params)
        model = build_backbone(config.backbone, data.n_items, data.max_len, config.resolved_model())
        model.load_state_dict(torch.load(trial_dir / "student.pt", map_location="cpu", weights_only=True))
        return str(artifacts.save(target, model, data, config.data))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"[csrec.sweep] the best trial's model was not saved ({type(exc).__name__}: {exc})", flush=True)
        return None


@contextlib.contextmanager
def _tune_output(verbose: int):
    """What Ray Tune prints while a cell runs: at ``verbose`` 0 nothing (the sweep's own lines say
    what happens), else its status tables.  Its TensorBoard logger (and the hint to run
    ``tensorboard``) only when tensorboard is installed.

    Also the Ctrl-C handlers: Tuner.fit installs its own for SIGINT and SIGUSR1 and leaves them
    installed when it returns, so the first Ctrl-C in a later cell's teacher phase only printed
    Tune's "ending Ray Tune run" and the teachers went on; the handlers are restored afterwards."""
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # the CSV/JSON loggers are passed explicitly
    if verbose == 0:
        env["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter prints nothing at verbosity 0
    saved = {k: os.environ.get(k) for k in env}
    optuna_log = None
    if verbose == 0 and importlib.util.find_spec("optuna") is not None:
        import optuna

        optuna_log = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory" per cell
    os.environ.update(env)
    names = [n for n in ("SIGINT", "SIGUSR1") if hasattr(signal, n)]
    handlers = ({n: signal.getsignal(getattr(signal, n)) for n in names}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        yield
    finally:
        for name, handler in handlers.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if optuna_log is not None:
            import optuna

            optuna.logging.set_verbosity(optuna_log)


def _loggers() -> list:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    loggers = [CSVLoggerCallback(), JsonLoggerCallback()]
    if importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("tensorboardX") is not None:
        loggers.append(TBXLoggerCallback())
    return loggers


def _result(config: SweepConfig, frame: pd.DataFrame, path: str, **extra) -> SweepResult:
    best = select_best(frame)
    chosen = list(config.grid) if config.grid is not None else list(method_params(config.method, config.fixed))
    finished = frame["status"].isin(["completed", "stopped", "error"]).all() if len(frame) else False
    return SweepResult(
        dataset=config.dataset, backbone=config.backbone, method=config.method, search=config.search, path=path,
        trials=frame,
        best_config=None if best is None else {k: _plain(best[f"config/{k}"]) for k in chosen if f"config/{k}" in best},
        best_valid=_prefixed(best, "valid/"), best_test=_prefixed(best, "test/"),
        best_trial_path=None if best is None else best["trial_path"],
        trials_run=len(frame), trials_expected=config.expected_trials,
        complete=bool(finished and len(frame) >= config.expected_trials),
        grid=config.grid, ablation=config.ablation, **extra,
    )


def teacher_pool_dir(storage: Path, teacher_pool: str | os.PathLike | None) -> tuple[str, bool]:
    """(the teacher pool's directory, whether it lies outside the run directory and may be shared).

    Default: ``<storage>/teachers``.  A pool given elsewhere lets several run directories (say an
    Optuna sweep and the paper grid of the same cells) train each distinct teacher once between them.
    """
    own = storage / "teachers"
    if teacher_pool is None:
        return str(own), False
    pool = Path(teacher_pool).expanduser().resolve()
    return str(pool), pool != own


def teacher_label(storage: Path, name: str, shared_pool: bool) -> str:
    """The ``sweep`` label of the teachers a cell (or a run's pre-build step) trains.

    A pool shared by several run directories tells their teachers apart by the run in the label.
    """
    return f"{Path(storage).resolve()}:{name}" if shared_pool else name


def trained_by_run(records: list[dict], storage: Path, shared_pool: bool) -> list[dict]:
    """The records of the teachers that the run in ``storage`` trained itself (its own pool: all)."""
    prefix = teacher_label(storage, "", shared_pool)
    return [r for r in records if r.get("trained") and str(r.get("sweep", "")).startswith(prefix)]


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _prefixed(row, prefix: str) -> dict:
    if row is None:
        return {}
    return {k[len(prefix):]: float(v) for k, v in row.items() if k.startswith(prefix) and pd.notna(v)}


class _TuneNoiseFilter(logging.Filter):
    """Drops two Ray Tune warnings that mislead a csrec user:

    * "Failed to fetch metrics" when every trial it lists simply has no result file yet: a trial
      that was pending when the sweep stopped has a directory and nothing in it, which is normal
      and would otherwise print as a ``FileNotFoundError`` per trial (other failures still show);
    * after an interruption, "Resume experiment with: Tuner.restore(...)": a sweep resumes with
      ``resume=True`` / ``--resume``, which csrec says itself.
    """

    FETCH = "Failed to fetch metrics for "
    NO_RESULTS = "were not found at"
    INTERRUPTED = "Experiment has been interrupted, but the most recent state was saved."

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self.INTERRUPTED):
            return False
        if not message.startswith(self.FETCH):
            return True
        listed = [line for line in message.splitlines()[1:] if line.startswith("- ")]
        return not listed or not all(self.NO_RESULTS in line for line in listed)


_TUNE_NOISE_FILTER = _TuneNoiseFilter()


def _quiet_tune_noise() -> None:
    """Installs :class:`_TuneNoiseFilter` on the loggers that emit those warnings (once)."""
    for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.tune"):
        logging.getLogger(name).addFilter(_TUNE_NOISE_FILTER)


def _tuner(config: SweepConfig, trainable, base: ExperimentConfig, resources, storage: Path, exp_path: Path,
           replicate_of: dict | None = None):
    """A new Tuner for the cell (``replicate_of``: for the seed replicates of that configuration),
    or the restored one (``resume``)."""
    _quiet_tune_noise()
    restorable = ray_tune.Tuner.can_restore(str(exp_path))
    label = _cell_label(config) + ("/seeds" if replicate_of is not None else "")
    if config.resume is True and not restorable:
        raise FileNotFoundError(f"nothing to resume at {exp_path} (no Tune experiment there); check storage_path, "
                                f"or pass resume='auto' to start it when there is none")
    if config.resume is False and exp_path.exists():
        raise FileExistsError(f"{exp_path} exists: resume it (resume=True / --resume) or choose another storage path")
    if restorable and config.resume:
        outcomes = _read_outcomes(exp_path)
        done = sum(1 for e in outcomes.values() if e.get("event") == "complete")
        print(f"  {label}  resuming {exp_path.name}: {done} finished trial(s) kept", flush=True)
        tuner = ray_tune.Tuner.restore(str(exp_path), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
        if run_config is not None:
            run_config.verbose = config.verbose  # this invocation's verbosity, not the first one's
            from ray.tune.logger import CSVLoggerCallback

            # csrec's own callbacks come new from this version: the pickled ones may come from an
            # older csrec (missing attributes added since) or name a run directory since moved.
            callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, (_OutcomeLog, _TrialLines))]
            if not any(isinstance(c, CSVLoggerCallback) for c in callbacks):  # a run started before they were explicit
                callbacks += _loggers()
            run_config.callbacks = _own_callbacks(exp_path, label, base.train.epochs) + callbacks
        return tuner
    if replicate_of is None:
        search_alg, param_space, num_samples = _search(config, base.train.seed, resources.max_concurrent_trials)
        scheduler = _scheduler(config, base.train.epochs, exp_path)
    else:  # every seed runs to its own early stopping: a replicate is a measurement, not a candidate
        search_alg, scheduler, num_samples = None, None, 1
        param_space = {**replicate_of, REPLICATE: ray_tune.grid_search(list(range(1, config.seeds)))}
    exp_path.mkdir(parents=True, exist_ok=True)
    return ray_tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=ray_tune.TuneConfig(
            metric=METRIC, mode=MODE, search_alg=search_alg,
            scheduler=scheduler, num_samples=num_samples,
            # a batched searcher carries the concurrency limit itself (Ray refuses both)
            max_concurrent_trials=None if isinstance(search_alg, Searcher) else resources.max_concurrent_trials,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=ray_tune.RunConfig(
            name=exp_path.name, storage_path=str(storage), verbose=config.verbose,
            failure_config=ray_tune.FailureConfig(max_failures=config.max_failures),
            # num_to_keep=1: Tune snapshots the experiment state after every trial checkpoint, so a
            # trial's final report is on disk before a kill can make a restore rerun it.
            checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=1),
            callbacks=[*_own_callbacks(exp_path, label, base.train.epochs), *_loggers()],
        ),
    )


def _own_callbacks(exp_path: Path, label: str, epochs: int) -> list:
    return [_OutcomeLog(str(exp_path / OUTCOMES_FILE)), _TrialLines(label, epochs)]


def _cell_label(config: SweepConfig) -> str:
    return f"{config.dataset}/{config.backbone}/{config.method}" + (f"/{config.ablation}" if config.ablation else "")


def _scheduler(config: SweepConfig, epochs: int, exp_path: Path):
    """Early stopping on the validation metric (None for a controlled grid, or a single epoch):
    :class:`BatchRungStopper` (``schedule="sync"``) or :class:`ResumableASHA` (``"async"``)."""
    if not config.asha or epochs <= 1:
        return None
    grace = config.grace_period or max(1, epochs // 4)
    if config.schedule == "sync":
        return BatchRungStopper(str(exp_path / SYNC_STATE_FILE), batch_size=config.batch_size, grace_period=grace,
                                max_t=epochs + 1, reduction_factor=3)  # + 1: the final test report
    return ResumableASHA(
        str(exp_path / ASHA_STATE_FILE), time_attr="training_iteration", max_t=epochs + 1,
        grace_period=grace, reduction_factor=3,
    )


def _search(config: SweepConfig, seed: int, max_concurrent: int | None = None) -> tuple[object, dict, int]:
    """(search algorithm, param_space, num_samples) of the cell's search.

    ``schedule="sync"``: the searcher (Optuna, or the paper grid's points in a fixed order) suggests
    batches of ``batch_size`` and learns a batch's results once all of them have finished (see
    :mod:`csrec.sweep.schedule`).  An explicit grid without early stopping needs no batches: its
    trials are independent of each other.
    """
    if config.grid is not None:
        return None, {k: ray_tune.grid_search(list(v)) for k, v in config.grid.items()}, 1
    names = method_params(config.method, config.fixed)
    if not names:
        return None, {}, 1
    if config.search == "paper-grid":
        if config.schedule == "sync":
            points = grid_points(config.method, config.fixed)
            searcher = GridPoints(points, metric=METRIC, mode=MODE)
            return batched(searcher, config.batch_size, max_concurrent), {}, len(points)
        # a grid_search per parameter with several values, constants otherwise
        space = {n: ray_tune.grid_search(list(PAPER_GRID[n])) if len(PAPER_GRID[n]) > 1 else PAPER_GRID[n][0]
                 for n in names}
        return None, space, 1
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    n_expected = config.expected_trials
    search_alg = OptunaSearch(
        space=optuna_space(config.method, config.fixed), metric=METRIC, mode=MODE,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, n_expected // 3))),
    )
    if config.schedule == "sync":
        search_alg = batched(search_alg, config.batch_size, max_concurrent)
    return search_alg, {}, n_expected


# --- results ------------------------------------------------------------------------------------------
_SKIP = {"config", "checkpoint_dir_name", "should_checkpoint"}


def _nothing_left_to_train(config: SweepConfig, exp_path: Path) -> bool:
    """Whether resuming the cell trains no trial: every expected trial (and seed replicate) of its
    restorable experiment completed in an earlier invocation."""
    if not config.resume or not ray_tune.Tuner.can_restore(str(exp_path)):
        return False

    def completed(path: Path) -> int:
        return sum(1 for e in _read_outcomes(path).values() if e.get("event") == "complete")

    if completed(exp_path) < config.expected_trials:
        return False
    return config.seeds <= 1 or completed(exp_path.with_name(exp_path.name + REPLICATES_SUFFIX)) >= config.seeds - 1


def _read_outcomes(exp_path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    path = exp_path / OUTCOMES_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[entry["trial_id"]] = entry  # the latest event wins (a resumed trial may end twice)
    return out


def trials_frame(grid, exp_path: Path, **labels) -> pd.DataFrame:
    """One row per trial: labels, ``config/<param>``, status, error, every last-reported metric.

    status: ``completed`` (reached its final test report), ``stopped`` (stopped early by the schedule),
    ``error`` (kept failing after its retries), ``interrupted`` (the driver stopped first).
    """
    outcomes = _read_outcomes(Path(exp_path))
    rows = []
    for result in grid:
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or Path(result.path).name.replace("trial_", "")
        row = dict(labels)
        row["trial_id"] = trial_id
        row.update({f"config/{k}": v for k, v in (result.config or {}).items()})
        event = outcomes.get(trial_id, {})
        if metrics.get("final"):
            status = "completed"
        elif result.error is not None or event.get("event") == "error":
            status = "error"
        elif event.get("event") == "complete":
            status = "stopped"
        else:
            status = "interrupted"
        row["status"] = status
        row["error"] = None if result.error is None else f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:300]}"
        for key, value in metrics.items():
            if key in _SKIP or key.startswith("config/"):
                continue
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[key] = value
        row["trial_path"] = result.path
        rows.append(row)
    return pd.DataFrame(rows)


def select_best(frame: pd.DataFrame):
    """The completed trial with the best validation NDCG@10 (never looks at test metrics); ties go to
    the smallest configuration in canonical order (:func:`csrec.search.selection.best_row`), so the
    row order (which a restore changes) never decides."""
    if not len(frame) or METRIC not in frame:
        return None
    return best_row(frame[frame["status"] == "completed"], METRIC)
