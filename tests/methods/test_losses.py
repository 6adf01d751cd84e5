"""Eq. 14, 16–20 and SoftRec's prior against brute-force float64 loops on tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from csrec.methods.losses import (
    exact_expectation,
    fused_output_loss,
    fused_robust_teacher_loss,
    fused_student_loss,
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


def _teacher(probs):
    return lambda lo, hi: probs[lo:hi]


def _brute_fused(logits, targets, probs, beta):
    """ℓ_s of Eq. 20 (code direction) row by row from log-softmax, in float64."""
    log_pf = torch.log_softmax(logits.double(), -1)
    ce_rows = -log_pf[torch.arange(len(targets)), targets]
    soft_rows = -(probs.double() * log_pf).sum(-1)
    labels = soft_label_from_probs(probs.double(), targets)
    r_log_r = torch.special.xlogy(labels, labels).sum(-1)
    loss = ((1 - beta / 2) * ce_rows + (beta / 2) * soft_rows + beta * r_log_r).mean()
    return loss, ce_rows, soft_rows, r_log_r


@pytest.mark.parametrize("chunk_elements", [1, 12, 1 << 20])  # one row, two rows, all rows per chunk
@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_fused_student_loss_matches_brute_force_in_any_chunking(chunk_elements, beta):
    logits = _rand(5, 6, seed=21, scale=2.0).requires_grad_()
    probs = torch.softmax(_rand(5, 6, seed=22, scale=3.0), -1)
    targets = torch.tensor([5, 0, 2, 2, 4])
    want, ce_rows, soft_rows, r_log_r = _brute_fused(logits, targets, probs, beta)
    (want_grad,) = torch.autograd.grad(want, logits)
    got, logs, got_r_log_r = fused_student_loss(logits, targets, beta, _teacher(probs), chunk_elements=chunk_elements)
    (got_grad,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_r_log_r, r_log_r, rtol=0, atol=1e-12)  # returned for the caller's cache
    ce_rows, soft_rows, r_log_r = ce_rows.detach(), soft_rows.detach(), r_log_r.detach()
    assert logs["ce"] == pytest.approx(float(ce_rows.mean()), abs=1e-12)
    assert logs["kl"] == pytest.approx(float((r_log_r + 0.5 * soft_rows + 0.5 * ce_rows).mean()), abs=1e-12)


def test_fused_student_loss_passes_gradcheck_and_uses_cached_self_information():
    logits = _rand(4, 6, seed=21).requires_grad_()
    probs = torch.softmax(_rand(4, 6, seed=22), -1)
    targets = torch.tensor([5, 0, 2, 2])
    cached = _brute_fused(logits, targets, probs, 0.5)[3]
    assert torch.autograd.gradcheck(
        lambda z: fused_student_loss(z, targets, 0.5, _teacher(probs), cached, chunk_elements=12)[0], (logits,))
    # With cached rows the teacher's Σ r log r is not recomputed (and not returned as new).
    _, _, returned = fused_student_loss(logits, targets, 0.5, _teacher(probs), cached * 0 + 7.0)
    assert torch.equal(returned, torch.full((4,), 7.0, dtype=torch.float64))


def test_fused_loss_without_teacher_is_base_cross_entropy():
    logits = _rand(6, 9, seed=41, scale=3.0).requires_grad_()
    targets = torch.tensor([0, 8, 3, 3, 1, 7])
    want = F.cross_entropy(logits, targets)
    (want_grad,) = torch.autograd.grad(want, logits)
    got, logs, r_log_r = fused_student_loss(logits, targets, 0.0, chunk_elements=18)
    (got_grad,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-12)
    assert logs == {"ce": pytest.approx(float(want.detach()))} and r_log_r is None


def test_fused_loss_backward_scales_with_upstream_gradient_and_survives_a_second_pass():
    probs = torch.softmax(_rand(4, 6, seed=24), -1)
    targets = torch.tensor([1, 0, 5, 3])
    logits = _rand(4, 6, seed=23).requires_grad_()
    loss, _, _ = fused_student_loss(logits, targets, 0.5, _teacher(probs))
    (3.0 * loss).backward(retain_graph=True)
    want, *_ = _brute_fused(logits, targets, probs, 0.5)
    (want_grad,) = torch.autograd.grad(3.0 * want, logits)
    torch.testing.assert_close(logits.grad, want_grad, rtol=0, atol=1e-12)
    loss.backward(retain_graph=True)  # upstream gradient 1: the kept gradient itself, unscaled
    torch.testing.assert_close(logits.grad, want_grad * (4.0 / 3.0), rtol=0, atol=1e-12)
    loss.backward()
    torch.testing.assert_close(logits.grad, want_grad * (5.0 / 3.0), rtol=0, atol=1e-12)


def test_fused_loss_stays_exact_for_extreme_logits():
    logits = (_rand(3, 50, seed=31) * 1000).float()  # softmax underflows to 0 almost everywhere
    probs = torch.softmax(_rand(3, 50, seed=32).float(), -1)
    targets = torch.tensor([0, 7, 49])
    loss, logs, _ = fused_student_loss(logits, targets, 0.5, _teacher(probs), chunk_elements=50)
    want, ce_rows, *_ = _brute_fused(logits.double(), targets, probs.double(), 0.5)
    assert math.isfinite(float(loss))
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
    assert logs["ce"] == pytest.approx(float(ce_rows.mean()), rel=1e-6)


def test_fused_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="rows, items"):
        fused_student_loss(torch.zeros(6), torch.zeros(6, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="at least one row"):
        fused_student_loss(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long), 0.0)


def _output_layer(rows, items, d, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    reps = (torch.randn(rows, d, generator=g, dtype=torch.float64) * 0.7).requires_grad_()
    table = (torch.randn(items, d, generator=g, dtype=torch.float64) * 0.7).requires_grad_()
    b = (torch.randn(items, generator=g, dtype=torch.float64)).requires_grad_() if bias else None
    return reps, table, b


@pytest.mark.parametrize("chunk_elements", [1, 14, 1 << 20])  # one row, two rows, all rows per chunk
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_output_loss_equals_the_brute_force_loss_of_the_materialised_logits(chunk_elements, beta, bias):
    reps, table, b = _output_layer(5, 7, 3, seed=51, bias=bias)
    probs = torch.softmax(_rand(5, 7, seed=52, scale=3.0), -1)
    targets = torch.tensor([6, 0, 2, 2, 4])
    params = [t for t in (reps, table, b) if t is not None]
    logits = reps @ table.T + (0 if b is None else b)
    want, *rows = _brute_fused(logits, targets, probs, beta)
    want_grads = torch.autograd.grad(want, params)
    ce_rows, soft_rows, r_log_r = (t.detach() for t in rows)
    got, logs, got_r_log_r = fused_output_loss(reps, table, b, targets, beta, _teacher(probs) if beta else None,
                                               chunk_elements=chunk_elements)
    got_grads = torch.autograd.grad(got, params)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    assert logs["ce"] == pytest.approx(float(ce_rows.mean()), abs=1e-12)
    if beta:
        torch.testing.assert_close(got_r_log_r, r_log_r, rtol=0, atol=1e-12)
        assert logs["kl"] == pytest.approx(float((r_log_r + 0.5 * soft_rows + 0.5 * ce_rows).mean()), abs=1e-12)
    else:
        assert got_r_log_r is None


def test_fused_output_loss_passes_gradcheck_and_scales_with_the_upstream_gradient():
    reps, table, b = _output_layer(4, 6, 3, seed=53)
    probs = torch.softmax(_rand(4, 6, seed=54), -1)
    targets = torch.tensor([5, 0, 2, 2])
    assert torch.autograd.gradcheck(
        lambda r, t, c: fused_output_loss(r, t, c, targets, 0.5, _teacher(probs), chunk_elements=12)[0],
        (reps, table, b))
    loss, _, _ = fused_output_loss(reps, table, b, targets, 0.5, _teacher(probs))
    (3.0 * loss).backward(retain_graph=True)
    once = reps.grad.clone()
    loss.backward()
    torch.testing.assert_close(reps.grad, once * (4.0 / 3.0), rtol=0, atol=1e-12)


def test_fused_output_loss_rejects_mismatched_layers():
    with pytest.raises(ValueError, match=r"\[items, d\]"):
        fused_output_loss(torch.zeros(2, 3), torch.zeros(5, 4), None, torch.zeros(2, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="one entry per item"):
        fused_output_loss(torch.zeros(2, 3), torch.zeros(5, 3), torch.zeros(4), torch.zeros(2, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="at least one row"):
        fused_output_loss(torch.zeros(0, 3), torch.zeros(5, 3), None, torch.zeros(0, dtype=torch.long), 0.0)


# Mixed precision: a fixed output layer (rows × d representations against an items × d table),
# its logits computed under bfloat16 autocast vs in float32.  bfloat16 keeps 8 significant bits
# (relative rounding 2^-9 ≈ 0.2% per input), so the stated tolerance is 0.5% of the loss and a
# gradient cosine above 0.999; the float32 reductions keep the error at the products' rounding.
BF16_LOSS_RTOL = 5e-3


@pytest.mark.parametrize("fused", ["logits", "output layer"])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_bfloat16_loss_equals_float32_loss_within_stated_tolerance(beta, fused):
    g = torch.Generator().manual_seed(5)
    reps = torch.randn(300, 64, generator=g) * 0.5
    table = (torch.randn(2000, 64, generator=g) * 0.5).requires_grad_()
    targets = torch.randint(0, 2000, (300,), generator=g)
    probs = torch.softmax(torch.randn(300, 2000, generator=g) * 2.0, -1)
    results = {}
    for precision in ("fp32", "bf16"):
        table.grad = None
        teacher = _teacher(probs) if beta else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if fused == "logits":
                logits = reps @ table.T
                assert logits.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
                loss, logs, _ = fused_student_loss(logits, targets, beta, teacher, chunk_elements=1 << 16)
            else:
                loss, logs, _ = fused_output_loss(reps, table, None, targets, beta, teacher, chunk_elements=1 << 16)
        assert loss.dtype == torch.float32  # reductions in float32 whatever the products' dtype
        loss.backward()
        results[precision] = (float(loss.detach()), table.grad.clone())
    (loss32, grad32), (loss16, grad16) = results["fp32"], results["bf16"]
    assert loss16 != loss32  # it really ran in reduced precision
    assert abs(loss16 - loss32) <= BF16_LOSS_RTOL * abs(loss32)
    assert float(F.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0)) > 0.999


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


@pytest.mark.parametrize("chunk_elements", [1, 18, 1 << 20])  # one row, two rows, all rows per chunk
@pytest.mark.parametrize("alpha", [0.25, 0.8])
@pytest.mark.parametrize("expectation", [True, False])
def test_fused_robust_teacher_loss_equals_autograd_loss_and_gradients(chunk_elements, alpha, expectation):
    n = 9
    g1 = _rand(6, n, seed=80, scale=2.0).requires_grad_()
    g2 = _rand(6, n, seed=81, scale=2.0)
    targets = torch.tensor([0, 8, 3, 3, 5, 1])
    h_full = _rand(n, n, seed=82, scale=1.5)
    h_rows = h_full[targets].clone().requires_grad_() if expectation else None
    h_max = h_full.max(0).values.clone().requires_grad_() if expectation else None
    inputs = [t for t in (g1, h_rows, h_max) if t is not None]
    want, want_logs = robust_teacher_loss(g1, g2, targets, h_rows, h_max, alpha)
    want_grads = torch.autograd.grad(want, inputs)
    got, logs = fused_robust_teacher_loss(g1, g2, targets, h_rows, h_max, alpha, chunk_elements=chunk_elements)
    got_grads = torch.autograd.grad(got, inputs)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert float(got.detach()) == pytest.approx(_brute_robust_loss(g1, g2, targets, h_full if expectation else None, alpha,
                                                          expectation), rel=1e-10)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    assert logs.keys() == want_logs.keys()
    assert all(logs[k] == pytest.approx(want_logs[k], abs=1e-12) for k in logs)


def test_fused_robust_teacher_loss_passes_gradcheck_through_the_noise_model():
    torch.manual_seed(0)
    noise = NoiseMatrix(7, dim=3).double()
    g1 = _rand(5, 7, seed=90).requires_grad_()
    g2 = _rand(5, 7, seed=91)
    targets = torch.tensor([6, 0, 2, 2, 4])

    def loss(g1, observed, preferred):
        rows = observed[targets] @ preferred.T
        column_max = (observed[noise.column_argmax()] * preferred).sum(-1)
        return fused_robust_teacher_loss(g1, g2, targets, rows, column_max, 0.3, chunk_elements=14)[0]

    assert torch.autograd.gradcheck(loss, (g1, noise.observed, noise.preferred))


def test_fused_robust_teacher_loss_stays_finite_when_probabilities_underflow():
    g1 = _rand(3, 40, seed=92) * 1000  # softmax is 0 almost everywhere
    g2 = _rand(3, 40, seed=93) * 1000
    targets = torch.tensor([0, 7, 39])
    got, _ = fused_robust_teacher_loss(g1, g2, targets, None, None, 0.5)
    want, _ = robust_teacher_loss(g1, g2, targets, None, None, 0.5)
    assert math.isfinite(float(got)) and float(got) == pytest.approx(float(want), rel=1e-9)


def test_fused_robust_teacher_loss_rejects_half_an_expectation_term():
    with pytest.raises(ValueError, match="both"):
        fused_robust_teacher_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long),
                                  torch.zeros(2, 3), None, 0.5)


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
