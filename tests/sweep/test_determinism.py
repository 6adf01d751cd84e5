"""The default schedule is deterministic: the same sweep with one and with two concurrent trials
suggests the same configurations, stops the same trials at the same epochs and writes the same table."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.ray


def _trials(run_dir) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "results.parquet")
    columns = sorted(c for c in frame.columns if c.startswith(("config/", "valid/", "test/")))
    keep = ["method", "status", "training_iteration", *columns]
    return frame[[c for c in keep if c in frame]].sort_values(columns).reset_index(drop=True)


def test_one_and_two_concurrent_trials_give_the_same_table(ray_session, tmp_path, grid_main):
    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "softrec", "--num-samples", "6", "--batch-size", "3",
            "--epochs", "4", "--grace-period", "1", "--address", ray_session]
    assert grid_main(argv + ["--max-concurrent", "1", "--storage-path", str(tmp_path / "one")]) == 0
    assert grid_main(argv + ["--max-concurrent", "2", "--storage-path", str(tmp_path / "two")]) == 0
    one, two = _trials(tmp_path / "one"), _trials(tmp_path / "two")
    assert len(one) == 6 and (one["status"] == "stopped").any(), "the stopper took no decision to compare"
    pd.testing.assert_frame_equal(one, two)
    assert (tmp_path / "one" / "table.md").read_text() == (tmp_path / "two" / "table.md").read_text()
