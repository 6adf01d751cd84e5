"""A sweep whose driver is killed continues with ``grid.py --resume``.

The driver is a subprocess joined to the session's Ray runtime; it is SIGKILLed once two of its
four Optuna trials have finished.  The resumed run must not rerun those two, must finish exactly
four trials, and must carry on the same Optuna study (the searcher state survives).
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


def test_killed_driver_resumes_without_rerunning_finished_trials(ray_session, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "sweeps" / "grid.py"), "--smoke", "--backbones", "gru4rec", "--methods", "csrec-m",
        "--num-samples", "4", "--epochs", "3", "--max-concurrent", "1", "--storage-path", str(run_dir),
        "--address", ray_session, "--verbose", "0",
    ]
    env = dict(os.environ)
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    outcomes = run_dir / "synthetic-gru4rec-csrec-m-optuna" / "csrec_trial_outcomes.jsonl"
    deadline = time.monotonic() + 180
    try:
        while len(_finished(outcomes)) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first two trials did not finish in time"
            time.sleep(0.3)
        time.sleep(2.0)  # let Tune snapshot the experiment state after the second completion
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        log.close()
    done_before = _finished(outcomes)
    assert 2 <= len(done_before) < 4, "the driver should have been killed mid-sweep"

    resumed = subprocess.run(command + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 4 and set(results["status"]) <= {"completed", "stopped"}
    for trial_id in done_before:
        row = results[results["trial_id"] == trial_id].iloc[0]
        attempts = (Path(row["trial_path"]) / "attempts.log").read_text().splitlines()
        assert len(attempts) == 1, f"finished trial {trial_id} was rerun"
    # The Optuna study continued: it holds all four trials, including those asked before the kill.
    states = sorted((run_dir / "synthetic-gru4rec-csrec-m-optuna").glob("searcher-state-*.pkl"))
    with open(states[-1], "rb") as handle:
        study = _find_study(pickle.load(handle))
    assert study is not None and len(study.trials) == 4
    before = results[results["trial_id"].isin(done_before)]
    asked = [t.params for t in study.trials]
    for _, row in before.iterrows():
        assert any(abs(p["beta"] - row["config/beta"]) < 1e-12 for p in asked)
    # Teachers were reused across the kill: the pool holds exactly the union of what trials needed.
    assert len(list(run_dir.glob("teachers/teacher-*.pt"))) == int(results["config/num_teachers"].max())
