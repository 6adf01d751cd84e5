"""What a sweep runs, as typed data: one cell (:class:`SweepConfig`), a run directory's grid of cells
(:class:`GridConfig`), the resources they ask for, and the ``sweeps/grid.py`` command line that
builds a :class:`GridConfig`.  No Ray: the report reads a run's recorded command line with the
same parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass, field, fields

from csrec.cli import parse_key_values
from csrec.data.dataset import DataConfig, dataset_names
from csrec.data.synthetic import SyntheticConfig
from csrec.errors import ConfigError
from csrec.experiment.protocol import PROTOCOLS
from csrec.methods.config import METHODS
from csrec.models import backbone_class, backbone_names, build_backbone, make_backbone_config
from csrec.search.space import (
    ABLATIONS, BATCH_SIZE, PARAMS, SCHEDULES, SEARCHES, ablation_experiment, check_grid, expected_trials, grid_size, parse_ablations,
)

#: ``sweeps/grid.py --smoke``: tiny synthetic data, two backbones, 2 Optuna trials of 2 epochs.
SMOKE_SYNTHETIC = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)
SMOKE = dict(datasets=("synthetic",), backbones=("gru4rec", "sasrec"), num_samples=2, epochs=2,
             storage_path="runs/sweep-smoke")
#: Options of a run's command line that a later invocation on the same run directory must repeat
#: (same data, same training budget).
CARRIED_OPTIONS = ("--data-dir", "--epochs", "--patience", "--seed")
#: ``verbose`` of a sweep: what it prints besides its own lines (one per trial start and end, one
#: summary per cell, the run's table at the end).
VERBOSITY = {0: "nothing more", 1: "Ray Tune's status tables", 2: "Ray Tune's status tables and every trial result"}


@dataclass
class Resources:
    """What one trial and one teacher may use.  ``None`` GPUs: 1 when the cluster has GPUs, else 0.

    ``teacher_workers > 1`` trains each pre-trained teacher data-parallel with a TorchTrainer
    (about 20 s of start-up each on a small box); 1 (default) trains it as a plain Ray task.
    """

    trial_cpus: float = 1.0
    trial_gpus: float | None = None
    teacher_cpus: float = 1.0
    teacher_gpus: float | None = None
    teacher_workers: int = 1
    max_concurrent_trials: int | None = None

    @classmethod
    def from_any(cls, value: "Resources | dict | None") -> "Resources":
        if value is None:
            return cls()
        if isinstance(value, Resources):
            return value
        aliases = {"cpu": "trial_cpus", "gpu": "trial_gpus", "cpus": "trial_cpus", "gpus": "trial_gpus"}
        known = {f.name for f in fields(cls)}
        out = {}
        for key, val in dict(value).items():
            name = aliases.get(key.lower(), key)
            if name not in known:
                raise ValueError(f"unknown resource {key!r}; valid: cpu, gpu, {', '.join(sorted(known))}")
            out[name] = val
        return cls(**out)

    def resolved(self, cluster_gpus: float) -> "Resources":
        """Unset GPU counts filled in for a cluster with ``cluster_gpus`` GPUs."""
        default_gpu = 1.0 if cluster_gpus > 0 else 0.0
        return dataclasses.replace(
            self, trial_gpus=default_gpu if self.trial_gpus is None else self.trial_gpus,
            teacher_gpus=default_gpu if self.teacher_gpus is None else self.teacher_gpus,
        )


@dataclass
class SweepConfig:
    """One (dataset, backbone, method) cell searched with Ray Tune (see :func:`csrec.sweep.tune`).

    ``overrides``: any DataConfig / TrainConfig / MethodConfig field; a searched parameter given
    here (``num_teachers=2``) is fixed and leaves the search space.  ``grid``: ``{param:
    [values]}``, a grid search over exactly those values instead of ``search``.  ``ablation``: the
    ablation the cell belongs to.  ``resume``: True restores the experiment (error if there is
    none), False refuses an existing one, "auto" restores when it exists.  ``prebuild``: train the
    teachers known before the trials start ("auto": the paper grid's, explicit grids', and an Optuna
    cell's when m, p and, for CSRec-T, α are fixed).
    ``verbose``: what Ray Tune prints besides the sweep's own lines (:data:`VERBOSITY`).
    ``schedule``: ``"sync"`` (default) suggests and early-stops trials in batches of ``batch_size``
    with no decision that depends on timing, so the same config gives the same trials at any
    concurrency; ``"async"`` is Ray Tune's ASHA (see :mod:`csrec.sweep.schedule`).  ``seeds`` > 1:
    the configuration chosen on validation is trained again under seed indices 1 … seeds − 1
    (:meth:`ExperimentConfig.replicate`: the student's seed and its teachers' seeds shift), so the
    tables can show mean ± std over seeds and test across them.  ``protocol``: ``"authors"`` presets
    the authors' training choices for every trial (:mod:`csrec.experiment.protocol`).
    """

    dataset: str = "synthetic"
    backbone: str = "gru4rec"
    method: str = "csrec-m"
    search: str = "optuna"
    num_samples: int = 12
    schedule: str = "sync"
    batch_size: int = BATCH_SIZE
    seeds: int = 1
    protocol: str = "csrec"
    storage_path: str = "runs/sweep"
    epochs: int | None = None
    seed: int | None = None
    overrides: dict = field(default_factory=dict)
    model: dict | None = None
    grid: dict | None = None
    ablation: str | None = None
    name: str | None = None
    teacher_pool: str | None = None
    resources: Resources = field(default_factory=Resources)
    resume: bool | str = "auto"
    max_failures: int = 1
    asha: bool = True
    grace_period: int | None = None
    prebuild: bool | str = "auto"
    address: str | None = None
    num_cpus: int | None = None
    verbose: int = 0  # see VERBOSITY
    fault: object | None = None  # csrec.sweep.FailWhen (or a list): fault injection for tests

    def __post_init__(self) -> None:
        self.resources = Resources.from_any(self.resources)
        if self.grid is not None:
            self.grid = check_grid(self.grid, self.fixed)
            self.search = "grid"
        elif self.search not in SEARCHES:
            raise ValueError(f"unknown search {self.search!r}; valid: {', '.join(SEARCHES)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        _check_sweep_options(self)

    @property
    def fixed(self) -> tuple[str, ...]:
        """The method parameters given a value: not searched."""
        return tuple(p for p in PARAMS if p in self.overrides)

    @property
    def expected_trials(self) -> int:
        if self.grid is not None:
            return grid_size(self.grid)
        return expected_trials(self.method, self.search, self.num_samples, self.fixed)

    @property
    def experiment_name(self) -> str:
        """The Tune experiment's directory: main cells, ablation cells and other explicit grids never collide."""
        if self.name:
            return self.name
        if self.ablation is not None:
            return ablation_experiment(self.dataset, self.backbone, self.method, self.ablation)
        if self.grid is not None:
            digest = hashlib.sha256(json.dumps(self.grid, sort_keys=True, default=str).encode()).hexdigest()[:8]
            return f"{self.dataset}-{self.backbone}-{self.method}-grid-{digest}"
        return f"{self.dataset}-{self.backbone}-{self.method}-{self.search}"

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.backbone} / {self.method}" + (
            f" / ablation {self.ablation}" if self.ablation else "")


