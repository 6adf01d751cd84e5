"""Gradient isolation: g2 is frozen while g1 trains (CSRec-T); teachers are frozen while students train."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from csrec.methods import SoftLabelLoss, TeacherPool, build_method_store, run_method, teacher_specs, train_teacher
from csrec.methods.losses import soft_label, student_loss
from csrec.methods.teachers import NoiseMatrix, RobustTeacherLoss
from csrec.models import build_backbone
from csrec.training import BatchMaker


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _grads(model) -> list[torch.Tensor | None]:
    """Each parameter's .grad (a trained teacher keeps its own last training step's)."""
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def _same_grads(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
                                    for x, y in zip(a, b))


def _first_batch(data, size=16, seed=0):
    maker = BatchMaker(data, None, size, torch.device("cpu"))
    return next(maker.batches(np.random.default_rng(seed)))


def test_robust_loss_step_leaves_side_teacher_untouched(data):
    torch.manual_seed(0)
    side = build_backbone("gru4rec", data.n_items, data.max_len)
    main = build_backbone("gru4rec", data.n_items, data.max_len)
    noise = NoiseMatrix(data.n_items, 64)
    loss_fn = RobustTeacherLoss(side, noise, alpha=0.5)
    side_before, main_before = _state(side), _state(main)
    noise_before = copy.deepcopy(noise.state_dict())
    optimiser = torch.optim.Adam(list(main.parameters()) + list(noise.parameters()), lr=1e-2)
    main.train()
    for seed in range(2):
        loss, logs = loss_fn(main, _first_batch(data, seed=seed))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        assert all(p.grad is None for p in side.parameters())
        assert all(not p.requires_grad for p in side.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in main.parameters())
        assert noise.observed.grad.abs().sum() > 0 and noise.preferred.grad.abs().sum() > 0
        assert {"ce", "kl_g2_g1", "kl_g1_g2", "expectation"} <= set(logs)
        optimiser.step()
    assert _same_state(_state(side), side_before)
    assert not _same_state(_state(main), main_before)
    assert not torch.equal(noise.state_dict()["observed"], noise_before["observed"])
    assert not side.training  # g2 is used in eval mode (dropout off)


def test_robust_loss_even_an_optimiser_over_side_params_cannot_move_them(data):
    torch.manual_seed(1)
    side = build_backbone("gru4rec", data.n_items, data.max_len)
    main = build_backbone("gru4rec", data.n_items, data.max_len)
    loss_fn = RobustTeacherLoss(side, None, alpha=0.25)
    before = _state(side)
    optimiser = torch.optim.Adam(list(main.parameters()) + list(side.parameters()), lr=1e-1)
    loss, logs = loss_fn(main, _first_batch(data))
    assert "expectation" not in logs
    loss.backward()
    optimiser.step()
    assert _same_state(_state(side), before)


def test_training_robust_teacher_leaves_side_teacher_unchanged(data, method_config):
    config = method_config("csrec-t", subsample=0.6)
    (main_spec,) = teacher_specs(config)
    pool = TeacherPool()
    side = pool.get(main_spec.side, data, config.train)
    before, grads_before = _state(side.model), _grads(side.model)
    trained = train_teacher(main_spec, data, config.train, side=side.model)
    assert _same_state(_state(side.model), before)
    assert _same_grads(_grads(side.model), grads_before)  # nothing accumulated into g2
    assert trained.model is not side.model
    assert not _same_state(_state(trained.model), before)


def test_student_loss_does_not_reach_teachers(data, m_setup):
    config, pool, teachers = m_setup
    store, _ = build_method_store(config, data, pool)
    loss_fn = SoftLabelLoss(store, beta=0.5, temperature=3.0)
    torch.manual_seed(2)
    student = build_backbone("gru4rec", data.n_items, data.max_len).eval()
    batch = _first_batch(data, seed=4)
    grads_before = [_grads(t.model) for t in teachers]
    loss, logs = loss_fn(student, batch)
    loss.backward()
    assert all(_same_grads(_grads(t.model), g) for t, g in zip(teachers, grads_before))
    assert any(p.grad is not None for p in student.parameters())
    # The store is plain numpy; what it caches for reading never requires a gradient.
    assert all(isinstance(a, np.ndarray) for a in store.arrays.values())
    assert store._device_cache and all(not t.requires_grad for t in store._device_cache.values())
    # The loss value is Eq. 20 with the teachers evaluated on the batch directly.
    with torch.no_grad():
        logits = []
        for t in teachers:
            reps, targets = t.model.training_representations(batch.inputs, batch.targets)
            logits.append(t.model.item_scores(reps))
        reps, _ = student.training_representations(batch.inputs, batch.targets)
        want, _ = student_loss(student.item_scores(reps), targets - 1,
                               soft_label(torch.stack(logits).mean(0), targets - 1, 3.0), 0.5)
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert logs["kl"] > 0
    # A second visit of the same rows reads Σ r log r from the per-row cache: the same value.
    assert bool(loss_fn._r_log_r_known[batch.rows].all()) and int(loss_fn._r_log_r_known.sum()) == len(batch.rows)
    again, again_logs = loss_fn(student, batch)
    assert float(again.detach()) == pytest.approx(float(loss.detach()), rel=1e-6)
    assert again_logs["kl"] == pytest.approx(logs["kl"], rel=1e-6)


def test_student_training_leaves_teachers_unchanged(data, m_setup):
    config, pool, teachers = m_setup
    before = [_state(t.model) for t in teachers]
    grads_before = [_grads(t.model) for t in teachers]
    trained_before = list(pool.trained_here)
    outcome = run_method(config, data, pool=pool)
    assert pool.trained_here == trained_before  # the pool's teachers were reused, not retrained
    for t, state, grads in zip(teachers, before, grads_before):
        assert _same_state(_state(t.model), state)
        assert _same_grads(_grads(t.model), grads)
    assert outcome.store_bytes > 0 and len(outcome.teachers) == 2
    assert "kl" in outcome.train.history[0].extra


def test_run_method_rejects_store_of_wrong_size(data, m_setup, method_config):
    config, pool, _ = m_setup
    store, _ = build_method_store(config, data, pool)
    store.meta["n_rows"] = store.n_rows + 1
    with pytest.raises(ValueError, match="rows"):
        run_method(config, data, pool=pool, store=store)


class _Stop(Exception):
    pass


def test_run_method_wires_method_hyperparameters(data, m_setup, monkeypatch):
    import dataclasses

    import csrec.methods.run as run_module

    config, pool, _ = m_setup
    method = dataclasses.replace(config.method, beta=0.25, temperature=6.0, kl_direction="paper",
                                 ensemble="probs", store="topk", store_top_k=9)
    config = dataclasses.replace(config, method=method)
    seen = {}
    trained_before = list(pool.trained_here)

    def capture(model, data_, train, loss_fn, **kwargs):
        seen["loss_fn"] = loss_fn
        raise _Stop

    monkeypatch.setattr(run_module, "train_model", capture)
    with pytest.raises(_Stop):
        run_method(config, data, pool=pool)
    loss_fn = seen["loss_fn"]
    assert isinstance(loss_fn, SoftLabelLoss)
    assert (loss_fn.beta, loss_fn.temperature, loss_fn.direction) == (0.25, 6.0, "paper")
    store = loss_fn.store
    assert store.mode == "topk" and store.meta["ensemble"] == "probs"
    assert store.meta["temperature"] == 6.0 and store.arrays["values"].shape[1] == 9
    assert pool.trained_here == trained_before  # teachers reused from the pool

    base = dataclasses.replace(config, method=dataclasses.replace(method, name="base"))
    with pytest.raises(_Stop):
        run_method(base, data, pool=pool)
    assert seen["loss_fn"] is run_module.cross_entropy_loss
    zero_beta = dataclasses.replace(config, method=dataclasses.replace(method, beta=0.0))
    with pytest.raises(_Stop):
        run_method(zero_beta, data, pool=pool)
    assert seen["loss_fn"] is run_module.cross_entropy_loss  # β = 0 is Base CE
