"""Fast checks of the sweep layer's pure parts (no Ray runtime): spaces, locks, specs, statistics."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from csrec.data import SyntheticConfig, load_dataset
from csrec.sweep.report import markdown_table, paired_ttest, significance
from csrec.sweep.space import (
    PAPER_GRID, SUBSAMPLES, discrete_points, expected_trials, grid_points, method_params, optuna_space,
)
from csrec.sweep.teachers import collect_teacher_specs, file_lock
from csrec.sweep.trial import FailWhen, SweepContext
from csrec.sweep.tuner import base_config

TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


def test_import_csrec_does_not_import_ray():
    code = "import csrec, sys; sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_paper_grid_is_exactly_the_papers():
    assert grid_points("base") == [{}]
    assert len(grid_points("softrec")) == 3 * 4  # β × T
    assert len(grid_points("csrec-m")) == 3 * 4  # β × T, m = 2
    assert len(grid_points("csrec-d")) == 3 * 4  # β × T, m = 2, p = 0.8
    assert len(grid_points("csrec-t")) == 3 * 3 * 4  # α × β × T, p = 0.8
    for point in grid_points("csrec-t"):
        assert point["alpha"] in PAPER_GRID["alpha"] and point["beta"] in PAPER_GRID["beta"]
        assert point["temperature"] in (1.0, 3.0, 6.0, 9.0) and point["subsample"] == 0.8
        assert "num_teachers" not in point
    assert {p["num_teachers"] for p in grid_points("csrec-m")} == {2}
    assert "alpha" not in grid_points("csrec-d")[0]
    # A parameter given a value leaves the space.
    assert len(grid_points("softrec", fixed=("temperature",))) == 3
    assert expected_trials("softrec", "paper-grid", 99, fixed=("temperature",)) == 3
    assert expected_trials("base", "optuna", 12) == 1
    assert expected_trials("csrec-m", "optuna", 12) == 12


def test_optuna_space_is_conditional_per_method():
    optuna = pytest.importorskip("optuna")
    expected = {
        "softrec": {"beta", "temperature"},
        "csrec-m": {"beta", "temperature", "num_teachers"},
        "csrec-d": {"beta", "temperature", "num_teachers", "subsample"},
        "csrec-t": {"beta", "temperature", "subsample", "alpha"},
    }
    for method, names in expected.items():
        assert set(method_params(method)) == names
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            optuna_space(method)(trial)
            params = trial.params
            assert set(params) == names
            assert 0.25 <= params["beta"] <= 0.75 and 1.0 <= params["temperature"] <= 9.0
            if "num_teachers" in params:
                assert params["num_teachers"] in (1, 2, 3, 4)
            if "subsample" in params:
                assert params["subsample"] in SUBSAMPLES
            if "alpha" in params:
                assert 0.25 <= params["alpha"] <= 0.75
            study.tell(trial, 0.0)
    # The space pickles (OptunaSearch saves it with its state for Tuner.restore).
    import pickle

    assert pickle.loads(pickle.dumps(optuna_space("csrec-d"))).names == optuna_space("csrec-d").names
    assert len(discrete_points("csrec-d")) == 4 * 5 and len(discrete_points("csrec-m")) == 4


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


def test_paired_ttest_and_marks():
    from scipy import stats

    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = base + 0.05 + rng.normal(0, 0.01, 400)
    assert paired_ttest(better, base) == pytest.approx(stats.ttest_rel(better, base).pvalue)
    assert math.isnan(paired_ttest(base, base))
    ranks_base = rng.integers(0, 30, 400)
    ranks_good = np.maximum(ranks_base - 8, 0)
    positive = rng.random(400) < 0.7

    def vectors(ranks):
        from csrec.metrics import ndcg_at_k, recall_at_k

        return {"test_ranks": ranks, "test_positive": positive, "recall@10": recall_at_k(ranks, 10),
                "ndcg@10": ndcg_at_k(ranks, 10)}

    best = {("d", "b", "base"): vectors(ranks_base), ("d", "b", "softrec"): vectors(ranks_base),
            ("d", "b", "csrec-m"): vectors(ranks_good)}
    marks = significance(best, "d", "b")
    assert marks[("csrec-m", "NDCG@10")]["mark"] == "*†"
    frame = pd.DataFrame([
        {"dataset": "d", "backbone": "b", "method": m, "status": "completed", "is_best": True, "config/beta": 0.5}
        for m in ("base", "softrec", "csrec-m")
    ])
    table = markdown_table(frame, best)
    assert "| b | csrec-m |" in table and "*†" in table and "Recall+@10" in table