@dataclass
class GridConfig:
    """A run directory's sweep: the dataset × backbone × method grid, or ablation cells.

    ``methods`` None: all five (an ablation then keeps all of its own methods).  ``ablations``:
    run the controlled sweeps of the sensitivity figures instead of the main grid.  ``overrides``:
    any DataConfig / TrainConfig / MethodConfig field for every cell (``--set`` and ``--smoke``'s data).
    ``model``: backbone hyperparameters (``--model``), backbone → {field: value}; the key ``"*"``
    applies to every backbone of the grid (each must have the field).
    ``resume``: continue the run in ``storage_path`` (a ConfigError when there is none);
    ``resume_or_start``: continue it, or start one there; ``fresh``: delete it first.
    ``redo``: cells ("dataset/backbone/method") of a resumed run to run again from scratch, for
    results that a since-fixed csrec produced; their Tune experiments are moved aside, not deleted.
    """

    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...] | None = None
    search: str = "optuna"
    num_samples: int = 12
    schedule: str = "sync"
    batch_size: int = BATCH_SIZE
    seeds: int = 1
    protocol: str = "csrec"
    ablations: tuple[str, ...] = ()
    storage_path: str = "runs/sweep"
    teacher_pool: str | None = None
    resume: bool = False
    resume_or_start: bool = False
    fresh: bool = False
    redo: tuple[str, ...] = ()
    epochs: int | None = None
    seed: int | None = None
    grace_period: int | None = None
    overrides: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 1
    address: str | None = None
    num_cpus: int | None = None
    verbose: int = 0  # see VERBOSITY
    argv: list[str] = field(default_factory=list)  # the command line this config came from (recorded)

    def __post_init__(self) -> None:
        self.resources = Resources.from_any(self.resources)
        if self.resume and self.resume_or_start:
            raise ConfigError("--resume and --resume-or-start exclude each other")
        if self.fresh and (self.resume or self.resume_or_start):
            raise ConfigError("--fresh deletes the run directory: it cannot be combined with --resume")
        if self.redo and not (self.resume or self.resume_or_start):
            raise ConfigError("--redo runs cells of an existing run again: pass --resume or --resume-or-start too")
        for label in self.redo:
            if len(label.split("/")) != 3:
                raise ConfigError(f"--redo {label!r}: give cells as DATASET/BACKBONE/METHOD, e.g. yelp/gru4rec/csrec-t")
        if self.verbose not in VERBOSITY:
            raise ConfigError(f"unknown verbosity {self.verbose!r}; valid: {', '.join(map(str, VERBOSITY))}")
        if self.search not in SEARCHES:
            raise ConfigError(f"unknown search {self.search!r}; valid: {', '.join(SEARCHES)}")
        _check_sweep_options(self)
        unused = sorted(set(self.model) - {"*", *self.backbones})
        if unused:
            raise ConfigError(f"--model {unused[0]}.…: {unused[0]} is not among the grid's backbones "
                              f"({', '.join(self.backbones)})")
        for backbone in self.backbones if self.model else ():
            overrides = self.model_overrides(backbone)
            try:
                make_backbone_config(backbone, overrides)
                build_backbone(backbone, 2, 2, overrides)  # the values too (a backbone checks its config)
            except (ConfigError, ValueError) as error:
                missing = set(self.model.get("*", {})) - {f.name for f in fields(backbone_class(backbone).config_class)}
                hint = (f" ({', '.join(sorted(missing))}: --model BACKBONE.KEY=VALUE sets it for one backbone only)"
                        if missing else "")
                raise ConfigError(f"--model ({backbone}): {error}{hint}") from None
        if self.grace_period is not None and self.grace_period < 1:
            raise ConfigError(f"--grace-period must be at least 1 epoch, got {self.grace_period}")
        for name in self.ablations:
            ablation = ABLATIONS[name]
            if self.methods is not None and not set(self.methods) & set(ablation.methods):
                raise ConfigError(f"the {name} ablation sweeps {', '.join(ablation.methods)}; "
                                  f"--methods {','.join(self.methods)} keeps none of them")
            clash = sorted({k for m in ablation.methods for k in ablation.grid(m) if k in self.overrides})
            if clash:
                raise ConfigError(f"the {name} ablation varies {', '.join(clash)}: do not fix it with --set")

    @property
    def command(self) -> str:
        return "python sweeps/grid.py " + shlex.join(self.argv)

    def usable_datasets(self, log=print) -> list[str]:
        """The datasets whose files exist (a missing one is skipped with a message)."""
        usable = []
        for name in self.datasets:
            source = DataConfig(name=name, data_dir=self.overrides.get("data_dir")).source_path()
            if source is not None and not source.is_file():
                log(f"[grid] skipping dataset {name}: {source} not found (set --data-dir or $CSREC_DATA_DIR)")
                continue
            usable.append(name)
        return usable

    def model_overrides(self, backbone: str) -> dict:
        """The backbone hyperparameters of ``backbone``'s cells: ``--model KEY=VALUE`` for every
        backbone, then ``--model BACKBONE.KEY=VALUE`` for this one."""
        return {**self.model.get("*", {}), **self.model.get(backbone, {})}

    def cells(self, datasets=None) -> list[SweepConfig]:
        """Every cell this run sweeps: the main grid's, or (with ``ablations``) the ablation cells."""
        datasets = self.datasets if datasets is None else datasets
        if not self.ablations:
            return [self._cell(d, b, m) for d in datasets for b in self.backbones for m in self.methods or METHODS]
        return [self._cell(d, b, m, name) for d in datasets for b in self.backbones for name in self.ablations
                for m in ABLATIONS[name].methods if self.methods is None or m in self.methods]

    def _cell(self, dataset: str, backbone: str, method: str, ablation: str | None = None) -> SweepConfig:
        common = dict(
            dataset=dataset, backbone=backbone, method=method, storage_path=self.storage_path, epochs=self.epochs,
            seed=self.seed, teacher_pool=self.teacher_pool, resources=self.resources,
            resume="auto" if self.resume or self.resume_or_start else False, max_failures=self.max_failures, verbose=self.verbose,
            protocol=self.protocol, model=self.model_overrides(backbone) or None,
        )
        if ablation is None:
            return SweepConfig(search=self.search, num_samples=self.num_samples, grace_period=self.grace_period,
                               schedule=self.schedule, batch_size=self.batch_size, seeds=self.seeds,
                               overrides=dict(self.overrides),
                               **common)
        spec = ABLATIONS[ablation]  # a controlled grid: no early stopping, every point must reach its test report
        return SweepConfig(grid=spec.grid(method), ablation=ablation, asha=False,
                           overrides={**spec.fixed(method), **self.overrides}, **common)

    def carried_argv(self, backbones=None) -> list[str]:
        """The options of this run's command line that a later invocation on its run directory repeats
        (same data, same budget, same backbone hyperparameters); ``--set`` of a method parameter is left
        out (an ablation fixes or varies it), and so is ``--model B.KEY=VALUE`` when the later invocation's
        ``backbones`` leave B out."""
        out: list[str] = []
        for i, token in enumerate(self.argv):
            name, eq, inline = token.partition("=")
            value = inline if eq else (self.argv[i + 1] if i + 1 < len(self.argv) else None)
            if token == "--smoke":
                out.append("--smoke")
            elif name in CARRIED_OPTIONS and value is not None:
                out += [name, value]
            elif name == "--model" and value is not None:
                backbone, dot, _ = value.partition("=")[0].rpartition(".")
                if not dot or backbones is None or backbone.strip().lower() in backbones:
                    out += [name, value]
            elif name == "--set" and value is not None and "=" in value:
                if value.partition("=")[0].strip().replace("-", "_") not in PARAMS:
                    out += ["--set", value]
        return out

    def data_config(self, dataset: str) -> DataConfig:
        """The DataConfig of ``dataset`` in this run (the data fields that ``overrides`` sets)."""
        names = {f.name for f in fields(DataConfig)} - {"name"}
        kwargs = {k: v for k, v in self.overrides.items() if k in names}
        if dataset != "synthetic":
            kwargs.pop("synthetic", None)
        return DataConfig(name=dataset, **kwargs)
    @classmethod
    def from_argv(cls, argv: list[str]) -> "GridConfig":
        """The config of a ``sweeps/grid.py`` command line (ConfigError on a bad value)."""
        argv = [str(a) for a in argv]
        args = grid_parser().parse_args(argv)
        smoke = SMOKE if args.smoke else {}
        overrides: dict = {}
        if args.data_dir:
            overrides["data_dir"] = args.data_dir
        if args.patience is not None:
            overrides["patience"] = args.patience
        if args.smoke:
            overrides["synthetic"] = SyntheticConfig(**SMOKE_SYNTHETIC)
        overrides.update(parse_key_values(args.set, "--set"))
        model: dict[str, dict] = {}
        for key, value in parse_key_values(args.model, "--model").items():
            backbone, dot, name = key.rpartition(".")
            model.setdefault(backbone.strip().lower() if dot else "*", {})[name.strip()] = value
        try:
            ablations = tuple(parse_ablations(args.ablation))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        resources = Resources(trial_cpus=args.cpus_per_trial, trial_gpus=args.gpus_per_trial,
                              teacher_cpus=args.cpus_per_teacher, teacher_workers=args.teacher_workers,
                              max_concurrent_trials=args.max_concurrent)
        return cls(
            datasets=_names(args.datasets, smoke.get("datasets"), dataset_names(), "dataset"),
            backbones=_names(args.backbones, smoke.get("backbones"), backbone_names(), "backbone"),
            methods=None if args.methods == "all" else _names(args.methods, None, METHODS, "method"),
            search=args.search, num_samples=args.num_samples or smoke.get("num_samples", cls.num_samples),
            schedule=args.schedule, batch_size=args.batch_size, seeds=args.seeds, protocol=args.protocol,
            ablations=ablations, storage_path=args.storage_path or smoke.get("storage_path", cls.storage_path),
            teacher_pool=args.teacher_pool, resume=args.resume, resume_or_start=args.resume_or_start, fresh=args.fresh,
            redo=tuple(c.strip() for c in args.redo.split(",") if c.strip()) if args.redo else (),
            epochs=args.epochs or smoke.get("epochs"), seed=args.seed, grace_period=args.grace_period,
            overrides=overrides, model=model, resources=resources, max_failures=args.max_failures, address=args.address,
            num_cpus=args.num_cpus, verbose=args.verbose, argv=argv,
        )


