"""Fast checks of the sweep layer's parts that need no Ray runtime: trial configs, teacher specs, locks."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from csrec.data import SyntheticConfig, load_dataset
from csrec.sweep.teachers import collect_teacher_specs, file_lock
from csrec.sweep.trial import FailWhen, SweepContext
from csrec.sweep.tuner import base_config

TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)






def test_context_builds_the_trial_config():
    base = base_config("synthetic", "gru4rec", "csrec-d", epochs=1, synthetic=SyntheticConfig(**TINY))
    config = SweepContext(base=base, pool_dir="", sweep="").config_for(
        {"beta": 0.3, "temperature": 2, "num_teachers": 3.0, "subsample": 0.6})
    assert config.method.num_teachers == 3 and isinstance(config.method.num_teachers, int)
    assert (config.method.beta, config.method.temperature, config.method.subsample) == (0.3, 2.0, 0.6)
    assert config.train == base.train and config.data == base.data and not config.train.progress


def test_collect_teacher_specs_dedups_and_orders_side_teachers_first():
    syn = SyntheticConfig(**TINY)
    data = load_dataset(base_config("synthetic", "gru4rec", "base", synthetic=syn).data)
    load = lambda _config: data  # noqa: E731
    m2 = base_config("synthetic", "gru4rec", "csrec-m", num_teachers=2, epochs=1, synthetic=syn)
    m3 = base_config("synthetic", "gru4rec", "csrec-m", num_teachers=3, epochs=1, synthetic=syn)
    assert len(collect_teacher_specs([m2, m3], load=load)) == 3  # m = 3 reuses the two of m = 2
    t = base_config("synthetic", "gru4rec", "csrec-t", alpha=0.25, epochs=1, synthetic=syn)
    t2 = base_config("synthetic", "gru4rec", "csrec-t", alpha=0.75, epochs=1, synthetic=syn)
    d = base_config("synthetic", "gru4rec", "csrec-d", num_teachers=1, subsample=0.8, epochs=1, synthetic=syn)
    triples = collect_teacher_specs([t, t2, d], load=load)
    robust = [s for s, _, _ in triples if s.robust]
    assert len(robust) == 2 and [s.robust for s, _, _ in triples] == [False, True, True]
    # CSRec-D's first p = 0.8 teacher is the same teacher as CSRec-T's side teacher.
    assert len(triples) == 3


def test_file_lock_excludes_a_second_holder(tmp_path):
    path = tmp_path / "locks" / "k.lock"
    seen = []
    with file_lock(path) as first:
        assert first

        def other():
            with file_lock(path, blocking=False) as got:
                seen.append(got)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [False]
    with file_lock(path, blocking=False) as again:
        assert again


def test_fail_when_matches_params_and_epoch():
    fault = FailWhen({"beta": 0.5}, epoch=1)
    fault({"beta": 0.25}, 1)
    fault({"beta": 0.5}, 2)
    with pytest.raises(RuntimeError, match="injected failure"):
        fault({"beta": 0.5}, 1)


def test_an_optuna_space_pickled_under_the_old_module_name_still_loads():
    import pickle

    from csrec.search.space import OptunaSpace

    old = pickle.dumps(OptunaSpace("csrec-d"), protocol=0).replace(b"csrec.search.space", b"csrec.sweep.space")
    assert pickle.loads(old).names == OptunaSpace("csrec-d").names


def test_select_best_breaks_ties_by_configuration_not_row_order():
    import pandas as pd

    from csrec.sweep.trial import METRIC
    from csrec.sweep.tuner import select_best

    rows = pd.DataFrame([
        {"trial_id": "t1", "status": "completed", "config/beta": 0.698, "config/temperature": 6.77, METRIC: 0.2474},
        {"trial_id": "t2", "status": "completed", "config/beta": 0.255, "config/temperature": 4.99, METRIC: 0.2474},
        {"trial_id": "t3", "status": "stopped", "config/beta": 0.1, "config/temperature": 1.0, METRIC: 0.3},
    ])
    assert select_best(rows)["trial_id"] == select_best(rows.iloc[::-1])["trial_id"] == "t2"  # stopped never wins
    assert select_best(rows[rows["status"] == "stopped"]) is None


def test_check_address_names_the_address_and_the_remedy():
    from csrec.errors import CSRecError
    from csrec.sweep.runtime import ClusterUnreachable, check_address, free_port

    port = free_port()
    with pytest.raises(ClusterUnreachable) as info:
        check_address(f"127.0.0.1:{port}")
    message = str(info.value)
    assert isinstance(info.value, CSRecError) and "\n" not in message
    assert f"no Ray cluster at --address 127.0.0.1:{port}" in message
    assert f"ray start --head --port={port}" in message and "drop --address" in message
    check_address(None)
    check_address("auto")  # Ray finds the cluster itself


def _grid_py(args, tmp_path, timeout=60):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, str(repo / "sweeps" / "grid.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def test_grid_py_with_no_cluster_at_address_fails_fast(tmp_path):
    import time

    from csrec.sweep.runtime import free_port

    port = free_port()
    started = time.monotonic()
    done = _grid_py(["--smoke", "--address", f"127.0.0.1:{port}", "--storage-path", str(tmp_path / "run")],
                    tmp_path, timeout=30)
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"grid.py: no Ray cluster at --address 127.0.0.1:{port} (connecting to 127.0.0.1:{port}: connection refused); "
        f"start one with `ray start --head --port={port}` on that machine, or drop --address to run on a local Ray runtime"
    ]
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_grid_py_resume_of_a_missing_run_is_an_error(tmp_path):
    missing = tmp_path / "typo"
    done = _grid_py(["--smoke", "--resume", "--storage-path", str(missing)], tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (f"grid.py: --resume: {missing} does not exist; check --storage-path, or pass "
                                   f"--resume-or-start to start a run there when there is none")
    assert not missing.exists()


def test_prepare_checks_resume_against_the_run_directory(tmp_path):
    from csrec.errors import ConfigError
    from csrec.search import GridConfig
    from csrec.sweep.grid import _prepare

    def config(*flags):
        return GridConfig.from_argv(["--smoke", "--storage-path", str(tmp_path / "run"), *flags])

    lines = []
    _prepare(tmp_path / "run", config("--resume-or-start"), log=lines.append)
    assert lines == [f"[grid] nothing to resume in {tmp_path / 'run'}: starting a fresh run there"]
    assert (tmp_path / "run").is_dir()
    with pytest.raises(ConfigError, match="holds no sweep run"):  # a directory, but no run in it
        _prepare(tmp_path / "run", config("--resume"))
    (tmp_path / "run" / "run.json").write_text("{}")
    lines.clear()
    _prepare(tmp_path / "run", config("--resume"), log=lines.append)
    _prepare(tmp_path / "run", config("--resume-or-start"), log=lines.append)
    assert lines == []  # there is a run: both continue it, silently
    with pytest.raises(ConfigError, match="exists: pass --resume"):
        _prepare(tmp_path / "run", config())


def test_a_long_trial_prints_progress_lines_at_most_every_interval(capsys):
    from types import SimpleNamespace

    from csrec.sweep.trial import METRIC
    from csrec.sweep.tuner import _TrialLines

    trial = SimpleNamespace(trial_id="t0", config={})
    lines = _TrialLines("yelp/gru4rec/base", epochs=40, every_s=3600)
    for epoch in (1, 2):
        lines.on_trial_result(0, [], trial, {"epoch": epoch, METRIC: 0.0312, "best_epoch": epoch, "final": False})
    assert capsys.readouterr().out == ""  # within the interval: quiet
    lines.every_s = 0
    lines.on_trial_result(0, [], trial, {"epoch": 3, METRIC: 0.0351, "best_epoch": 3, "final": False,
                                         "time_total_s": 95.2})
    lines.on_trial_result(0, [], trial, {"epoch": 4, METRIC: 0.0351, "best_epoch": 3, "final": True})
    assert capsys.readouterr().out == ("  yelp/gru4rec/base  trial t0  epoch 3/40  valid NDCG@10 best so far 0.0351 "
                                       "(epoch 3), 95s\n")


def test_authors_protocol_reaches_every_trial_and_fits_its_weights_to_the_trials_m():
    from csrec.search import GridConfig
    from csrec.sweep.tuner import cell_base_config

    cell = GridConfig.from_argv(["--smoke", "--protocol", "authors", "--methods", "csrec-m"]).cells()[0]
    base = cell_base_config(cell)
    assert (base.train.lr, base.train.batch_unit, base.train.patience, base.method.ensemble) == (1e-3, "targets", 0, "probs")
    assert base.train.epochs == 2  # --smoke's epochs: an explicit value wins over the preset's 80
    ctx = SweepContext(base=base, pool_dir="", sweep="", protocol="authors")
    assert ctx.config_for({"num_teachers": 2}).method.ensemble_weights == (0.1, 0.9)  # the authors' GRU4Rec pair
    assert ctx.config_for({"num_teachers": 3}).method.ensemble_weights is None  # equal weights otherwise
    given = dataclasses.replace(base, method=dataclasses.replace(base.method, ensemble_weights=(0.3, 0.7)))
    # weights the user gave are kept as given (building the store then refuses 2 weights for 3 teachers)
    kept = SweepContext(base=given, pool_dir="", sweep="", protocol="authors").config_for({"num_teachers": 3})
    assert kept.method.ensemble_weights == (0.3, 0.7)


def test_grid_py_says_how_to_continue_after_ctrl_c(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    # The script runs as users run it, in its own process; a sitecustomize makes the sweep raise
    # KeyboardInterrupt as a Ctrl-C would.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import csrec.sweep\n"
        "def interrupted(config):\n"
        "    raise KeyboardInterrupt\n"
        "csrec.sweep.run_grid = interrupted\n")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(repo / "sweeps" / "grid.py"), "--smoke", "--storage-path",
                           str(tmp_path / "run")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "interrupted" in done.stderr and "--resume" in done.stderr


def test_tunes_warnings_about_unstarted_trials_and_tuner_restore_are_hidden():
    import logging

    from csrec.sweep.tuner import _quiet_tune_noise

    class Keep(logging.Handler):  # Ray's loggers do not propagate to the root, where caplog listens
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    _quiet_tune_noise()
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    tune_log = logging.getLogger("ray.tune.tune")
    kept = Keep()
    analysis_log.addHandler(kept)
    tune_log.addHandler(kept)
    missing = ("- run_trial_{0}: FileNotFoundError('Could not fetch metrics for run_trial_{0}: both result.json and "
               "progress.csv were not found at /runs/exp/trial_{0}')")
    broken = "- run_trial_c3: JSONDecodeError('Expecting value: line 1 column 1 (char 0)')"
    try:
        analysis_log.warning("Failed to fetch metrics for 2 trial(s):\n" + missing.format("a1") + "\n"
                             + missing.format("b2"))
        assert not kept.records  # trials pending when the sweep stopped: nothing to report
        analysis_log.warning("Failed to fetch metrics for 2 trial(s):\n" + missing.format("a1") + "\n" + broken)
        analysis_log.warning("something else")
        tune_log.warning("Experiment has been interrupted, but the most recent state was saved.\nResume experiment "
                         "with: Tuner.restore(path=\"/runs/exp\", trainable=...)")  # csrec says --resume itself
        tune_log.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
    finally:
        analysis_log.removeHandler(kept)
        tune_log.removeHandler(kept)
    assert [r.getMessage().splitlines()[-1] for r in kept.records] == [
        broken, "something else", "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run."]



def test_a_trial_reports_its_teachers_progress_as_notes(tmp_path):
    """ensure_teachers notes the start, epochs (at most every every_s) and end of each teacher it
    trains, and a wait for one being trained elsewhere; progress_line words each note for the driver."""
    from csrec.data import DataConfig
    from csrec.experiment import make_config
    from csrec.methods import teacher_specs
    from csrec.sweep.teachers import TeacherProgress, ensure_teachers, progress_line

    config = make_config("synthetic", "gru4rec", "csrec-m", data=DataConfig(synthetic=SyntheticConfig(
        n_users=80, n_items=40, n_clusters=4, mean_length=12)), epochs=3, patience=0, progress=False, device="cpu")
    data = load_dataset(config.data, use_cache=False)
    ticks = iter(range(0, 10_000, 50))  # the clock advances 50 s per reading
    notes, waiting = [], threading.Event()

    def send(note):
        notes.append(note)
        if note["event"] == "waiting":
            waiting.set()

    progress = TeacherProgress(send, every_s=100.0, clock=lambda: next(ticks))
    first, second = teacher_specs(config)
    pool = tmp_path / "pool"
    worker = threading.Thread(target=ensure_teachers, args=(pool, [first, second], data, config.train),
                              kwargs={"progress": progress})
    # The second teacher is being trained elsewhere (its lock is held here) until ensure_teachers,
    # having trained the first, says it waits for it; then it gets the lock and trains it itself.
    import ray

    ray_before = ray.is_initialized()  # (other tests of the session may have connected this process)
    with file_lock(pool / "locks" / f"{second.key(data.fingerprint, config.train)}.lock"):
        worker.start()
        assert waiting.wait(timeout=120)
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert ray.is_initialized() == ray_before  # training teachers outside a sweep starts no Ray instance
    events = [(n["teacher"], n["event"]) for n in notes]
    one, two = first.describe(), second.describe()
    assert events == [(one, "started"), (one, "epoch"), (one, "done"), (two, "waiting"),
                      (two, "started"), (two, "epoch"), (two, "done")]
    epoch = notes[1]
    assert (epoch["epoch"], epoch["epochs"]) == (2, 3)  # epoch 1 came 50 s after the start, within every_s
    assert progress_line(epoch) == (f"teacher {one}: epoch 2/3  valid NDCG@10 best so far "
                                    f"{epoch['best']:.4f} (epoch {epoch['best_epoch']}), 100s")
    assert progress_line(notes[0]) == f"teacher {one}: training (at most 3 epochs)"
    assert progress_line(notes[2]).startswith(f"teacher {one}: trained in ")
    assert progress_line(notes[3]) == f"teacher {two}: waiting, being trained elsewhere"


def test_a_teacher_resumed_from_an_interrupted_run_says_so_and_where_it_picked_up(tmp_path):
    """The start note of a teacher whose partial state survives says it resumes, and its first
    epoch after the saved one is noted at once, whatever every_s."""
    from csrec.data import DataConfig
    from csrec.experiment import make_config
    from csrec.methods import TeacherPool, teacher_specs
    from csrec.sweep.teachers import TeacherProgress, ensure_teachers, progress_line

    config = make_config("synthetic", "gru4rec", "csrec-m", data=DataConfig(synthetic=SyntheticConfig(
        n_users=60, n_items=30, n_clusters=3, mean_length=10)), epochs=3, patience=0, progress=False, device="cpu")
    data = load_dataset(config.data, use_cache=False)
    spec = teacher_specs(config)[0]
    pool = tmp_path / "pool"

    def interrupt(log):
        raise KeyboardInterrupt  # after epoch 1's state is saved

    with pytest.raises(KeyboardInterrupt):
        TeacherPool(pool).train(spec, data, dataclasses.replace(config.train, progress=False), on_epoch=interrupt)
    assert TeacherPool(pool).partial_path(spec.key(data.fingerprint, config.train)).is_file()
    notes = []
    ensure_teachers(pool, [spec], data, config.train,
                    progress=TeacherProgress(notes.append, every_s=1e9, clock=lambda: 0.0))
    assert [n["event"] for n in notes] == ["started", "epoch", "done"]
    assert progress_line(notes[0]) == (f"teacher {spec.describe()}: found the state an interrupted run saved, resuming "
                                        "(at most 3 epochs)")
    assert (notes[1]["epoch"], notes[1]["epochs"]) == (2, 3)


def test_teacher_progress_that_cannot_be_sent_never_stops_training():
    """A receiver that fails (a driver of an older csrec) silences the notes after one warning."""
    from csrec.sweep.teachers import TeacherProgress

    calls = []

    def broken(note):
        calls.append(note)
        raise AttributeError("'ActorHandle' object has no attribute 'note'")

    progress = TeacherProgress(broken, every_s=0.0)
    with pytest.warns(UserWarning, match="teacher progress not reported: AttributeError"):
        on_epoch = progress.start("gru4rec seed 1000", 3)
    on_epoch(dataclasses.make_dataclass("Log", ["epoch", "best_value", "best_epoch"])(1, 0.1, 1))
    progress.done("gru4rec seed 1000", 1.0, 0.1)
    assert len(calls) == 1


def test_trial_lines_pickle_without_a_request_in_flight():
    """Tune pickles its callbacks with the Tuner: a pending request for notes is never part of it."""
    import pickle

    from csrec.sweep.tuner import _TrialLines

    lines = _TrialLines("lastfm/gru4rec/csrec-m", epochs=100)
    lines._feed.pending = threading.Lock()  # stands for an ObjectRef: not picklable
    clone = pickle.loads(pickle.dumps(lines))
    assert clone._feed.pending is None and clone.cell == lines.cell and lines._feed.pending is not None


def test_a_local_ray_runtime_gives_its_dashboard_time_on_a_busy_machine(monkeypatch):
    """Ray's 60 s default failed ray.init for a sweep started beside a running one; the env var still wins."""
    from ray._private import ray_constants

    from csrec.sweep import runtime

    seen = []
    monkeypatch.setattr(runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.ray, "init", lambda **kw: seen.append(ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S))
    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 60)
    monkeypatch.delenv("RAY_DASHBOARD_STARTUP_TIMEOUT_S", raising=False)
    runtime.init_ray(num_cpus=1)
    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 45)
    monkeypatch.setenv("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "45")
    runtime.init_ray(num_cpus=1)
    assert seen == [runtime.DASHBOARD_STARTUP_TIMEOUT_S, 45] and runtime.DASHBOARD_STARTUP_TIMEOUT_S >= 300


def test_sigterm_stops_a_sweep_as_ctrl_c_does(monkeypatch):
    """ray.init makes SIGTERM call sys.exit, which skipped the sweep's stop (teachers left running, no
    word on resuming); after init_ray a SIGTERM raises KeyboardInterrupt like Ctrl-C."""
    import signal
    import sys

    from csrec.sweep import runtime

    def ray_init(**kwargs):  # what ray.init does to the driver's SIGTERM handler
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(runtime.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(runtime.ray, "init", ray_init)
    try:
        runtime.init_ray(num_cpus=1)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ctrl_c_handlers_are_restored_after_a_cell_ran_tune():
    """Tuner.fit leaves its own SIGINT handler installed; after a cell the sweep's is back, so Ctrl-C
    in the next cell's teacher phase raises KeyboardInterrupt instead of only printing Tune's warning."""
    import signal

    from csrec.sweep.tuner import _tune_output

    before = signal.getsignal(signal.SIGINT)
    with _tune_output(0):
        signal.signal(signal.SIGINT, lambda *_: None)  # what Tuner.fit does
        signal.signal(signal.SIGUSR1, lambda *_: None)
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
