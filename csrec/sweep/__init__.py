"""Ray orchestration: teachers trained once and concurrently, soft labels in the object store, Tune.

Nothing below this package imports Ray; it runs the plain layers (``csrec.fit`` is the same
experiment as a plain loop) on the space and configs of :mod:`csrec.search`, and hands what it
measured to :mod:`csrec.report`.

* :func:`tune` (``csrec.tune``) — one dataset × backbone × method cell from a
  :class:`~csrec.search.SweepConfig` (or keywords): OptunaSearch, the paper grid or an explicit
  grid, ASHA, retries, resume; returns a :class:`SweepResult`.
* :func:`run_grid` — a run directory's cells from a :class:`~csrec.search.GridConfig` (what
  ``sweeps/grid.py`` parses), then its results.parquet, table.md and summary.json.
* :func:`train_teachers` — the missing teachers of a list of configs, concurrently, into the
  on-disk pool (Ray tasks; a TorchTrainer per teacher when ``teacher_workers > 1``).
* :func:`init_ray` — a local runtime (dashboard on) or a cluster to join (token auth handled; an
  address where no cluster answers raises :class:`ClusterUnreachable` within seconds).

A cell prints one line per trial start and end and a summary; Ray Tune's own tables only with
``verbose`` (:data:`csrec.search.config.VERBOSITY`).  Its best trial is chosen on validation with
ties broken by the configuration (:mod:`csrec.search.selection`), and its student is saved as a
model file (:mod:`csrec.artifacts`) that ``run_grid`` copies to ``best/<cell>.model.pt``.
"""

from csrec.search.config import GridConfig, Resources, SweepConfig
from csrec.sweep.grid import GridResult, run_grid
from csrec.sweep.runtime import ClusterUnreachable, check_address, init_ray
from csrec.sweep.stores import StoreRegistry, fetch_store, prebuild_stores
from csrec.sweep.teachers import (
    TeacherReport, collect_teacher_specs, ensure_teacher, read_teacher_records, train_teacher_torchtrainer,
    train_teachers,
)
from csrec.sweep.trial import METRIC, FailWhen, SweepContext
from csrec.sweep.tuner import (
    SweepResult, base_config, registry_stats, select_best, store_refs, store_registry, trials_frame, tune,
)

__all__ = [
    "METRIC", "ClusterUnreachable", "FailWhen", "GridConfig", "GridResult", "Resources", "StoreRegistry", "SweepConfig", "SweepContext",
    "SweepResult", "TeacherReport", "base_config", "check_address", "collect_teacher_specs", "ensure_teacher", "fetch_store",
    "init_ray", "prebuild_stores", "read_teacher_records", "registry_stats", "run_grid", "select_best", "store_refs", "store_registry",
    "train_teacher_torchtrainer", "train_teachers", "trials_frame", "tune",
]