def _check_sweep_options(config: "SweepConfig | GridConfig") -> None:
    """The options a cell and a grid share: schedule, batch size, seeds, protocol."""
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.schedule!r}; valid: {', '.join(SCHEDULES)}")
    for name, what in (("batch_size", "trials"), ("seeds", "seeds")):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of {what}, at least 1, got {value!r}")
    if config.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {config.protocol!r}; valid: {', '.join(PROTOCOLS)}")


def _names(value: str | None, smoke, every, what: str) -> tuple[str, ...]:
    if value is None and smoke is not None:
        return tuple(smoke)
    if value is None or value == "all":
        return tuple(every)
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; valid: all, {', '.join(every)}")
    return tuple(names)


def grid_parser() -> argparse.ArgumentParser:
    """The ``sweeps/grid.py`` command line (every option has help text; fixed sets have choices)."""
    parser = argparse.ArgumentParser(prog="sweeps/grid.py",
                                     description="The dataset × backbone × method grid on Ray (locally or on a cluster).")
    parser.add_argument("--datasets", default=None, metavar="NAMES",
                        help=f"all, or a comma list of {', '.join(dataset_names())} (default: all; --smoke: synthetic)")
    parser.add_argument("--backbones", default=None, metavar="NAMES",
                        help=f"all, or a comma list of {', '.join(backbone_names())} "
                             f"(default: all; --smoke: {','.join(SMOKE['backbones'])})")
    parser.add_argument("--methods", default="all", metavar="NAMES",
                        help=f"all, or a comma list of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help=f"Optuna trials per soft-label method (default {GridConfig.num_samples}; "
                             f"--smoke {SMOKE['num_samples']})")
    parser.add_argument("--search", default="optuna", choices=SEARCHES,
                        help="optuna: TPE over the ranges of csrec.search.RANGES (--num-samples trials per cell); "
                             "paper-grid: the paper's α/β/T grid (default: optuna)")
    parser.add_argument("--schedule", default="sync", choices=SCHEDULES,
                        help="sync: trials in batches, early stopping against earlier batches only, so the same "
                             "command gives the same table at any concurrency; async: Ray Tune's ASHA, faster on "
                             "many cores but timing-dependent (default: sync)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"--schedule sync: trials suggested and run per batch (default {BATCH_SIZE})")
    parser.add_argument("--protocol", default="csrec", choices=PROTOCOLS,
                        help="training preset of every trial and teacher: csrec (default) or authors (the authors' "
                             "code: batches of 64 targets, lr 1e-3, fixed epochs with the best-validation epoch kept, "
                             "weighted probability ensemble, CSRec-T's running max; csrec.experiment.protocol)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train each cell's configuration chosen on validation with this many seeds in all "
                             "(student and teacher seeds shift per seed); tables show mean ± std over seeds and "
                             "mark significance across seeds (default 1)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in --storage-path (an error if there is none)")
    start.add_argument("--resume-or-start", action="store_true",
                       help="continue the run in --storage-path, or start it there if there is none")
    start.add_argument("--fresh", action="store_true", help="delete an existing --storage-path first")
    parser.add_argument("--redo", default=None, metavar="CELLS",
                        help="with --resume: run these cells again from scratch, a comma list of "
                             "DATASET/BACKBONE/METHOD (e.g. yelp/gru4rec/csrec-t), for results an earlier csrec "
                             "got wrong; their Tune experiments are moved aside (NAME.redo-TIME), their rows replaced")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic grid, a few minutes on a laptop")
    parser.add_argument("--storage-path", default=None, metavar="DIR",
                        help=f"run directory (default {GridConfig.storage_path}, --smoke {SMOKE['storage_path']})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per student and teacher (default: TrainConfig's; --smoke {SMOKE['epochs']})")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: TrainConfig's)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA: epochs every trial runs before it can be stopped (default epochs // 4)")
    parser.add_argument("--teacher-pool", default=None, metavar="DIR",
                        help="teacher pool shared with other run directories (default: STORAGE_PATH/teachers)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="data directory (default $CSREC_DATA_DIR or ./data)")
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="join a running Ray cluster: auto (the one `ray start` started on this machine) or "
                             "its GCS address HOST:PORT (default: start a local Ray runtime)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray runtime (default: all)")
    parser.add_argument("--cpus-per-trial", type=float, default=Resources.trial_cpus,
                        help=f"CPUs each trial reserves (and its torch threads; default {Resources.trial_cpus:g})")
    parser.add_argument("--cpus-per-teacher", type=float, default=Resources.teacher_cpus,
                        help=f"CPUs each teacher trained up front reserves (and its torch threads; default "
                             f"{Resources.teacher_cpus:g}): more for a teacher that trains alone, such as CSRec-T's main one")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs each trial reserves (default: 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--teacher-workers", type=int, default=Resources.teacher_workers,
                        help=f">1: train each teacher data-parallel with a TorchTrainer of that many workers "
                             f"(default {Resources.teacher_workers}: a plain Ray task)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="most trials of a cell running at once (default: as many as the resources allow)")
    parser.add_argument("--max-failures", type=int, default=GridConfig.max_failures,
                        help=f"retries of a failing trial before it is recorded as failed (default {GridConfig.max_failures})")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of every student, teacher and the Optuna sampler (default: TrainConfig's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any DataConfig/TrainConfig/MethodConfig field (repeatable); a searched "
                             "parameter set here (e.g. num_teachers=2) is fixed")
    parser.add_argument("--model", action="append", default=[], metavar="[BACKBONE.]KEY=VALUE",
                        help="backbone hyperparameter (repeatable): for every backbone of the grid "
                             "(e.g. --model embedding_dim=32), or for one (e.g. --model bert4rec.dropout=0.2)")
    parser.add_argument("--ablation", default=None, metavar="NAMES",
                        help="run the controlled sweeps of the sensitivity figures instead of the grid: "
                             "teachers (Fig. 6), ratio (Fig. 9), temperature (Fig. 7/8), expectation (Fig. 10), "
                             "a comma list, or all")
    parser.add_argument("--verbose", type=int, nargs="?", const=1, default=0, choices=tuple(VERBOSITY),
                        help="besides one line per trial, a summary per cell and the final table: "
                             + "; ".join(f"{level}: {what}" for level, what in VERBOSITY.items())
                             + " (default 0; --verbose alone: 1)")
    return parser
