"""Fixtures of the Ray-layer tests: one local Ray runtime (2 CPUs, dashboard on) for the session."""

from __future__ import annotations

import pytest

from csrec.data import SyntheticConfig

#: Tiny synthetic data: a trial or a teacher trains in about a second.
TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


@pytest.fixture(scope="session")
def ray_session(_isolated_environment):
    """A local Ray runtime shared by the tests; yields its GCS address (subprocess drivers join it).

    ``ray.shutdown()`` stops exactly the processes this ``ray.init`` started (never ``ray stop``,
    which would kill every Ray process of the user on the machine).
    """
    import ray

    import csrec.sweep as sweep

    if ray.is_initialized():
        ray.shutdown()
    sweep.init_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    address = ray.get_runtime_context().gcs_address
    yield address
    ray.shutdown()


@pytest.fixture
def tiny() -> dict:
    """Overrides for csrec.sweep.tune / base_config: tiny synthetic data, two epochs, no patience."""
    return {"synthetic": SyntheticConfig(**TINY), "epochs": 2, "patience": 0}


@pytest.fixture
def grid_main():
    """``sweeps/grid.py ARGV`` as a function (tests never import ``sweeps/``): its exit status."""
    from csrec.search import GridConfig
    from csrec.sweep import run_grid

    return lambda argv: 0 if run_grid(GridConfig.from_argv(argv)).complete else 3
