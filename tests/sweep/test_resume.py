"""A sweep whose driver is killed continues with ``grid.py --resume`` and ends where an
uninterrupted run of the same command ends.

The driver is a subprocess joined to the session's Ray runtime (a Base cell, then a CSRec-M cell
of three Optuna trials under ASHA, one at a time); it is SIGKILLed by its PID once two CSRec-M
trials have finished.  The resumed run must not rerun those two, must finish exactly the trials
of the command, must carry on the same Optuna study (the searcher state survives), and must write
the same ``table.md`` and report Table 3, byte for byte, as the same command run without a kill.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from csrec.report.runs import Run
from csrec.report.tables import main_table

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def _finished(outcomes: Path) -> list[str]:
    if not outcomes.is_file():
        return []
    lines = [json.loads(line) for line in outcomes.read_text().splitlines() if line.strip()]
    return [e["trial_id"] for e in lines if e["event"] == "complete"]


def _find_study(obj, depth: int = 0):
    if depth > 4 or obj is None:
        return None
    if hasattr(obj, "trials") and hasattr(obj, "ask"):
        return obj
    items = obj.items() if isinstance(obj, dict) else getattr(obj, "__dict__", {}).items()
    for key, value in items:
        if key == "_ot_study":
            return value
        if isinstance(value, (str, bytes, int, float, list, tuple)):
            continue
        found = _find_study(value, depth + 1)
        if found is not None:
            return found
    return None


def _tables(run_dir: Path) -> tuple[str, str]:
    """The run's table.md and the report's Table 3 (Markdown) of ``run_dir``."""
    return (run_dir / "table.md").read_text(), main_table(Run.load(run_dir), "table3").markdown()


def test_killed_driver_resumes_without_rerunning_finished_trials(ray_session, tmp_path, grid_main):
    def command(run_dir: Path) -> list[str]:
        return [
            sys.executable, str(REPO / "sweeps" / "grid.py"), "--smoke", "--backbones", "gru4rec", "--methods",
            "base,csrec-m", "--num-samples", "3", "--epochs", "2", "--max-concurrent", "1",
            "--storage-path", str(run_dir), "--address", ray_session,
        ]

    # The uninterrupted run: the same command line, its driver in this process (already joined to the runtime).
    assert grid_main(command(tmp_path / "reference")[2:]) == 0
    env = dict(os.environ)

    run_dir = tmp_path / "run"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command(run_dir), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    outcomes = run_dir / "synthetic-gru4rec-csrec-m-optuna" / "csrec_trial_outcomes.jsonl"
    deadline = time.monotonic() + 180
    try:
        while len(_finished(outcomes)) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first two trials did not finish in time"
            time.sleep(0.3)
        time.sleep(0.5)  # well before the third trial ends (a trial's start-up alone takes longer)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        log.close()
    done_before = _finished(outcomes)
    assert len(done_before) == 2, "the driver should have been killed mid-sweep"

    resumed = subprocess.run(command(run_dir) + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming synthetic-gru4rec-csrec-m-optuna: {len(done_before)} finished trial(s) kept" in resumed.stdout

    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 4 and set(results["status"]) <= {"completed", "stopped"}
    assert _tables(run_dir) == _tables(tmp_path / "reference")  # the same command, the same tables
    results = results[results["method"] == "csrec-m"]
    for trial_id in done_before:
        row = results[results["trial_id"] == trial_id].iloc[0]
        attempts = (Path(row["trial_path"]) / "attempts.log").read_text().splitlines()
        assert len(attempts) == 1, f"finished trial {trial_id} was rerun"
    # The Optuna study continued: it holds all three trials, including those asked before the kill.
    states = sorted((run_dir / "synthetic-gru4rec-csrec-m-optuna").glob("searcher-state-*.pkl"))
    with open(states[-1], "rb") as handle:
        study = _find_study(pickle.load(handle))
    assert study is not None and len(study.trials) == 3
    before = results[results["trial_id"].isin(done_before)]
    asked = [t.params for t in study.trials]
    for _, row in before.iterrows():
        assert any(abs(p["beta"] - row["config/beta"]) < 1e-12 for p in asked)
    # Teachers were reused across the kill: the pool holds exactly the union of what trials needed.
    assert len(list(run_dir.glob("teachers/teacher-*.pt"))) == int(results["config/num_teachers"].max())


def test_compact_copy_of_a_run_resumes_as_finished_on_another_machine(ray_session, tmp_path, grid_main, capsys):
    """What a user commits of a long run (``sweeps/report.py RUN --compact-copy DIR``: results.parquet,
    summary.json, run.json, table.md and best/ without model weights) is enough to continue it elsewhere: ``--resume`` on the copy keeps its
    finished cells without rerunning them, and the report reads the teachers from best/*.trial.json."""
    import shutil

    from csrec.report.tables import teacher_table

    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "base,csrec-m", "--num-samples", "1",
            "--epochs", "2", "--max-concurrent", "1", "--address", ray_session, "--model", "gru4rec.embedding_dim=24"]
    original = tmp_path / "original"
    assert grid_main(argv + ["--storage-path", str(original)]) == 0
    trial = json.loads((original / "best" / "synthetic__gru4rec__csrec-m.trial.json").read_text())
    assert trial["config"]["model"]["embedding_dim"] == 24  # --model reaches the student ...
    assert {t["spec"]["model"]["embedding_dim"] for t in trial["teachers"]} == {24}  # ... and its teachers
    copy = tmp_path / "copy"
    from csrec.report.cli import main as report_main

    assert report_main([str(original), "--compact-copy", str(copy)]) == 0
    assert sorted(p.name for p in copy.iterdir()) == ["best", "results.parquet", "run.json", "summary.json", "table.md"]
    assert sorted(p.name for p in (copy / "best").iterdir()) == [
        "synthetic__gru4rec__base.npz", "synthetic__gru4rec__base.trial.json",
        "synthetic__gru4rec__csrec-m.npz", "synthetic__gru4rec__csrec-m.trial.json"]
    shutil.rmtree(original)  # the trial directories and the teacher pool are gone with the machine

    capsys.readouterr()
    assert grid_main(argv + ["--storage-path", str(copy), "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished in an earlier invocation") == 2 and "trials in 0/0 cells (+2 kept" in out
    assert not any(p.is_dir() and p.name.startswith("synthetic-") for p in copy.iterdir()), "a cell was rerun"
    reference = tmp_path / "reference"
    assert grid_main(argv + ["--storage-path", str(reference)]) == 0
    assert _tables(copy) == _tables(reference)
    run = Run.load(copy)
    teachers = run.teacher_infos("synthetic", "gru4rec", "csrec-m")
    m = int(run.best_row("synthetic", "gru4rec", "csrec-m")["param/num_teachers"])
    assert len(teachers) == m and all("recall@10" in t["test"] for t in teachers)
    assert teacher_table(run).markdown() == teacher_table(Run.load(reference)).markdown()


def test_redo_runs_a_finished_cell_again_and_replaces_its_rows(ray_session, tmp_path, grid_main, capsys):
    """``--redo DATASET/BACKBONE/METHOD`` on a resumed run: that cell's Tune experiment is moved aside
    and the cell runs from scratch (the same seeds give the same table); the other cells are kept."""
    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "base,softrec", "--num-samples", "1",
            "--epochs", "2", "--max-concurrent", "1", "--address", ray_session]
    run_dir = tmp_path / "run"
    assert grid_main(argv + ["--storage-path", str(run_dir)]) == 0
    before = _tables(run_dir)
    rows_before = pd.read_parquet(run_dir / "results.parquet")
    base_trials = sorted(p.name for p in (run_dir / "synthetic-gru4rec-base-optuna").glob("trial_*"))

    capsys.readouterr()
    assert grid_main(argv + ["--storage-path", str(run_dir), "--resume", "--redo", "synthetic/gru4rec/softrec"]) == 0
    out = capsys.readouterr().out
    aside = [p for p in run_dir.iterdir() if p.name.startswith("synthetic-gru4rec-softrec-optuna.redo-")]
    assert len(aside) == 1 and f"moved synthetic-gru4rec-softrec-optuna aside to {aside[0].name}" in out
    assert (run_dir / "synthetic-gru4rec-softrec-optuna").is_dir()  # run again from scratch
    assert "softrec  trial" in out and "started" in out
    assert sorted(p.name for p in (run_dir / "synthetic-gru4rec-base-optuna").glob("trial_*")) == base_trials
    rows = pd.read_parquet(run_dir / "results.parquet")
    assert len(rows) == len(rows_before) and sorted(rows["method"]) == sorted(rows_before["method"])
    assert _tables(run_dir) == before

    # The same command again (say after an interruption) continues the redone cell, not a second redo.
    capsys.readouterr()
    assert grid_main(argv + ["--storage-path", str(run_dir), "--resume", "--redo", "synthetic/gru4rec/softrec"]) == 0
    out = capsys.readouterr().out
    assert "--redo synthetic/gru4rec/softrec: already redone" in out and "moved" not in out
    assert len([p for p in run_dir.iterdir() if ".redo-" in p.name]) == 1
    assert _tables(run_dir) == before

    # On a compact copy (no Tune experiments) the redo leaves a marker, so that it too happens once.
    from csrec.report.cli import main as report_main

    copy = tmp_path / "copy"
    assert report_main([str(run_dir), "--compact-copy", str(copy)]) == 0
    for attempt in range(2):
        capsys.readouterr()
        assert grid_main(argv + ["--storage-path", str(copy), "--resume", "--redo", "synthetic/gru4rec/softrec"]) == 0
        out = capsys.readouterr().out
        assert ("runs again from scratch" in out) == (attempt == 0) and ("already redone" in out) == (attempt == 1)
    (marker,) = [p for p in copy.iterdir() if ".redo-" in p.name]
    assert (marker / "REDO.txt").is_file() and _tables(copy) == before

    # A redo interrupted before its cell started (while its teachers trained, say) is not taken for the
    # earlier, finished run by the next plain --resume: summary.json marks the cell unfinished.
    from csrec.search import GridConfig
    from csrec.sweep.grid import _set_aside

    interrupted = tmp_path / "interrupted"
    assert report_main([str(run_dir), "--compact-copy", str(interrupted)]) == 0
    config = GridConfig.from_argv(argv + ["--storage-path", str(interrupted), "--resume"])
    cells = config.cells(config.usable_datasets())
    assert _set_aside(interrupted, cells, ("synthetic/gru4rec/softrec",)) == {("synthetic", "gru4rec", "softrec", None)}
    capsys.readouterr()
    assert grid_main(argv + ["--storage-path", str(interrupted), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "base: finished in an earlier invocation" in out
    assert "softrec: finished in an earlier invocation" not in out and "softrec  trial" in out
    assert (interrupted / "synthetic-gru4rec-softrec-optuna").is_dir() and _tables(interrupted) == before
    assert all(c["complete"] and "redo" not in c for c in json.loads((interrupted / "summary.json").read_text())["cells"])

    # A cell the grid does not have, and --redo without --resume, are errors that say what to do.
    from csrec.errors import ConfigError

    with pytest.raises(ConfigError, match="--redo synthetic/gru4rec/csrec-t: not a cell of this grid"):
        grid_main(argv + ["--storage-path", str(run_dir), "--resume", "--redo", "synthetic/gru4rec/csrec-t"])
    with pytest.raises(ConfigError, match="pass --resume or --resume-or-start too"):
        grid_main(argv + ["--storage-path", str(tmp_path / "other"), "--redo", "synthetic/gru4rec/base"])
    with pytest.raises(ConfigError, match="DATASET/BACKBONE/METHOD"):
        grid_main(argv + ["--storage-path", str(run_dir), "--resume", "--redo", "softrec"])


def test_resumed_cell_with_every_trial_finished_trains_no_teacher(ray_session, tmp_path, grid_main, capsys):
    """A finished CSRec cell resumed after its teachers left the pool (or after their pool key changed
    with a fix to how they train) does not train them again: no trial needs them."""
    argv = ["--smoke", "--backbones", "gru4rec", "--methods", "csrec-m", "--num-samples", "1", "--epochs", "2",
            "--set", "num_teachers=2", "--max-concurrent", "1", "--address", ray_session]
    run_dir = tmp_path / "run"
    assert grid_main(argv + ["--storage-path", str(run_dir)]) == 0
    before = _tables(run_dir)
    pool = run_dir / "teachers"
    assert len(list(pool.glob("teacher-*.pt"))) == 2
    for path in pool.glob("teacher-*.pt"):
        path.unlink()
    capsys.readouterr()
    assert grid_main(argv + ["--storage-path", str(run_dir), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "every trial finished in an earlier invocation: its teachers and soft labels are not prepared again" in out
    assert "training (at most" not in out and not list(pool.glob("teacher-*.pt"))
    assert _tables(run_dir) == before
