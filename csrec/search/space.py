"""The search space as data: what each method searches, the paper's exact grid, explicit grids,
and the controlled ablation sweeps of the paper's sensitivity figures.

* Optuna (TPE, define-by-run): :data:`RANGES` for the continuous β, T and α, :data:`TEACHER_COUNTS`
  and :data:`SUBSAMPLES` for m and p (discrete, so that trials share teachers); only the parameters
  a method has (:func:`method_params`) exist in its trials.
* ``paper-grid``: exactly :data:`PAPER_GRID`.  Base has nothing to search: one trial either way.
* A parameter given a value by the caller (``csrec.tune(..., num_teachers=2)``) is fixed: it
  leaves the search space.  An explicit grid runs exactly the product of the given values.
* :data:`ABLATIONS` (``sweeps/grid.py --ablation NAME``): per figure, an explicit grid per method
  with every other parameter at its :class:`~csrec.methods.config.MethodConfig` default.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from csrec.methods.config import MethodConfig, method_hyperparameters

SEARCHES = ("optuna", "paper-grid")
#: How a cell's trials are suggested and stopped (see csrec.sweep.schedule): ``sync`` takes no
#: decision that depends on timing or concurrency; ``async`` is Ray Tune's asynchronous ASHA.
SCHEDULES = ("sync", "async")
#: Trials per batch under ``sync`` (the first batch of 4 is also TPE's random start-up for 12 trials).
BATCH_SIZE = 4
SUBSAMPLES = (0.5, 0.6, 0.7, 0.8, 0.9)
TEACHER_COUNTS = (1, 2, 3, 4)
RANGES = {"beta": (0.25, 0.75), "temperature": (1.0, 9.0), "alpha": (0.25, 0.75)}
PAPER_GRID = {
    "alpha": (0.25, 0.5, 0.75),
    "beta": (0.25, 0.5, 0.75),
    "temperature": (1.0, 3.0, 6.0, 9.0),
    "num_teachers": (2,),
    "subsample": (0.8,),
}
#: The method parameters a trial may set (MethodConfig field names); ``expectation_term`` is never
#: searched, only set by an explicit grid (the ``expectation`` ablation).
PARAMS = ("beta", "temperature", "num_teachers", "subsample", "alpha", "expectation_term")


def method_params(method: str, fixed=()) -> tuple[str, ...]:
    """The hyperparameters ``method`` searches, in a fixed order (minus those in ``fixed``)."""
    return tuple(n for n in method_hyperparameters(method) if n not in set(fixed))


class OptunaSpace:
    """Define-by-run space for OptunaSearch (conditional on the method).

    A class, not a closure: OptunaSearch pickles it with the searcher state for Tuner.restore.
    """

    def __init__(self, method: str, fixed=()):
        self.method = method
        self.names = method_params(method, fixed)

    def __call__(self, trial) -> None:
        names = self.names
        if "beta" in names:
            trial.suggest_float("beta", *RANGES["beta"])
        if "temperature" in names:
            trial.suggest_float("temperature", *RANGES["temperature"])
        if "num_teachers" in names:
            trial.suggest_int("num_teachers", TEACHER_COUNTS[0], TEACHER_COUNTS[-1])
        if "subsample" in names:
            trial.suggest_categorical("subsample", list(SUBSAMPLES))
        if "alpha" in names:
            trial.suggest_float("alpha", *RANGES["alpha"])
        return None


def optuna_space(method: str, fixed=()) -> OptunaSpace:
    return OptunaSpace(method, fixed)


def grid_points(method: str, fixed=()) -> list[dict]:
    """Every point of the paper grid for ``method`` (one empty point for Base)."""
    names = method_params(method, fixed)
    if not names:
        return [{}]
    values = [PAPER_GRID[n] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def discrete_points(method: str, fixed=()) -> list[dict]:
    """The teacher-relevant choices an Optuna trial can make (the union of its m and p options).

    CSRec-T's main teacher also depends on the continuous α, so only its side teachers are known
    up front; those points carry ``alpha=None`` and must not be used to build stores.
    """
    names = method_params(method, fixed)
    ms = TEACHER_COUNTS if "num_teachers" in names else (None,)
    ps = SUBSAMPLES if "subsample" in names else (None,)
    out = []
    for m, p in itertools.product(ms, ps):
        point = {}
        if m is not None:
            point["num_teachers"] = m
        if p is not None:
            point["subsample"] = p
        out.append(point)
    return out


def expected_trials(method: str, search: str, num_samples: int, fixed=()) -> int:
    if not method_params(method, fixed):
        return 1
    if search == "paper-grid":
        return len(grid_points(method, fixed))
    return int(num_samples)


# --- explicit grids and ablations ---------------------------------------------------------------------
def grid_product(grid: dict | None) -> list[dict]:
    """Every point of an explicit grid ``{name: [values]}``, in a fixed order (``[{}]`` when empty)."""
    if not grid:
        return [{}]
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(grid[n]) for n in names))]


def check_grid(grid: dict, fixed=()) -> dict[str, list]:
    """``grid`` with list values, after checking its names and values (ValueError otherwise)."""
    out = {}
    for name, values in dict(grid).items():
        if name not in PARAMS:
            raise ValueError(f"grid parameter {name!r} is not a method parameter; valid: {', '.join(PARAMS)}")
        if name in set(fixed):
            raise ValueError(f"{name} is both fixed ({name}=...) and in the grid; give it one way only")
        values = list(values) if isinstance(values, (list, tuple, set, frozenset, range)) else [values]
        if not values:
            raise ValueError(f"grid parameter {name!r} has no value")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"grid parameter {name!r} repeats a value: {values}")
        out[name] = values
    return out


def grid_size(grid: dict | None) -> int:
    return math.prod(len(list(v)) for v in grid.values()) if grid else 1


#: The default of every method parameter, held fixed by the ablations: MethodConfig's, not a copy.
ABLATION_DEFAULTS = {name: value for name, value in dataclasses.asdict(MethodConfig()).items() if name in PARAMS}


@dataclass(frozen=True)
class Ablation:
    """A controlled sweep: per method, the grid it runs; everything else at :data:`ABLATION_DEFAULTS`."""

    name: str
    figure: str
    what: str
    grids: tuple[tuple[str, tuple[tuple[str, tuple], ...]], ...]  # ((method, ((param, values), ...)), ...)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.grids)

    def grid(self, method: str) -> dict[str, list]:
        for name, grid in self.grids:
            if name == method:
                return {param: list(values) for param, values in grid}
        raise KeyError(f"the {self.name} ablation has no {method} sweep; it sweeps {', '.join(self.methods)}")

    def fixed(self, method: str) -> dict:
        """The method's other parameters, held at the paper's defaults."""
        grid = self.grid(method)
        names = set(method_params(method))
        if method == "csrec-t":
            names.add("expectation_term")
        return {k: v for k, v in ABLATION_DEFAULTS.items() if k in names and k not in grid}

    def trials(self, method: str) -> int:
        return grid_size(self.grid(method))


_BT = (("beta", PAPER_GRID["beta"]), ("temperature", PAPER_GRID["temperature"]))
ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("teachers", "Fig. 6", "number of teachers m",
             (("csrec-m", (("num_teachers", TEACHER_COUNTS),)), ("csrec-d", (("num_teachers", TEACHER_COUNTS),)))),
    Ablation("ratio", "Fig. 9", "sub-sampling ratio p",
             (("csrec-d", (("subsample", SUBSAMPLES),)), ("csrec-t", (("subsample", SUBSAMPLES),)))),
    Ablation("temperature", "Fig. 7/8", "β × T (× α for CSRec-T)",
             (("csrec-m", _BT), ("csrec-d", _BT), ("csrec-t", (("alpha", PAPER_GRID["alpha"]), *_BT)))),
    Ablation("expectation", "Fig. 10", "CSRec-T with / without the expectation term",
             (("csrec-t", (("expectation_term", (True, False)),)),)),
)}


def parse_ablations(value: str | None) -> list[str]:
    """``"teachers,ratio"`` / ``"all"`` → ablation names in the order given (ValueError if unknown)."""
    if value is None or not str(value).strip():
        return []
    if str(value).strip().lower() == "all":
        return list(ABLATIONS)
    names = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation {', '.join(unknown)}; valid: all, {', '.join(ABLATIONS)}")
    return list(dict.fromkeys(names))


def ablation_experiment(dataset: str, backbone: str, method: str, ablation: str) -> str:
    """The Tune experiment directory of an ablation cell (never one of the main grid's names)."""
    return f"{dataset}-{backbone}-{method}-ablation-{ablation}"


def ablation_cell(dataset: str, backbone: str, method: str, ablation: str) -> str:
    """The label of an ablation cell in summary.json (``lastfm__gru4rec__csrec-m__ablation-teachers``)."""
    return f"{dataset}__{backbone}__{method}__ablation-{ablation}"
