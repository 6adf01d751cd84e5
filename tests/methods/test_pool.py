"""TeacherPool on disk: each distinct teacher trains once; later pools and methods reuse it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from csrec.methods import TeacherPool, build_method_store, teacher_specs


def _files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_second_get_and_new_pool_train_nothing(tmp_path, data, method_config):
    config = method_config("csrec-m", num_teachers=1)
    (spec,) = teacher_specs(config)
    pool = TeacherPool(tmp_path)
    assert not pool.has(spec, data, config.train)
    first = pool.get(spec, data, config.train)
    key = spec.key(data.fingerprint, config.train)
    assert pool.trained_here == [key] and first.key == key
    assert _files(tmp_path) == [f"teacher-{key}.pt"]
    assert pool.get(spec, data, config.train) is first
    assert pool.trained_here == [key]

    fresh = TeacherPool(tmp_path)
    assert fresh.has(spec, data, config.train)
    loaded = fresh.get(spec, data, config.train)
    assert fresh.trained_here == []
    assert loaded.key == key and loaded.info == first.info
    state, want = loaded.model.state_dict(), first.model.state_dict()
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k].cpu()) for k in want)
    assert _files(tmp_path) == [f"teacher-{key}.pt"]


def test_csrec_m_two_then_three_trains_three(tmp_path, data, method_config):
    pool = TeacherPool(tmp_path)
    two = method_config("csrec-m", num_teachers=2)
    store_two, infos_two = build_method_store(two, data, pool)
    assert len(pool.trained_here) == 2 and len(infos_two) == 2
    three = method_config("csrec-m", num_teachers=3)
    _, infos_three = build_method_store(three, data, pool)
    assert len(pool.trained_here) == 3 and len(infos_three) == 3
    assert [i["key"] for i in infos_three[:2]] == [i["key"] for i in infos_two]
    assert len(_files(tmp_path)) == 3

    fresh = TeacherPool(tmp_path)
    store_again, _ = build_method_store(two, data, fresh)
    assert fresh.trained_here == []
    # Teachers loaded from disk give exactly the soft labels of the teachers trained in place.
    for name, array in store_two.arrays.items():
        assert (store_again.arrays[name] == array).all(), name
    assert store_again.meta == store_two.meta


def test_csrec_t_reuses_csrec_d_teacher_as_side(tmp_path, data, method_config):
    pool = TeacherPool(tmp_path)
    build_method_store(method_config("csrec-d", num_teachers=2), data, pool)
    assert len(pool.trained_here) == 2
    store, infos = build_method_store(method_config("csrec-t"), data, pool)
    assert len(pool.trained_here) == 3  # only g1 is new: g2 is CSRec-D's first teacher
    roles = {i["role"]: i for i in infos}
    assert set(roles) == {"main", "side"}
    d_keys = [s.key(data.fingerprint, method_config("csrec-d").train) for s in teacher_specs(method_config("csrec-d"))]
    assert roles["side"]["key"] == d_keys[0]
    assert store.meta["n_teachers"] == 1  # the student reads g1 alone


def test_ensemble_weights_reach_the_store_and_its_fingerprint(tmp_path, data, method_config):
    from csrec.errors import ConfigError
    from csrec.methods.teachers import store_fingerprint

    pool = TeacherPool(tmp_path / "pool")
    weighted = method_config("csrec-m", ensemble="probs", ensemble_weights=[0.1, 0.9])
    plain = method_config("csrec-m", ensemble="probs")
    assert weighted.method.ensemble_weights == (0.1, 0.9)
    assert store_fingerprint(weighted, data) != store_fingerprint(plain, data)
    store, _ = build_method_store(weighted, data, pool)
    np.testing.assert_allclose(store.arrays["weights"], [0.1, 0.9])
    # A count that does not match the teachers fails before any teacher trains.
    with pytest.raises(ConfigError, match="2 weights but csrec-m has 3 teachers"):
        build_method_store(method_config("csrec-m", ensemble="probs", ensemble_weights=[0.1, 0.9], num_teachers=3),
                           data, TeacherPool(tmp_path / "empty"))
    assert not list((tmp_path / "empty").glob("teacher-*"))
    with pytest.raises(ConfigError, match="ensemble='probs' only"):
        method_config("csrec-m", ensemble_weights=[0.5, 0.5])
    with pytest.raises(ConfigError, match="non-negative"):
        method_config("csrec-m", ensemble="probs", ensemble_weights=[-1.0, 2.0])


@pytest.mark.parametrize("method", ["csrec-m", "csrec-t"])
def test_a_teacher_interrupted_in_training_resumes_from_its_partial_state(tmp_path, data, method_config, method,
                                                                          monkeypatch):
    """What a killed pool.get leaves (the state after epoch 1) is continued, not retrained, and the
    teacher equals one trained without interruption; the partial state goes once the teacher is saved.

    CSRec-T's robust teacher also carries its noise model and the column max's bookkeeping; a
    catalogue too large for an exact column max every step (Yelp's) refreshes its arg-max rows
    every few steps, which the resumed run must continue on the same step."""
    from csrec.methods import teachers as teachers_module
    from csrec.methods import train_teacher

    if method == "csrec-t":  # this catalogue takes the large-catalogue path: arg-max refreshed every 3 steps
        init = teachers_module.NoiseMatrix.__init__
        monkeypatch.setattr(teachers_module.NoiseMatrix, "__init__",
                            lambda self, n, dim=64, **kw: init(self, n, dim, exact_limit=1, refresh_every=3, **kw))
    config = method_config(method, num_teachers=1)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=3, patience=0))
    (spec,) = teacher_specs(config)
    pool = TeacherPool(tmp_path / "pool")
    key = spec.key(data.fingerprint, config.train)
    partial = pool.partial_path(key)
    side = pool.get(spec.side, data, config.train).model if spec.robust else None

    def stop_after_first(log):
        if log.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_teacher(spec, data, config.train, side=side, on_epoch=stop_after_first, state_path=partial)
    assert partial.is_file() and not pool.has(spec, data, config.train)
    resumed = pool.get(spec, data, config.train)
    straight = TeacherPool(tmp_path / "other").get(spec, data, config.train)
    assert resumed.info["epochs_run"] == straight.info["epochs_run"] > 1
    assert resumed.info["test"] == straight.info["test"]
    want = straight.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in resumed.model.state_dict().items())
    side_files = [f"teacher-{spec.side.key(data.fingerprint, config.train)}.pt"] if spec.robust else []
    assert _files(tmp_path / "pool") == sorted([f"teacher-{key}.pt", *side_files])  # no partial state left behind
