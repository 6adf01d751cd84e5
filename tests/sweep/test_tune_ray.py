"""Tune sweeps end to end on the session's local Ray runtime (2 CPUs, tiny synthetic data)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

import csrec.sweep as sweep
from csrec import artifacts
from csrec.data import load_dataset
from csrec.evaluation import evaluate
from csrec.search import GridConfig

pytestmark = pytest.mark.ray



def test_smoke_grid_end_to_end(ray_session, tmp_path, grid_main, capfd):
    """grid.py --smoke on one backbone: every method, results.parquet, best vectors and models, Table 3,
    and a quiet console: one line per trial start and end, one summary per cell, the table."""
    run_dir = tmp_path / "smoke"
    capfd.readouterr()
    started = time.perf_counter()
    rc = grid_main(["--smoke", "--backbones", "gru4rec", "--storage-path", str(run_dir)])
    wall = time.perf_counter() - started
    output = capfd.readouterr()
    assert rc == 0
    results = pd.read_parquet(run_dir / "results.parquet")
    assert set(results["method"]) == {"base", "softrec", "csrec-m", "csrec-d", "csrec-t"}
    assert len(results) == 1 + 4 * 2  # Base: one trial; each soft-label method: --num-samples 2
    assert set(results["status"]) <= {"completed", "stopped"}
    assert {"config/beta", "config/temperature", "config/num_teachers", "config/subsample", "config/alpha",
            "valid/best_ndcg@10", "test/ndcg@10", "test/recall+@10"} <= set(results.columns)
    # CSRec-T trials have α; CSRec-M trials do not (conditional space).
    assert results.loc[results["method"] == "csrec-m", "config/alpha"].isna().all()
    assert results.loc[results["method"] == "csrec-t", "config/alpha"].notna().all()
    assert results.groupby("method")["is_best"].sum().eq(1).all()
    assert (results["peak_rss_mib"] > 100).all()  # each trial's process: torch alone takes more than that
    # Finished and stopped trials leave no resumable state, in the run or in their working directories.
    assert not list(run_dir.rglob("training_state.pt"))
    assert not any(sweep.trial.work_dir(trial_id).exists() for trial_id in results["trial_id"])
    soft = results["method"] != "base"
    assert (results.loc[soft, "store_bytes"] > 0).all() and (results.loc[~soft, "store_bytes"] == 0).all()
    best = np.load(run_dir / "best" / "synthetic__gru4rec__csrec-m.npz")
    assert {"test_ranks", "test_positive", "recall@10", "ndcg@10"} <= set(best.files)
    table = (run_dir / "table.md").read_text()
    assert "## synthetic" in table and "| gru4rec | csrec-t |" in table and "NDCG+@10" in table
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(cell["complete"] for cell in summary["cells"])
    trained = summary["teachers_trained"]

    lines = (output.out + output.err).splitlines()
    for text in ("Trial status", "╭", "tensorboard", "Token authentication", "A new study created"):
        assert not any(text in line for line in lines), text  # Tune's tables and inapplicable warnings: --verbose only
    for trial_id in results["trial_id"]:
        assert sum(f"trial {trial_id}  started" in line for line in lines) == 1
        assert sum((f"trial {trial_id}  done" in line or f"trial {trial_id}  stopped early" in line)
                   and "MiB" in line for line in lines) == 1  # the end line gives the trial's peak memory
    assert sum(line.startswith("[csrec.sweep] synthetic / gru4rec /") for line in lines) == 5  # once per cell
    # A trial that trains teachers itself says so: each teacher's start and end (TeacherProgress),
    # under the id of the trial that trained it.
    said = [line for line in lines if any(f"trial {t}  teacher " in line for t in results["trial_id"])]
    assert trained >= 4
    assert sum("training (at most 2 epochs)" in line for line in said) == trained
    assert sum("trained in" in line for line in said) == trained
    assert "| gru4rec | csrec-t |" in output.out and len(lines) < 80

    # Each cell keeps its best trial's student: loaded back, it ranks the test sequences as that trial did.
    data = load_dataset(GridConfig.from_argv(["--smoke"]).data_config("synthetic"))
    for cell in summary["cells"]:
        model_path = run_dir / "best" / f"synthetic__gru4rec__{cell['method']}.model.pt"
        assert cell["best_model"] == str(model_path) and model_path.is_file()
        model = artifacts.load(model_path, data=data)
        best_ranks = np.load(run_dir / "best" / f"synthetic__gru4rec__{cell['method']}.npz")["test_ranks"]
        assert np.array_equal(evaluate(model.model, data, "test").ranks, best_ranks)
    model = artifacts.load(run_dir / "best" / "synthetic__gru4rec__csrec-m.model.pt")
    start, end = data.offsets[0], data.offsets[1]
    history = model.item_ids[data.items[start:end - 2] - 1]  # a sequence's raw item ids, less its valid/test items
    top = model.recommend([history, history[:3]], k=5)
    assert top.items.shape == (2, 5) and not set(top.items[0]) & set(history)
    print(f"\nsmoke (1 backbone, 5 methods): {len(results)} trials, {trained} teachers trained, {wall:.1f}s wall")


def test_concurrent_trials_share_one_soft_label_build(ray_session, tiny, tmp_path):
    """Three trials need the same store (m fixed at 2, T outside the fingerprint): built once."""
    result = sweep.tune(
        "synthetic", "gru4rec", "csrec-m", num_samples=3, search="optuna", storage_path=tmp_path,
        num_teachers=2, batch_size=32, prebuild=False, verbose=0, **tiny,
    )
    frame = result.trials
    assert result.complete and (frame["status"] != "error").all()
    assert frame["store_fingerprint"].nunique() == 1
    fingerprint = frame["store_fingerprint"].iloc[0]
    stats = sweep.registry_stats()
    assert stats["builds"][fingerprint] == 1
    events = [e["event"] for e in stats["log"] if e["fp"] == fingerprint]
    assert events.count("claim") == 1 and events.count("build") == 1
    assert events.count("hit") + events.count("hit-after-wait") == 2
    assert sorted(frame["store_event"]) == ["built", "hit", "hit"]
    # Trials that received the store mapped it read-only from the object store (no copy).
    assert frame.loc[frame["store_event"] == "hit", "store_zero_copy"].all()
    assert result.teachers_trained == 2  # the two teachers, trained once by the building trial
    store = ray.get(sweep.store_refs()[fingerprint])
    assert store.mode == "factored" and store.meta["fingerprint"] == fingerprint


def test_failing_trial_is_retried_then_recorded_while_the_sweep_completes(ray_session, tiny, tmp_path):
    """β = 0.5 always fails (retried once, then recorded); β = 0.75 fails once at epoch 2 and its
    retry resumes the student's training from the epoch-1 checkpoint, reporting epoch 1 once."""
    faults = [sweep.FailWhen({"beta": 0.5}), sweep.FailWhen({"beta": 0.75}, epoch=2, once=str(tmp_path / "once"))]
    result = sweep.tune(
        "synthetic", "gru4rec", "softrec", search="paper-grid", storage_path=tmp_path, temperature=3.0,
        max_failures=1, fault=faults, asha=False, verbose=0, **tiny,
    )
    frame = result.trials.set_index("config/beta")
    assert sorted(frame.index) == [0.25, 0.5, 0.75]  # the paper's β values, T fixed at 3
    assert frame.loc[0.5, "status"] == "error" and "injected failure" in frame.loc[0.5, "error"]
    assert (frame.loc[[0.25, 0.75], "status"] == "completed").all()

    def attempts(beta):
        return (Path(frame.loc[beta, "trial_path"]) / "attempts.log").read_text().splitlines()

    assert len(attempts(0.5)) == 2  # first run + one retry (max_failures=1)
    assert len(attempts(0.75)) == 2 and len(attempts(0.25)) == 1
    assert attempts(0.75)[0].endswith("starts at epoch 1") and attempts(0.75)[1].endswith("resumed after epoch 1")
    progress = pd.read_csv(Path(frame.loc[0.75, "trial_path"]) / "progress.csv")
    assert progress["training_iteration"].tolist() == [1, 2, 3]  # epochs 1, 2 and the final test report
    assert frame.loc[0.75, "training_iteration"] == tiny["epochs"] + 1
    assert result.complete and result.best_config["beta"] in (0.25, 0.75)
    assert set(result.best_test) >= {"recall@10", "ndcg@10"}
    assert list(result.errors) == [frame.loc[0.5, "trial_id"]]


