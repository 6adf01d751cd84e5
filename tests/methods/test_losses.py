"""Eq. 14, 16–20 and SoftRec's prior against brute-force float64 loops on tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from csrec.methods.losses import (
    exact_expectation,
    popularity_logits,
    relaxed_expectation,
    robust_teacher_loss,
    soft_label,
    soft_label_from_probs,
    student_loss,
    student_loss_from_teacher_probs,
)
from csrec.methods.teachers import NoiseMatrix


def _rand(*shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def _softmax_row(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _brute_soft_label(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> list[list[float]]:
    out = []
    for b in range(logits.shape[0]):
        probs = _softmax_row([float(v) / temperature for v in logits[b]])
        out.append([0.5 * p + (0.5 if j == int(targets[b]) else 0.0) for j, p in enumerate(probs)])
    return out


# --- Eq. 19 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 9.0])
def test_soft_label_matches_hand_computation(temperature):
    logits = _rand(4, 7, seed=1, scale=3.0)
    targets = torch.tensor([0, 6, 3, 3])
    got = soft_label(logits, targets, temperature)
    want = torch.tensor(_brute_soft_label(logits, targets, temperature), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.sum(-1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)
    # The one-hot half sits on the target: r_target ≥ ½.
    assert bool((got[torch.arange(4), targets] >= 0.5).all())


def test_soft_label_does_not_modify_inputs():
    probs = torch.softmax(_rand(3, 5, seed=2), -1)
    before = probs.clone()
    soft_label_from_probs(probs, torch.tensor([1, 2, 3]))
    assert torch.equal(probs, before)


def test_soft_label_from_broadcast_probs_rows_independent():
    # SoftRec's prior store hands out one probability row expanded over the batch.
    row = torch.softmax(_rand(5, seed=3), -1)
    got = soft_label_from_probs(row.expand(3, -1), torch.tensor([0, 1, 4]))
    want = torch.tensor(_brute_soft_label(row.log().expand(3, -1), torch.tensor([0, 1, 4]), 1.0), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_soft_label_infinite_temperature_is_label_smoothing():
    logits = _rand(3, 6, seed=4, scale=5.0)
    targets = torch.tensor([2, 0, 5])
    got = soft_label(logits, targets, 1e6)
    want = 0.5 * (torch.full((3, 6), 1 / 6, dtype=torch.float64) + F.one_hot(targets, 6).double())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # ... and a small temperature is far from it (the check above can fail).
    assert (soft_label(logits, targets, 0.5) - want).abs().max() > 0.05


# --- Eq. 20 ------------------------------------------------------------------------------------
def _brute_student_loss(student, targets, labels, beta, direction):
    n_rows = student.shape[0]
    ce_sum = kl_sum = 0.0
    for b in range(n_rows):
        pf = _softmax_row([float(v) for v in student[b]])
        r = labels[b]
        ce_sum += -math.log(pf[int(targets[b])])
        if direction == "code":  # KL(r ‖ P_f)
            kl_sum += sum(r[j] * (math.log(r[j]) - math.log(pf[j])) for j in range(len(r)) if r[j] > 0)
        else:  # KL(P_f ‖ r)
            kl_sum += sum(pf[j] * (math.log(pf[j]) - math.log(r[j])) for j in range(len(r)))
    ce, kl = ce_sum / n_rows, kl_sum / n_rows  # batch-mean, no T² factor
    return (1 - beta) * ce + beta * kl, ce, kl


def test_student_loss_beta_zero_is_base_cross_entropy():
    student = _rand(5, 8, seed=10, scale=2.0).float()
    targets = torch.tensor([0, 7, 3, 3, 1])
    labels = soft_label(_rand(5, 8, seed=11).float(), targets, 3.0)
    for direction in ("code", "paper"):
        loss, logs = student_loss(student, targets, labels, 0.0, direction)
        assert torch.equal(loss, F.cross_entropy(student, targets))
        assert "kl" not in logs


@pytest.mark.parametrize("beta", [0.25, 0.5])
@pytest.mark.parametrize("direction", ["code", "paper"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_student_loss_matches_brute_force(beta, direction, temperature):
    student = _rand(4, 6, seed=20, scale=2.0)
    teacher = _rand(4, 6, seed=21, scale=4.0)
    targets = torch.tensor([5, 0, 2, 2])
    labels_list = _brute_soft_label(teacher, targets, temperature)
    labels = torch.tensor(labels_list, dtype=torch.float64)
    loss, logs = student_loss(student, targets, labels, beta, direction)
    want, ce, kl = _brute_student_loss(student, targets, labels_list, beta, direction)
    assert float(loss) == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert logs["ce"] == pytest.approx(ce, rel=1e-10)
    assert logs["kl"] == pytest.approx(kl, rel=1e-10)
    # The two directions really differ here, so the check above pins the direction down.
    other = "paper" if direction == "code" else "code"
    assert abs(_brute_student_loss(student, targets, labels_list, beta, other)[0] - want) > 1e-3


def test_student_loss_uses_untempered_student_and_no_t_squared():
    student = _rand(3, 5, seed=30, scale=2.0)
    targets = torch.tensor([1, 2, 4])
    labels_list = _brute_soft_label(_rand(3, 5, seed=31), targets, 6.0)
    labels = torch.tensor(labels_list, dtype=torch.float64)
    loss, _ = student_loss(student, targets, labels, 0.5, "code")
    untempered = _brute_student_loss(student, targets, labels_list, 0.5, "code")[0]
    tempered = _brute_student_loss(student / 6.0, targets, labels_list, 0.5, "code")
    t_squared = 0.5 * tempered[1] + 0.5 * 36.0 * tempered[2]
    assert float(loss) == pytest.approx(untempered, rel=1e-10)
    assert abs(float(loss) - tempered[0]) > 1e-3 and abs(float(loss) - t_squared) > 1e-3


def test_student_loss_gradient_matches_closed_form():
    # d/dz of (1-β)CE + β KL(r‖softmax z), batch-mean: ((1-β)(p - onehot) + β(p - r)) / N.
    student = _rand(3, 5, seed=40).requires_grad_(True)
    targets = torch.tensor([0, 4, 2])
    labels = soft_label(_rand(3, 5, seed=41), targets, 2.0)
    loss, _ = student_loss(student, targets, labels, 0.25, "code")
    loss.backward()
    p = torch.softmax(student.detach(), -1)
    want = (0.75 * (p - F.one_hot(targets, 5).double()) + 0.25 * (p - labels)) / 3
    torch.testing.assert_close(student.grad, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("direction", ["code", "paper"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_student_loss_from_teacher_probs_equals_materialised_soft_label(direction, beta, sparse):
    logits = _rand(5, 7, seed=11, scale=2.0).requires_grad_()
    probs = torch.softmax(_rand(5, 7, seed=12, scale=3.0), -1)
    if sparse:  # a top-K store gives exact zeros off its top K (and on some targets)
        probs = torch.where(probs > probs.median(), probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    targets = torch.tensor([0, 3, 6, 2, 2])
    expected, expected_logs = student_loss(logits, targets, soft_label_from_probs(probs, targets), beta, direction)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    got, logs = student_loss_from_teacher_probs(logits, targets, probs, beta, direction)
    (got_grad,) = torch.autograd.grad(got, logits)
    assert torch.allclose(got, expected, atol=1e-12)
    assert torch.allclose(got_grad, expected_grad, atol=1e-12)
    assert logs.keys() == expected_logs.keys()
    assert all(abs(logs[k] - expected_logs[k]) < 1e-10 for k in logs)


def test_fused_row_cross_entropies_pass_gradcheck():
    from csrec.methods.losses import _RowCrossEntropies

    logits = _rand(4, 6, seed=21).requires_grad_()
    probs = torch.softmax(_rand(4, 6, seed=22), -1)
    targets = torch.tensor([5, 0, 2, 2])
    assert torch.autograd.gradcheck(lambda z: _RowCrossEntropies.apply(z, targets, probs), (logits,))
    ce_rows, soft_rows = _RowCrossEntropies.apply(logits, targets, probs)
    log_pf = torch.log_softmax(logits, -1)
    torch.testing.assert_close(ce_rows, -log_pf[torch.arange(4), targets])
    torch.testing.assert_close(soft_rows, -(probs * log_pf).sum(-1))


def test_fused_row_cross_entropies_in_place_backward_matches_and_refuses_a_second_pass():
    from csrec.methods.losses import _RowCrossEntropies

    probs = torch.softmax(_rand(4, 6, seed=24), -1)
    targets = torch.tensor([1, 0, 5, 3])
    weights = _rand(2, 4, seed=25)
    grads = []
    for in_place in (False, True):
        logits = _rand(4, 6, seed=23).requires_grad_()
        ce_rows, soft_rows = _RowCrossEntropies.apply(logits, targets, probs, in_place)
        (weights[0] @ ce_rows + weights[1] @ soft_rows).backward(retain_graph=True)
        grads.append(logits.grad.clone())
        if in_place:
            with pytest.raises(RuntimeError, match="inplace"):
                (weights[0] @ ce_rows).backward()
    torch.testing.assert_close(grads[1], grads[0])


def test_fused_row_cross_entropies_stay_exact_for_extreme_logits():
    from csrec.methods.losses import _RowCrossEntropies

    logits = (_rand(3, 50, seed=31) * 1000).float()  # softmax underflows to 0 almost everywhere
    probs = torch.softmax(_rand(3, 50, seed=32).float(), -1)
    targets = torch.tensor([0, 7, 49])
    ce_rows, soft_rows = _RowCrossEntropies.apply(logits, targets, probs)
    log_pf = torch.log_softmax(logits.double(), -1)
    assert torch.isfinite(ce_rows).all() and torch.isfinite(soft_rows).all()
    torch.testing.assert_close(ce_rows.double(), -log_pf[torch.arange(3), targets], rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(soft_rows.double(), -(probs.double() * log_pf).sum(-1), rtol=1e-6, atol=1e-3)


def test_student_loss_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        student_loss(torch.zeros(1, 3), torch.tensor([0]), torch.full((1, 3), 1 / 3), 0.5, "backwards")


# --- Eq. 17–18 ---------------------------------------------------------------------------------
def _brute_robust_loss(g1, g2, targets, h_full, alpha, expectation: bool):
    n_rows, n = g1.shape
    total = 0.0
    for b in range(n_rows):
        p1 = _softmax_row([float(v) for v in g1[b]])
        p2 = _softmax_row([float(v) for v in g2[b]])
        kl_21 = sum(p2[j] * (math.log(p2[j]) - math.log(p1[j])) for j in range(n))  # KL(P_g2 ‖ P_g1)
        kl_12 = sum(p1[j] * (math.log(p1[j]) - math.log(p2[j])) for j in range(n))  # KL(P_g1 ‖ P_g2)
        ce = -math.log(p1[int(targets[b])])
        row = ce + alpha * kl_21 + (1 - alpha) * kl_12
        if expectation:
            i = int(targets[b])
            for j in range(n):
                col_max = max(float(h_full[k, j]) for k in range(n))
                row += (math.log(1 + math.exp(-float(h_full[i, j]))) + math.log(n) + col_max) * p1[j]
        total += row
    return total / n_rows


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.75])
def test_robust_teacher_loss_matches_brute_force(alpha):
    n = 6
    g1 = _rand(5, n, seed=50, scale=2.0)
    g2 = _rand(5, n, seed=51, scale=2.0)
    targets = torch.tensor([0, 5, 2, 2, 3])
    h_full = _rand(n, n, seed=52, scale=1.5)
    loss, logs = robust_teacher_loss(g1, g2, targets, h_full[targets], h_full.max(0).values, alpha)
    assert float(loss) == pytest.approx(_brute_robust_loss(g1, g2, targets, h_full, alpha, True), rel=1e-10)
    assert "expectation" in logs
    # KL(P_g2‖P_g1) ≠ KL(P_g1‖P_g2) here, so swapping α and 1−α would be caught (α ≠ ½).
    assert abs(logs["kl_g2_g1"] - logs["kl_g1_g2"]) > 1e-2
    if alpha != 0.5:
        swapped = _brute_robust_loss(g1, g2, targets, h_full, 1 - alpha, True)
        assert abs(float(loss) - swapped) > 1e-3


def test_robust_teacher_loss_without_expectation_term():
    g1, g2 = _rand(4, 5, seed=60), _rand(4, 5, seed=61)
    targets = torch.tensor([4, 0, 1, 1])
    loss, logs = robust_teacher_loss(g1, g2, targets, None, None, 0.25)
    assert float(loss) == pytest.approx(_brute_robust_loss(g1, g2, targets, None, 0.25, False), rel=1e-10)
    assert "expectation" not in logs


def test_robust_teacher_loss_gradients_reach_g1_and_h_not_g2():
    torch.manual_seed(0)
    n = 9
    noise = NoiseMatrix(n, dim=4).double()
    g1 = _rand(6, n, seed=70).requires_grad_(True)
    g2 = _rand(6, n, seed=71).requires_grad_(True)
    targets = torch.tensor([0, 8, 3, 3, 5, 1])
    loss, _ = robust_teacher_loss(g1, g2, targets, noise.rows(targets), noise.column_max(), 0.5)
    loss.backward()
    assert g1.grad is not None and g1.grad.abs().sum() > 0
    assert g2.grad is None or float(g2.grad.abs().sum()) == 0.0
    assert noise.observed.grad is not None and noise.observed.grad.abs().sum() > 0
    assert noise.preferred.grad is not None and noise.preferred.grad.abs().sum() > 0


# --- Eq. 14 ≤ Eq. 16 ---------------------------------------------------------------------------
def test_exact_expectation_matches_brute_force():
    n = 5
    h_full = _rand(n, n, seed=80, scale=2.0)
    probs = torch.softmax(_rand(3, n, seed=81, scale=2.0), -1)
    observed = torch.tensor([4, 0, 2])
    got = exact_expectation(probs, h_full[observed], torch.logsumexp(h_full, 0))
    want = 0.0
    for b in range(3):
        i = int(observed[b])
        for j in range(n):
            column = _softmax_row([float(h_full[k, j]) for k in range(n)])  # softmax over k of h̃_{k,j}
            want -= math.log(column[i]) * float(probs[b, j])
    assert float(got) == pytest.approx(want / 3, rel=1e-10)


def test_relaxed_expectation_upper_bounds_exact_expectation():
    g = torch.Generator().manual_seed(90)
    for trial in range(300):
        n = int(torch.randint(2, 12, (1,), generator=g))
        rows = int(torch.randint(1, 5, (1,), generator=g))
        scale = [0.01, 0.5, 2.0, 8.0][trial % 4]
        h_full = torch.randn(n, n, generator=g, dtype=torch.float64) * scale
        probs = torch.softmax(torch.randn(rows, n, generator=g, dtype=torch.float64) * scale * 2, -1)
        observed = torch.randint(0, n, (rows,), generator=g)
        relaxed = relaxed_expectation(probs, h_full[observed], h_full.max(0).values, n)
        exact = exact_expectation(probs, h_full[observed], torch.logsumexp(h_full, 0))
        assert float(relaxed) >= float(exact) - 1e-12, (trial, float(relaxed), float(exact))
        # Per row too (the batch mean of per-row bounds).
        for b in range(rows):
            r = relaxed_expectation(probs[b : b + 1], h_full[observed[b : b + 1]], h_full.max(0).values, n)
            e = exact_expectation(probs[b : b + 1], h_full[observed[b : b + 1]], torch.logsumexp(h_full, 0))
            assert float(r) >= float(e) - 1e-12


# --- SoftRec's prior ---------------------------------------------------------------------------
def test_popularity_logits_linear_between_minus_and_plus_scale():
    counts = torch.tensor([0, 3, 10, 5, 1, 10], dtype=torch.int64)
    got = popularity_logits(counts)
    want = torch.tensor([-5 + 10 * c / 10 for c in [0, 3, 10, 5, 1, 10]], dtype=torch.float32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert float(got.max()) == pytest.approx(5.0) and float(got[0]) == pytest.approx(-5.0)
    torch.testing.assert_close(popularity_logits(counts, scale=2.0), want * 2 / 5, rtol=0, atol=1e-6)
    # No item has count 0 here: the least popular is still above −5 (min is not rescaled to −5).
    assert float(popularity_logits(torch.tensor([2, 4]))[0]) == pytest.approx(0.0)
