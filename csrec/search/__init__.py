"""What a sweep searches, as plain data (no Ray): the search space and the sweep's typed config.

* :mod:`csrec.search.space` — per method the Optuna ranges, the paper's α/β/T grid, explicit grids,
  and the controlled ablations of the sensitivity figures (every other parameter at its
  :class:`~csrec.methods.config.MethodConfig` default).
* :mod:`csrec.search.config` — :class:`SweepConfig` (one dataset × backbone × method cell),
  :class:`GridConfig` (a run directory's cells, built from the ``sweeps/grid.py`` command line) and
  :class:`Resources`.

:mod:`csrec.sweep` runs these on Ray; :mod:`csrec.report` reads them to name a run's sweeps.
"""

from csrec.search.config import SMOKE_SYNTHETIC, GridConfig, Resources, SweepConfig, grid_parser
from csrec.search.space import (
    ABLATION_DEFAULTS, ABLATIONS, PAPER_GRID, PARAMS, RANGES, SEARCHES, SUBSAMPLES, TEACHER_COUNTS, Ablation,
    OptunaSpace, ablation_cell, ablation_experiment, check_grid, discrete_points, expected_trials, grid_points,
    grid_product, grid_size, method_params, optuna_space, parse_ablations,
)

__all__ = [
    "ABLATIONS", "ABLATION_DEFAULTS", "Ablation", "GridConfig", "OptunaSpace", "PAPER_GRID", "PARAMS", "RANGES",
    "Resources", "SEARCHES", "SMOKE_SYNTHETIC", "SUBSAMPLES", "SweepConfig", "TEACHER_COUNTS", "ablation_cell",
    "ablation_experiment", "check_grid", "discrete_points", "expected_trials", "grid_parser", "grid_points",
    "grid_product", "grid_size", "method_params", "optuna_space", "parse_ablations",
]