def test_existing_experiment_needs_resume(ray_session, tiny, tmp_path):
    kwargs = dict(search="paper-grid", storage_path=tmp_path, verbose=0, **dict(tiny, epochs=1))
    first = sweep.tune("synthetic", "gru4rec", "base", **kwargs)
    with pytest.raises(FileExistsError):
        sweep.tune("synthetic", "gru4rec", "base", resume=False, **kwargs)
    again = sweep.tune("synthetic", "gru4rec", "base", resume=True, **kwargs)  # finished: nothing reruns
    assert again.trials["trial_id"].tolist() == first.trials["trial_id"].tolist()
    attempts = (Path(first.best_trial_path) / "attempts.log").read_text().splitlines()
    assert len(attempts) == 1


def test_a_moved_run_directory_resumes_with_this_versions_callbacks(ray_session, tiny, tmp_path):
    """Tune pickles a run's callbacks with it; a resume uses new ones, so a run directory that was
    moved (or written by an older csrec, whose callbacks lack newer attributes) keeps logging in place."""
    import shutil

    from csrec.sweep.tuner import OUTCOMES_FILE

    kwargs = dict(search="paper-grid", verbose=0, max_failures=0, fault=sweep.FailWhen({}, epoch=1), **dict(tiny, epochs=1))
    first = sweep.tune("synthetic", "gru4rec", "base", storage_path=tmp_path / "before", **kwargs)
    assert list(first.errors)
    shutil.move(tmp_path / "before", tmp_path / "after")
    again = sweep.tune("synthetic", "gru4rec", "base", storage_path=tmp_path / "after", resume=True, **kwargs)
    assert list(again.errors) == list(first.errors)  # the errored trial was retried, and failed again
    (outcomes,) = (tmp_path / "after").glob(f"*/{OUTCOMES_FILE}")
    assert [json.loads(line)["event"] for line in outcomes.read_text().splitlines()] == ["error", "error"]
    assert not (tmp_path / "before").exists()


def test_grid_runs_sharing_a_teacher_pool_count_their_own_teachers(ray_session, tmp_path, grid_main):
    pool = tmp_path / "pool"
    common = ["--smoke", "--backbones", "gru4rec", "--methods", "csrec-m", "--search", "paper-grid", "--set",
              "beta=0.5", "--set", "temperature=3", "--epochs", "1", "--teacher-pool", str(pool), "--verbose", "0"]
    main = grid_main
    assert main(common + ["--storage-path", str(tmp_path / "a")]) == 0
    assert main(common + ["--storage-path", str(tmp_path / "b")]) == 0
    first, second = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("a", "b"))
    assert first["teachers_trained"] == 2 and second["teachers_trained"] == 0  # b reused a's teachers
    assert first["teacher_pool"] == second["teacher_pool"] == str(pool.resolve())
    assert len(list(pool.glob("teacher-*.pt"))) == 2
