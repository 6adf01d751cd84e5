"""Analysis and reporting: the paper's tables and figures from a finished sweep run directory.

* :func:`report` (also ``csrec.report(run_dir)``) — Tables 3/4/5 (Markdown + LaTeX), Fig. 1/4, 3,
  5, 6, 7/8, 9, 10 (PNG) and ``report.md`` into ``RUN_DIR/report/``; figures whose dimension the
  sweep did not cover are skipped with the sweep that would produce them.
* :func:`run_robustness` — the robustness curve on synthetic data (plain ``csrec.fit`` loop).
* ``python sweeps/report.py RUN_DIR`` / ``python sweeps/report.py --robustness OUT_DIR`` — the CLI.

Nothing here imports Ray.
"""

from __future__ import annotations

import sys
import types

from csrec.report.build import report
from csrec.report.robustness import plot_robustness, run_robustness, write_robustness
from csrec.report.runs import ReportError, Run
from csrec.report.stats import length_buckets, paired_ttest, popular_items, popular_test_users, significance_marks

__all__ = [
    "ReportError", "Run", "length_buckets", "paired_ttest", "plot_robustness", "popular_items", "popular_test_users",
    "report", "run_robustness", "significance_marks", "write_robustness",
]


class _CallableModule(types.ModuleType):
    """``csrec.report(run_dir)`` works whether or not ``csrec.report`` (the package) was imported."""

    def __call__(self, *args, **kwargs):
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
