"""Fixtures of the report tests: a fake sweep run directory (see ``fake_sweep.py``) and its report."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_sweep import make_run


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory, _isolated_environment) -> Path:
    return make_run(tmp_path_factory.mktemp("sweep") / "run")


@pytest.fixture(scope="session")
def fake_report(fake_run, tmp_path_factory) -> Path:
    """The report of the fake run (built once: it is the slow part)."""
    from csrec.report import report

    return report(fake_run)
