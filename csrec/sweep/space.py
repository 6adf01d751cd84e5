"""Search spaces per method: a conditional Optuna space, and the paper's exact grid.

Optuna (TPE, define-by-run; only the parameters a method uses exist in its trials):

=========================  ==============================================
β ∈ [0.25, 0.75]           every soft-label method (softrec, csrec-m/d/t)
T ∈ [1, 9]                 every soft-label method
m ∈ {1, 2, 3, 4}           csrec-m, csrec-d
p ∈ {0.5, …, 0.9}          csrec-d, csrec-t (discrete so that teachers are reused)
α ∈ [0.25, 0.75]           csrec-t
=========================  ==============================================

``paper-grid``: α, β ∈ {0.25, 0.5, 0.75}, T ∈ {1, 3, 6, 9}, m = 2, p = 0.8 (α for csrec-t only).
Base has no hyperparameter of its own: one trial either way.  A parameter given a value by the
caller (``csrec.sweep.tune(..., num_teachers=2)``) is fixed: it leaves the search space.
"""

from __future__ import annotations

import itertools

SEARCHES = ("optuna", "paper-grid")
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
#: The method parameters a trial may set (MethodConfig field names).
PARAMS = ("beta", "temperature", "num_teachers", "subsample", "alpha")


def method_params(method: str, fixed=()) -> tuple[str, ...]:
    """The hyperparameters ``method`` searches, in a fixed order (minus those in ``fixed``)."""
    if method == "base":
        return ()
    out = ["beta", "temperature"]
    if method in ("csrec-m", "csrec-d"):
        out.append("num_teachers")
    if method in ("csrec-d", "csrec-t"):
        out.append("subsample")
    if method == "csrec-t":
        out.append("alpha")
    return tuple(n for n in out if n not in set(fixed))


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


def paper_grid_space(method: str, fixed=()) -> dict:
    """``param_space`` for Tune: a grid_search per parameter with several values, constants otherwise."""
    from ray import tune

    out = {}
    for name in method_params(method, fixed):
        values = PAPER_GRID[name]
        out[name] = tune.grid_search(list(values)) if len(values) > 1 else values[0]
    return out


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
