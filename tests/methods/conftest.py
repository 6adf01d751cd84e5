"""Fixtures for the method-layer tests: an isolated cache, tiny data, configs and trained teachers.

Everything expensive (the prepared data, two CSRec-M teachers) is built once per session; tests
must treat those objects as read-only.
"""

from __future__ import annotations

import pytest

from csrec.experiment import make_config
from csrec.data import DataConfig, SyntheticConfig, load_dataset
from csrec.methods import TeacherPool, teacher_specs

TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


def tiny_data_config() -> DataConfig:
    return DataConfig(synthetic=SyntheticConfig(**TINY))


def _method_config(method: str = "base", **kwargs):
    """An ExperimentConfig on the tiny synthetic data: CPU, one epoch, quiet, unless overridden."""
    settings = dict(epochs=1, progress=False, device="cpu", batch_size=32)
    settings.update(kwargs)
    return make_config("synthetic", "gru4rec", method, data=tiny_data_config(), **settings)


@pytest.fixture(scope="session")
def method_config():
    """``method_config("csrec-m", num_teachers=3)``: see :func:`_method_config`."""
    return _method_config


@pytest.fixture(scope="session")
def data(_isolated_environment):
    """The tiny prepared synthetic data (about 130 sub-sessions, 60 items, 1,500 training targets)."""
    return load_dataset(tiny_data_config(), use_cache=False)


@pytest.fixture(scope="session")
def m_setup(data):
    """Two trained CSRec-M teachers (in an in-memory pool) and their config.

    Trained long enough (6 epochs, lr 0.01: about a second) that their outputs are far from
    uniform, so comparisons of soft labels can fail.
    """
    config = _method_config("csrec-m", num_teachers=2, epochs=6, lr=1e-2, patience=0)
    pool = TeacherPool()
    teachers = [pool.get(spec, data, config.train) for spec in teacher_specs(config)]
    for t in teachers:
        t.model.eval()
    return config, pool, teachers
