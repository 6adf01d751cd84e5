"""Teacher pool on Ray: each teacher trained once (Ray tasks), reuse across m, the TorchTrainer route."""

from __future__ import annotations

import pytest
import ray

import csrec.sweep as sweep
from csrec.methods import TeacherPool, teacher_specs
from csrec.data import load_dataset
from csrec.errors import ConfigError

pytestmark = pytest.mark.ray


def test_m2_then_m3_trains_exactly_three_teachers(ray_session, tiny, tmp_path, capsys):
    pool_dir = tmp_path / "teachers"
    m2 = sweep.base_config("synthetic", "gru4rec", "csrec-m", num_teachers=2, **tiny)
    m3 = sweep.base_config("synthetic", "gru4rec", "csrec-m", num_teachers=3, **tiny)

    registry = sweep.store_registry()  # the driver's: it may hold earlier tests' notes, never printed again
    ray.get(registry.note.remote("teacher-task", {"teacher": "an earlier cell's", "event": "started", "epochs": 9}))
    capsys.readouterr()
    first = sweep.train_teachers([m2], pool_dir, {"teacher_cpus": 1}, sweep="reuse", notes=registry)
    assert len(first.trained) == 2 and len(first.reused) == 0
    lines = capsys.readouterr().out.splitlines()  # one line up front, one per teacher as it finishes
    assert lines[0] == "[csrec.sweep] training 2 teacher(s) (0 already in the pool)"
    assert sum("trained in" in line and "MiB" in line for line in lines) == 2 and any("(2/2)" in line for line in lines)
    # The tasks' own progress reaches the driver through the notes actor: each teacher's start.
    started = [line for line in lines if line.endswith("training (at most 2 epochs)")]
    assert len(started) == 2 and all(line.startswith("[csrec.sweep] teacher gru4rec seed=") for line in started)
    assert not any("an earlier cell's" in line for line in lines), lines
    second = sweep.train_teachers([m3], pool_dir, {"teacher_cpus": 1}, sweep="reuse")
    assert len(second.trained) == 1 and len(second.reused) == 2
    assert len(list(pool_dir.glob("teacher-*.pt"))) == 3
    records = sweep.read_teacher_records(pool_dir)
    assert len(records) == 3 and all(r["trained_by"] == "ray-task" and r["node_id"] for r in records)
    assert all(r["peak_rss_mib"] > 100 for r in records)  # the training task's memory high-water mark
    assert not (pool_dir / "partial").exists()  # resumable states go once their teachers are saved
    # Every teacher the student needs is now in the pool (a csrec.fit with this pool trains none).
    data = load_dataset(m3.data)
    pool = TeacherPool(pool_dir)
    assert all(pool.has(s, data, m3.train) for s in teacher_specs(m3))
    overhead = first.launch_overheads + second.launch_overheads
    assert len(overhead) == 3 and max(overhead) < 60
    print(f"\nRay-task teachers: {first.summary()}\n                   {second.summary()}")


def test_robust_teacher_trains_after_its_side_teacher(ray_session, tiny, tmp_path):
    config = sweep.base_config("synthetic", "gru4rec", "csrec-t", subsample=0.8, alpha=0.5, **tiny)
    report = sweep.train_teachers([config], tmp_path / "teachers", sweep="robust")
    assert len(report.trained) == 2
    by_key = {r["key"]: r for r in report.records}
    robust = next(r for r in by_key.values() if r["spec"]["robust"])
    side = next(r for r in by_key.values() if not r["spec"]["robust"])
    assert side["finished_at"] <= robust["finished_at"]


def test_torchtrainer_route_trains_a_data_parallel_teacher_once(ray_session, tiny, tmp_path):
    """Two gloo workers, gradients averaged each step; costs ~25 s of Ray Train start-up."""
    pool_dir = tmp_path / "teachers"
    config = sweep.base_config("synthetic", "gru4rec", "csrec-d", num_teachers=1, subsample=0.8, **tiny)
    resources = {"teacher_workers": 2, "teacher_cpus": 1}
    report = sweep.train_teachers([config], pool_dir, resources, storage_path=tmp_path, sweep="ddp")
    assert report.route == "torchtrainer"
    (record,) = report.records
    assert record["trained"] and record["workers"] == 2 and record["trained_by"] == "torchtrainer"
    run_dir = tmp_path / "train_runs" / f"teacher-{record['key']}"
    assert run_dir.is_dir()  # Train checkpoints, named by key
    # Each epoch's checkpoint holds every rank's whole training state, for a restarted run to continue.
    assert {p.name for p in run_dir.rglob("rank*.state.pt")} == {"rank0.state.pt", "rank1.state.pt"}
    assert len(list(pool_dir.glob("teacher-*.pt"))) == 1
    print(f"\nTorchTrainer teacher: launch overhead {record['launch_overhead_s']:.1f}s, "
          f"training {record['seconds']:.1f}s, fit() {record['fit_s']:.1f}s")
    again = sweep.train_teachers([config], pool_dir, resources, storage_path=tmp_path, sweep="ddp")
    assert len(again.trained) == 0 and again.wall_s < 5  # pooled: no trainer is even started


