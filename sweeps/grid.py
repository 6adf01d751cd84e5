"""The dataset × backbone × method grid on Ray (locally, or on a cluster from ``ray up cluster.yaml``).

    python sweeps/grid.py --datasets all --backbones all [--methods all] [--num-samples N]
                          [--search optuna|paper-grid] [--resume] [--smoke] [--storage-path DIR]
                          [--epochs N] [--data-dir DIR] [--address ADDR]
                          [--ablation teachers|ratio|temperature|expectation|all (or a comma list)]

``--ablation`` runs, instead of the main grid, the controlled sweeps of the paper's sensitivity
figures (:data:`csrec.search.ABLATIONS`) for every dataset × backbone given, every other method
parameter at its default; no ASHA, so every point finishes.  ``--methods`` (when not ``all``)
keeps only those of an ablation's methods.  Each ablation cell is its own Tune experiment
(``<dataset>-<backbone>-<method>-ablation-<name>``); its trials go into ``results.parquet`` with
``ablation=<name>`` and never enter the main grid's best trials, ``best/`` or ``table.md``.  To add
ablations to a finished grid, rerun with the same ``--storage-path`` and ``--resume``: the cells
of earlier invocations that this one did not run are kept.

Writes into the run directory (``--storage-path``):

* ``results.parquet`` — one row per trial: dataset, backbone, method, ablation, every searched
  hyperparameter (``config/*``), status, error, every last-reported metric (``valid/*``, ``test/*``);
* ``best/<dataset>__<backbone>__<method>.npz`` — per-sequence test ranks, positive mask and
  Recall@10 / NDCG@10 vectors of each cell's best trial (chosen on validation);
* ``table.md`` — Table 3 layout with paired t-test marks (vs Base ``*``, vs SoftRec ``†``);
* ``summary.json`` — per cell: trials run vs expected, teachers trained, best config and metrics
  (``ablations``: the same per ablation cell), and the command line of this invocation;
* ``teachers/`` (the teacher pool; ``--teacher-pool DIR`` puts it elsewhere, so that several run
  directories train each distinct teacher once between them) and one Tune experiment per cell.

A killed or interrupted run continues with ``--resume`` (same ``--storage-path``): finished
trials are not rerun, teachers are reused and the Optuna searcher state is restored.
Exit status: 0 when every cell is complete, 3 when some cell is incomplete, 2 on bad arguments.
"""

from __future__ import annotations

import sys

from csrec.errors import CSRecError
from csrec.search import GridConfig


def main(argv: list[str] | None = None) -> int:
    try:
        config = GridConfig.from_argv(sys.argv[1:] if argv is None else argv)
        from csrec.sweep import run_grid  # Ray starts here, after the arguments are checked

        return 0 if run_grid(config).complete else 3
    except CSRecError as exc:
        print(f"grid.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
