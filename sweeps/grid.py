"""The dataset × backbone × method grid on Ray (locally, or on a cluster from ``ray up cluster.yaml``).

    python sweeps/grid.py --datasets all --backbones all [--methods all] [--num-samples N]
                          [--search optuna|paper-grid] [--schedule sync|async] [--seeds N]
                          [--protocol csrec|authors] [--resume | --resume-or-start | --fresh] [--smoke]
                          [--redo DATASET/BACKBONE/METHOD,...]
                          [--storage-path DIR] [--epochs N] [--data-dir DIR] [--address auto|HOST:PORT]
                          [--verbose [0|1|2]]
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
  Recall@10 / NDCG@10 vectors of each cell's best trial (chosen on validation; ties go to the
  smallest configuration in canonical order, so the same trials always give the same best);
* ``best/<dataset>__<backbone>__<method>.model.pt`` — that trial's student:
  ``csrec.artifacts.load(path).recommend(histories, k=10)`` (summary.json: ``best_model``);
* ``table.md`` — Table 3 layout with paired t-test marks (vs Base ``*``, vs SoftRec ``†``);
* ``summary.json`` — per cell: trials run vs expected, teachers trained, best config and metrics
  (``ablations``: the same per ablation cell), and the command line of this invocation;
* ``teachers/`` (the teacher pool; ``--teacher-pool DIR`` puts it elsewhere, so that several run
  directories train each distinct teacher once between them) and one Tune experiment per cell.

Trials are suggested and stopped early deterministically by default (``--schedule sync``: batches of
``--batch-size`` trials, early stopping against earlier batches only; see csrec.sweep.schedule),
so the same command writes the same table.md at any ``--max-concurrent``; ``--schedule async`` is
Ray Tune's ASHA, timing-dependent.  ``--seeds N`` trains each cell's chosen configuration with N
seeds and tabulates mean ± std.  A killed or interrupted run continues with ``--resume`` (same
``--storage-path``): finished trials are not rerun, teachers are reused, and the searcher's and
scheduler's state are restored, so it writes the table.md an uninterrupted run writes.  A compact
copy of a run (``sweeps/report.py RUN --compact-copy DIR``) resumes elsewhere: the cells it
records as complete are kept.  ``--resume`` on a directory with no run is an error;
``--resume-or-start`` starts one there instead.

Output: one line per trial start and end, one summary per cell, the run's table at the end;
``--verbose`` adds Ray Tune's status tables (``--verbose 2``: every trial result too).
``--address HOST:PORT`` with no Ray cluster there fails within seconds.
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
    except KeyboardInterrupt:
        print("grid.py: interrupted. Finished cells and pooled teachers are kept, and an interrupted trial or "
              "teacher continues after its last finished epoch: rerun the same command with --resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