def test_run_directories_sharing_a_teacher_pool_train_each_teacher_once(ray_session, tiny, tmp_path):
    """Two runs (say Optuna, then the paper grid) with one --teacher-pool: the second trains none."""
    pool = tmp_path / "pool"
    kwargs = dict(search="paper-grid", teacher_pool=pool, asha=False, verbose=0, **dict(tiny, epochs=1))
    first = sweep.tune("synthetic", "gru4rec", "csrec-m", storage_path=tmp_path / "run-a", beta=0.5,
                       temperature=3.0, **kwargs)
    second = sweep.tune("synthetic", "gru4rec", "csrec-m", storage_path=tmp_path / "run-b", beta=0.25,
                        temperature=3.0, **kwargs)
    assert first.complete and second.complete
    assert first.teachers_trained == 2 and second.teachers_trained == 0
    assert len(list(pool.glob("teacher-*.pt"))) == 2
    assert not (tmp_path / "run-a" / "teachers").exists() and not (tmp_path / "run-b" / "teachers").exists()
    # The records say which run trained them, so a shared pool's counts stay per run.
    labels = {r["sweep"] for r in sweep.read_teacher_records(pool)}
    assert labels == {f"{(tmp_path / 'run-a').resolve()}:synthetic-gru4rec-csrec-m-paper-grid"}


def test_ctrl_c_while_teachers_train_cancels_them_and_says_what_is_kept(ray_session, tiny, tmp_path, monkeypatch,
                                                                       capsys):
    import ray

    import csrec.sweep.teachers as teachers

    cancelled = []
    monkeypatch.setattr(teachers.ray, "wait", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    monkeypatch.setattr(teachers.ray, "cancel", lambda ref, force=False: cancelled.append((ref, force)))
    config = sweep.base_config("synthetic", "gru4rec", "csrec-m", num_teachers=2, **tiny)
    with pytest.raises(KeyboardInterrupt):
        sweep.train_teachers([config], tmp_path / "teachers", {"teacher_cpus": 1}, sweep="ctrl-c")
    assert len(cancelled) == 2 and all(force for _, force in cancelled)
    assert "interrupted: 0 of 2 teacher(s) finished and pooled; 2 stopped" in capsys.readouterr().out
    monkeypatch.undo()
    for ref, _ in cancelled:  # leave no task running for the next test
        ray.cancel(ref, force=True)


def test_a_restarted_torchtrainer_teacher_gets_each_ranks_whole_training_state_back(tmp_path):
    from ray.train import Checkpoint

    from csrec.sweep.teachers import _restore_rank_state

    checkpoint_dir = tmp_path / "checkpoint"
    checkpoint_dir.mkdir()
    (checkpoint_dir / "rank1.state.pt").write_bytes(b"rank one's state")
    local = tmp_path / "local" / "teacher-k-rank1.state.pt"
    _restore_rank_state(Checkpoint.from_directory(checkpoint_dir), "rank1.state.pt", local)
    assert local.read_bytes() == b"rank one's state"
    # No checkpoint (a fresh run), or none for this rank: a stale local file of an earlier run goes.
    _restore_rank_state(Checkpoint.from_directory(checkpoint_dir), "rank0.state.pt", local)
    assert not local.exists()
    local.write_bytes(b"stale")
    _restore_rank_state(None, "rank1.state.pt", local)
    assert not local.exists()


def test_more_cpus_per_teacher_than_any_node_has_is_an_error_not_a_hang(ray_session, tiny, tmp_path):
    config = sweep.base_config("synthetic", "gru4rec", "csrec-m", num_teachers=1, **tiny)
    with pytest.raises(ConfigError, match=r"--cpus-per-teacher 3: no node .*largest has 2\)"):
        sweep.train_teachers([config], tmp_path / "teachers", {"teacher_cpus": 3})
    report = sweep.train_teachers([config], tmp_path / "teachers", {"teacher_cpus": 2}, verbose=False)
    assert len(report.trained) == 1
