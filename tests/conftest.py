"""Shared fixtures: real-data location, an isolated prepared-data cache, small synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from csrec.data import DataConfig, SyntheticConfig, generate_synthetic, load_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The real datasets live beside the checkout (``../shared/data``), never inside it.
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"

SMALL_SYNTHETIC = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    """Never touch ~/.cache/csrec or a user's $CSREC_DATA_DIR; run torch on one thread.

    The test models are tiny: a second thread buys nothing, and on a shared, busy machine
    OpenMP's spinning threads made epochs up to 100x slower.
    """
    patch = pytest.MonkeyPatch()
    patch.setenv("CSREC_CACHE_DIR", str(tmp_path_factory.mktemp("csrec-cache")))
    patch.delenv("CSREC_DATA_DIR", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    patch.undo()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip (with the reason) without it."""
    path = SHARED_DATA.resolve()
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} does not exist (expected ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def real_file(shared_data_dir):
    """``real_file("lastfm/lastfm_small.csv")``: the path, or a skip naming the missing file."""

    def get(relative: str) -> Path:
        path = shared_data_dir / relative
        if not path.is_file():
            pytest.skip(f"real data file not available: {path}")
        return path

    return get


@pytest.fixture
def small_data_config() -> DataConfig:
    """About 130 sub-sessions, 59 items, 1,450 training targets: a 2-epoch fit takes well under a second."""
    return DataConfig(synthetic=SyntheticConfig(**SMALL_SYNTHETIC))


@pytest.fixture(scope="session")
def small_data(_isolated_environment):
    """The prepared small synthetic data, built once per session (read-only: do not mutate)."""
    return load_dataset(DataConfig(synthetic=SyntheticConfig(**SMALL_SYNTHETIC), use_cache=False))


@pytest.fixture
def synthetic_csv(tmp_path) -> Path:
    """The small synthetic interactions written as a paper-style CSV (user_id, item_id, rating, timestamp)."""
    frame = generate_synthetic(SyntheticConfig(**SMALL_SYNTHETIC))
    path = tmp_path / "interactions.csv"
    frame.rename(columns={"user": "user_id", "item": "item_id"})[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        path, index=False
    )
    return path


@pytest.fixture
def write_file(tmp_path):
    """``write_file("name.csv", text)``: writes ``text`` under tmp_path and returns the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
