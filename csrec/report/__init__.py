"""The one place that turns results into tables, significance marks and figures.  No Ray.

* :func:`report` (also ``csrec.report(run_dir)``) — Tables 3/4/5 (Markdown + LaTeX), the paper's
  figures (PNG) and ``report.md`` from a sweep run directory; a figure whose dimension the sweep did
  not cover is skipped with the sweep that would produce it.
* :func:`write_run_outputs` — what a sweep invocation leaves in its run directory: results.parquet,
  the best trials' vectors, table.md and summary.json.
* :func:`write_robustness` — the robustness curve of :func:`csrec.experiment.run_robustness`.
* :mod:`csrec.report.stats` — the paired t-test behind every significance mark.
* :mod:`csrec.report.cli` — ``python sweeps/report.py``.
"""

from __future__ import annotations

import sys
import types

from csrec.report.build import report
from csrec.report.outputs import write_run_outputs
from csrec.report.robustness import plot_robustness, write_robustness
from csrec.report.runs import ReportError, Run
from csrec.report.stats import (
    group_tests, length_buckets, paired_ttest, popular_items, popular_test_users, significance_marks,
)

__all__ = [
    "ReportError", "Run", "group_tests", "length_buckets", "paired_ttest", "plot_robustness", "popular_items",
    "popular_test_users", "report", "significance_marks", "write_robustness", "write_run_outputs",
]


class _CallableModule(types.ModuleType):
    """``csrec.report(run_dir)`` works whether or not ``csrec.report`` (the package) was imported."""

    def __call__(self, *args, **kwargs):
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
