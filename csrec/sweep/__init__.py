"""The Ray layer: teachers trained once and concurrently, soft labels in the object store, Tune + Optuna.

Nothing below this package imports Ray; this package only orchestrates the plain-Python layers
(``csrec.fit`` is the same experiment as a plain loop).

* :func:`tune` — one (dataset, backbone, method) cell: OptunaSearch or the paper grid, ASHA,
  retries, resume; returns a :class:`SweepResult` (trials DataFrame, best config on validation,
  its test metrics, teachers trained vs trials run).
* :func:`train_teachers` — the missing teachers of a list of configs, concurrently, into the
  on-disk pool (Ray tasks; a TorchTrainer per teacher when ``teacher_workers > 1``).
* :func:`init_ray` — local runtime (dashboard on) or join a cluster (token auth handled).
* ``sweeps/grid.py`` — the dataset × backbone × method grid, results.parquet and the Table-3 report.
"""

from csrec.sweep.runtime import Resources, init_ray
from csrec.sweep.space import SEARCHES, grid_points, method_params, optuna_space, paper_grid_space
from csrec.sweep.stores import StoreRegistry, fetch_store, prebuild_stores
from csrec.sweep.teachers import (
    TeacherReport, collect_teacher_specs, ensure_teacher, read_teacher_records, train_teacher_torchtrainer,
    train_teachers,
)
from csrec.sweep.trial import METRIC, FailWhen, SweepContext
from csrec.sweep.tuner import SweepResult, base_config, registry_stats, select_best, store_refs, trials_frame, tune

__all__ = [
    "METRIC", "SEARCHES", "FailWhen", "Resources", "StoreRegistry", "SweepContext", "SweepResult", "TeacherReport",
    "base_config", "collect_teacher_specs", "ensure_teacher", "fetch_store", "grid_points", "init_ray",
    "method_params", "optuna_space", "paper_grid_space", "prebuild_stores", "read_teacher_records",
    "registry_stats", "select_best", "store_refs", "train_teacher_torchtrainer", "train_teachers", "trials_frame", "tune",
]
