"""``--seeds N``: each cell's configuration chosen on validation is trained again with N − 1 more
seeds (teachers included), and both tables show mean ± std with marks paired across seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csrec.report.runs import Run
from csrec.report.tables import main_table

pytestmark = pytest.mark.ray


def test_seeds_replicate_the_chosen_configuration_and_tables_show_their_spread(ray_session, tmp_path, grid_main):
    run_dir = tmp_path / "run"
    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "base,softrec,csrec-m", "--num-samples", "2",
            "--epochs", "2", "--seeds", "3", "--set", "num_teachers=1", "--address", ray_session,
            "--storage-path", str(run_dir)]
    assert grid_main(argv) == 0
    results = pd.read_parquet(run_dir / "results.parquet")
    for method in ("base", "softrec", "csrec-m"):
        cell = results[results["method"] == method]
        replicates = cell[cell["replicate"].notna()].sort_values("replicate")
        assert replicates["replicate"].astype(int).tolist() == [1, 2] and (replicates["status"] == "completed").all()
        best = cell[cell["is_best"].astype(bool)].iloc[0]
        for column in [c for c in cell if c.startswith("config/")]:  # the chosen configuration, replicated
            if pd.isna(best[column]):
                assert replicates[column].isna().all()
            else:
                assert replicates[column].tolist() == [best[column]] * 2
        seeds = [json.loads((Path(p) / "trial_result.json").read_text())["config"]
                 for p in [best["trial_path"], *replicates["trial_path"]]]
        assert [c["train"]["seed"] for c in seeds] == [2022, 2023, 2024]
        assert [c["method"]["teacher_seed"] for c in seeds] == [1000, 1100, 1200]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(len(c["seeds"]["recall@10"]) == 3 and c["complete"] for c in summary["cells"])
    table = (run_dir / "table.md").read_text()
    assert "paired across the seeds" in table and table.count("3 seeds") == 3 and " ± " in table
    report = main_table(Run.load(run_dir), "table3")
    cells = [c for _, row in report.rows for c in row]
    recall = [np.mean(c["seeds"]["recall@10"]) for c in summary["cells"]]
    assert sorted(round(c.value, 6) for c in cells[::2]) == sorted(round(v, 6) for v in recall)
    assert all(c.std is not None for c in cells) and any("3 seeds" in n for n in report.notes)
    assert {s[f"paired_over_vs_{r}"] for s in report.significance for r in ("base", "softrec")} - {""} == {"seeds"}


def test_seeds_wait_for_a_finished_search_and_never_continue_another_configurations(ray_session, tmp_path, grid_main,
                                                                                    monkeypatch, capsys):
    """A search stopped part-way (Tune's fit returns normally on Ctrl-C) starts no seeds; the seeds
    of a configuration no longer chosen are moved aside, not continued."""
    from csrec.sweep import tuner

    run_dir = tmp_path / "run"
    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "softrec", "--num-samples", "2", "--epochs", "1",
            "--seeds", "2", "--address", ray_session, "--storage-path", str(run_dir)]
    frame_of = tuner.trials_frame

    def stopped_part_way(fitted, exp_path, **labels):
        frame = frame_of(fitted, exp_path, **labels)
        if not str(exp_path).endswith(tuner.REPLICATES_SUFFIX):
            frame.loc[frame.index[-1], "status"] = "interrupted"
        return frame

    monkeypatch.setattr(tuner, "trials_frame", stopped_part_way)
    assert grid_main(argv) == 3
    seeds_dir = run_dir / f"synthetic-gru4rec-softrec-optuna{tuner.REPLICATES_SUFFIX}"
    assert not seeds_dir.exists()
    assert "the sweep was interrupted; rerun with --resume" in capsys.readouterr().out
    monkeypatch.setattr(tuner, "trials_frame", frame_of)

    assert grid_main(argv + ["--resume"]) == 0
    record = seeds_dir / tuner.REPLICATES_FILE
    chosen = json.loads(record.read_text())["params"]
    assert set(chosen) == {"beta", "temperature"}
    record.write_text(json.dumps({"params": {"beta": 0.111, "temperature": 1.0}}))  # another configuration's
    capsys.readouterr()
    assert grid_main(argv + ["--resume"]) == 0
    assert "held the seeds of {'beta': 0.111, 'temperature': 1.0}" in capsys.readouterr().out
    stale = [p for p in run_dir.iterdir() if p.name.startswith(seeds_dir.name + ".stale-")]
    assert len(stale) == 1 and json.loads(record.read_text())["params"] == chosen
    results = pd.read_parquet(run_dir / "results.parquet")
    assert results["replicate"].dropna().astype(int).tolist() == [1] and (results["status"] == "completed").all()
