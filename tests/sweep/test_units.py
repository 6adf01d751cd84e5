"""Fast checks of the sweep layer's parts that need no Ray runtime: trial configs, teacher specs, locks."""

from __future__ import annotations

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
