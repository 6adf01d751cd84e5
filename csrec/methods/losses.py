"""The paper's losses as pure functions of logits (no models, no data).

Logits here are over the real items only (column j is item j + 1), so the padding column that
the authors' code carries (and drops before each KL) never enters.

* :func:`soft_label` — Eq. 19: r = ½ (softmax(e / T) + onehot(i)).
* :func:`student_loss` — Eq. 20: (1 − β) ℓ_ce + β KL.  ``direction="code"`` (default) is the
  authors' KL(r ‖ P_f), which produced the published numbers; ``"paper"`` is Eq. 20's
  KL(P_f ‖ r).  Both use batch-mean reduction, untempered student logits and no T² factor.
* :func:`fused_student_loss` — Eq. 19–20 (code direction) and Base's cross-entropy in one
  chunked pass that never materialises r, the teachers' probabilities or the student's softmax.
* :func:`fused_output_loss` — the same with the output layer inside the chunks: not even the
  student's logits or their gradient exist whole (what the training loops use).
* :func:`robust_teacher_loss` — Eq. 17–18 for CSRec-T's main teacher g1, with the paper's α
  (the authors' ``dvae_alpha`` is 1 − α); :func:`fused_robust_teacher_loss` is the same in one
  chunked pass with a closed-form backward (what training uses).
* :func:`popularity_logits` — SoftRec's prior: training counts scaled linearly to [−5, 5].

Every softmax, log-softmax and reduction runs in float32 whatever the logits' dtype (bfloat16
under mixed precision, csrec.models.precision).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

KL_DIRECTIONS = ("code", "paper")


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is a 16-bit float (autocast products), else as it is (float64 stays)."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def soft_label(teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 19.  ``teacher_logits`` [N, n_items]; ``targets`` [N] are 0-based item columns."""
    return soft_label_from_probs(torch.softmax(teacher_logits / temperature, dim=-1), targets)


def soft_label_from_probs(teacher_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 19 given softmax(e / T) already (e.g. a probability-averaged ensemble)."""
    label = 0.5 * teacher_probs
    return label.index_put_((torch.arange(len(targets), device=targets.device), targets), torch.tensor(0.5, device=label.device, dtype=label.dtype), accumulate=True)


def kl_divergence(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) from log-probabilities, summed over items and averaged over rows (batchmean)."""
    p = p_log.exp()
    # p·(log p − log q) with 0·log 0 = 0.
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1).mean()


def student_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    soft_labels: torch.Tensor,
    beta: float,
    direction: str = "code",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 20: ℓ_s = (1 − β) ℓ_ce + β KL, over rows of ``student_logits`` [N, n_items]."""
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"unknown KL direction {direction!r}; valid: {', '.join(KL_DIRECTIONS)}")
    log_pf = F.log_softmax(widen(student_logits), dim=-1)  # float32 at least, whatever the logits' dtype
    ce = F.nll_loss(log_pf, targets)
    if beta == 0.0:
        return ce, {"ce": float(ce.detach())}
    log_r = soft_labels.clamp_min(1e-30).log()
    # r ≥ ½ on the target and > 0 elsewhere only where the teacher's probability is > 0.
    log_r = torch.where(soft_labels > 0, log_r, torch.full_like(log_r, -math.inf))
    if direction == "code":
        kl = kl_divergence(log_r, log_pf)
    else:
        # KL(P_f ‖ r) is infinite where r = 0 < P_f; clamp r so it stays finite (the
        # softmax of finite teacher logits is never exactly 0 in exact arithmetic).
        kl = kl_divergence(log_pf, soft_labels.clamp_min(1e-30).log())
    loss = (1.0 - beta) * ce + beta * kl
    return loss, {"ce": float(ce.detach()), "kl": float(kl.detach())}


def soft_label_self_information(teacher_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_j r_j log r_j per row for r of Eq. 19 (the constant part of KL(r ‖ P_f)), without forming r."""
    with torch.no_grad():
        teacher_probs = widen(teacher_probs)
        p_target = 0.5 * teacher_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        r_target = p_target + 0.5
        # Every column at ½p_j, i.e. ½ Σ p log p − ½ log 2 · Σ p, then the target column's ½p_i
        # swapped for r_i.
        return (0.5 * torch.special.xlogy(teacher_probs, teacher_probs).sum(-1)
                - 0.5 * math.log(2.0) * teacher_probs.sum(-1)
                - torch.special.xlogy(p_target, p_target) + torch.special.xlogy(r_target, r_target))


#: Float32 elements of one row chunk of the fused loss: 4 MiB, so a chunk's softmaxes stay in the
#: last-level cache between the passes that read them instead of streaming [rows × items] tensors
#: through memory (1M–16M elements per chunk measured within a few percent of each other).
FUSED_CHUNK_ELEMENTS = 1 << 20

TeacherProbs = Callable[[int, int], torch.Tensor]


def _chunk_terms(z, rows_targets, lo, hi, n, w_hard, w_soft, teacher_probs, ce_rows, soft_rows, r_log_r, out):
    """One row chunk of the fused loss: its rows' terms into ``ce_rows`` / ``soft_rows`` / ``r_log_r``
    and the closed-form gradient of the mean loss with respect to the chunk's logits ``z`` (float32
    or wider) into ``out`` (any float dtype: it is rounded on the way, in one pass)."""
    softmax = torch.softmax(z, dim=-1)
    # log-sum-exp from the row's largest probability, which sits at the largest logit (softmax is
    # monotone) and is ≥ 1/|I|, so its log is exact: lse = max z − log max softmax.  Two value-only
    # maxima are about 10× cheaper on CPU than one max with indices, and cheaper than logsumexp's
    # extra exp pass.
    lse = z.amax(dim=-1) - softmax.amax(dim=-1).log()
    ce_rows[lo:hi] = lse - z.gather(1, rows_targets).squeeze(1)
    if teacher_probs is None:
        torch.mul(softmax, w_hard / n, out=out)
    else:
        probs = teacher_probs(lo, hi).to(z.dtype)
        p_sum = probs.sum(-1)
        soft_rows[lo:hi] = lse * p_sum - torch.linalg.vecdot(probs, z)
        if r_log_r is not None:
            r_log_r[lo:hi] = soft_label_self_information(probs, rows_targets.squeeze(1))
        softmax.mul_(((w_hard + w_soft * p_sum) / n).unsqueeze(1))
        torch.sub(softmax, probs, alpha=w_soft / n, out=out)
    out.scatter_add_(1, rows_targets, out.new_full(rows_targets.shape, -w_hard / n))


def _row_buffers(n, dtype, device, self_information):
    ce_rows = torch.empty(n, dtype=dtype, device=device)
    soft_rows = torch.zeros(n, dtype=dtype, device=device)
    r_log_r = torch.zeros(n, dtype=dtype, device=device) if self_information else None
    return ce_rows, soft_rows, r_log_r


class _FusedSoftLabelLoss(torch.autograd.Function):
    """mean over rows of (1 − β/2)·CE(z, i) + (β/2)·CE(z, p), its gradient formed in the forward.

    ``teacher_probs(lo, hi)`` returns the teachers' distribution p for rows lo..hi (None: β = 0,
    plain cross-entropy).  Rows are processed in chunks: each chunk's student softmax and p are
    computed in float32, used for the loss, the closed-form gradient
    ∂/∂z = [(1 − β/2)·(softmax(z) − onehot(i)) + (β/2)·(Σp·softmax(z) − p)] / N
    and (if asked) Σ r log r, then dropped.  Only that gradient, in the logits' dtype (bfloat16
    under mixed precision), is kept for the backward, so neither the teachers' [rows × items]
    probabilities nor the student's softmax is ever materialised whole.  The backward is a
    scaling of the kept gradient.
    """

    @staticmethod
    def forward(ctx, logits, targets, beta, teacher_probs, self_information, chunk_rows):
        n = logits.shape[0]
        grad = torch.empty_like(logits)
        wide = widen(logits[:0]).dtype  # float32, or float64 for float64 logits
        rows = _row_buffers(n, wide, logits.device, self_information)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            for lo in range(0, n, chunk_rows):
                hi = min(n, lo + chunk_rows)
                # One widening copy of the chunk: row maxima over bfloat16 are about 4× slower on
                # CPU than over float32, and softmax(dtype=float32) converts as it reads anyway.
                _chunk_terms(widen(logits[lo:hi]), targets[lo:hi].unsqueeze(1), lo, hi, n, 1.0 - 0.5 * beta,
                             0.5 * beta, teacher_probs, *rows, out=grad[lo:hi])
        ctx.save_for_backward(grad)
        return _loss_and_rows(beta, rows, ctx)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, *unused):
        (grad,) = ctx.saved_tensors
        # A loss that is backpropagated as is (the training step) gets the kept gradient itself,
        # no [rows × items] copy; any other upstream gradient scales a copy, so repeated
        # backward passes (gradcheck, retain_graph) stay correct.
        if bool(grad_loss == 1.0):
            return grad, None, None, None, None, None
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None


def _loss_and_rows(beta, rows, ctx):
    ce_rows, soft_rows, r_log_r = rows
    loss = ((1.0 - 0.5 * beta) * ce_rows + 0.5 * beta * soft_rows).mean()
    outputs = (ce_rows, soft_rows) if r_log_r is None else (ce_rows, soft_rows, r_log_r)
    ctx.mark_non_differentiable(*outputs)
    return (loss, *outputs)


class _FusedOutputLayerLoss(torch.autograd.Function):
    """:class:`_FusedSoftLabelLoss` with the output layer inside: logits z = h Wᵀ + b per row chunk.

    Each chunk's logits exist only while the chunk is processed (they stay in cache between the
    matrix product, the softmax passes and the two gradient products), so no [rows × items] tensor
    is ever written to memory: not the logits, not their gradient.  What is kept for the backward
    are the gradients of h [rows × d], W [items × d] and b [items], accumulated chunk by chunk.
    The products run in the enclosing autocast's dtype (bfloat16 under mixed precision, float32
    accumulation inside each product); the softmaxes, reductions and the accumulated W and b
    gradients are float32.
    """

    @staticmethod
    def forward(ctx, reps, table, bias, targets, beta, teacher_probs, self_information, chunk_rows):
        device = reps.device
        n = reps.shape[0]
        product = (torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type)
                   else torch.promote_types(reps.dtype, table.dtype))
        wide = widen(torch.empty(0, dtype=product)).dtype  # float32, or float64 for float64 inputs
        rows = _row_buffers(n, wide, device, self_information)
        with torch.autocast(device_type=device.type, enabled=False):
            h, w = reps.detach().to(product), table.detach().to(product)
            b = None if bias is None else bias.detach().to(wide)
            grad_h = torch.empty(h.shape, dtype=product, device=device)
            grad_w = torch.zeros(w.shape, dtype=wide, device=device)
            grad_b = None if bias is None else torch.zeros(b.shape, dtype=wide, device=device)
            buffer = torch.empty((min(n, chunk_rows), w.shape[0]), dtype=product, device=device)
            grad_w_part = torch.empty(w.shape, dtype=product, device=device) if product != wide else None
            for lo in range(0, n, chunk_rows):
                hi = min(n, lo + chunk_rows)
                z = widen(h[lo:hi] @ w.T)  # a fresh tensor either way: the bias goes in in place
                if b is not None:
                    z += b
                g = buffer[: hi - lo]
                _chunk_terms(z, targets[lo:hi].unsqueeze(1), lo, hi, n, 1.0 - 0.5 * beta, 0.5 * beta,
                             teacher_probs, *rows, out=g)
                torch.matmul(g, w, out=grad_h[lo:hi])
                if product == wide:
                    grad_w.addmm_(g.T, h[lo:hi])
                else:  # a 16-bit product into a reused buffer, added to the float32 sum
                    grad_w.add_(torch.matmul(g.T, h[lo:hi], out=grad_w_part))
                if grad_b is not None:
                    grad_b += g.sum(0, dtype=wide)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (reps.dtype, table.dtype, None if bias is None else bias.dtype)
        return _loss_and_rows(beta, rows, ctx)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, *unused):
        grads = []
        for kept, dtype in zip(ctx.saved_tensors, ctx.dtypes):
            grads.append(None if kept is None else (kept * grad_loss.to(kept.dtype)).to(dtype))
        return (*grads, None, None, None, None, None)


def fused_student_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    beta: float,
    teacher_probs: TeacherProbs | None = None,
    r_log_r: torch.Tensor | None = None,
    chunk_elements: int | None = None,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Eq. 19–20 (code direction) in row chunks; Base's cross-entropy when ``teacher_probs`` is None.

    For the code's KL(r ‖ P_f) with r = ½(p + onehot(i)) (Eq. 19):
    KL = Σ_j r_j log r_j − ½ Σ_j p_j log P_f(j) − ½ log P_f(i).  The first term does not depend
    on the student; the rest is a cross-entropy against p plus half the one-hot CE, so
    ℓ_s = (1 − β/2)·CE(i) + (β/2)·CE(p) + β·Σ r log r.  ``teacher_probs(lo, hi)`` yields p for
    rows lo..hi (the teachers' tempered softmax, computed chunk by chunk, never whole).
    ``r_log_r`` are the rows' cached Σ r log r; when None they are computed from p on the way
    and returned as the third value (for the caller to cache).  Everything after the logits is
    float32 whatever their dtype; the gradient comes back in the logits' dtype.
    """
    if student_logits.dim() != 2:
        raise ValueError(f"student logits must be [rows, items], got shape {tuple(student_logits.shape)}")
    return _fused_loss(lambda *args: _FusedSoftLabelLoss.apply(student_logits, targets, *args),
                       *student_logits.shape, beta, teacher_probs, r_log_r, chunk_elements)


def fused_output_loss(
    reps: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    beta: float,
    teacher_probs: TeacherProbs | None = None,
    r_log_r: torch.Tensor | None = None,
    chunk_elements: int | None = None,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """:func:`fused_student_loss` of the logits ``reps @ table.T + bias``, which are never formed whole.

    ``reps`` [N, d] are the rows' representations, ``table`` [n_items, d] and ``bias`` [n_items]
    (or None) the output layer over the real items.  The logits, softmaxes and their gradient
    exist one row chunk at a time; gradients reach ``reps``, ``table`` and ``bias``.  The same
    loss, logs and Σ r log r as :func:`fused_student_loss` on the materialised logits, without
    the [rows × items] passes through memory that dominate a small backbone's epoch on CPU.
    """
    if reps.dim() != 2 or table.dim() != 2 or reps.shape[1] != table.shape[1]:
        raise ValueError(f"representations [rows, d] and an output table [items, d] are needed, got shapes "
                         f"{tuple(reps.shape)} and {tuple(table.shape)}")
    if bias is not None and bias.shape != table.shape[:1]:
        raise ValueError(f"the output bias must have one entry per item ({table.shape[0]}), got {tuple(bias.shape)}")
    return _fused_loss(lambda *args: _FusedOutputLayerLoss.apply(reps, table, bias, targets, *args),
                       reps.shape[0], table.shape[0], beta, teacher_probs, r_log_r, chunk_elements)


def _fused_loss(apply, n, n_items, beta, teacher_probs, r_log_r, chunk_elements):
    """The shared part of the fused losses: chunking, and the loss, logs and Σ r log r from the rows."""
    if n == 0:
        raise ValueError("the fused student loss needs at least one row")
    if teacher_probs is None:
        beta = 0.0
    chunk_rows = max(1, (chunk_elements or FUSED_CHUNK_ELEMENTS) // max(n_items, 1))
    compute = teacher_probs is not None and beta > 0.0 and r_log_r is None
    outputs = apply(float(beta), teacher_probs if beta > 0.0 else None, compute, chunk_rows)
    loss, ce_rows, soft_rows = outputs[:3]
    if compute:
        r_log_r = outputs[3]
    ce = float(ce_rows.mean())
    if beta == 0.0:
        return loss, {"ce": ce}, r_log_r
    r_log_r = r_log_r.to(loss.device, loss.dtype)
    loss = loss + beta * r_log_r.mean()
    kl = float((r_log_r + 0.5 * soft_rows + 0.5 * ce_rows).mean())
    return loss, {"ce": ce, "kl": kl}, r_log_r


def student_loss_from_teacher_probs(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_probs: torch.Tensor,
    beta: float,
    direction: str = "code",
    r_log_r: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 19–20 from softmax(e / T) without materialising r; equals ``student_loss`` with r.

    The code direction runs :func:`fused_student_loss` over the given probabilities; the paper's
    direction needs log r itself and falls back to :func:`student_loss`.
    """
    if direction != "code" or beta == 0.0:
        return student_loss(student_logits, targets, soft_label_from_probs(teacher_probs, targets), beta, direction)
    probs = teacher_probs.detach()
    loss, logs, _ = fused_student_loss(student_logits, targets, beta, lambda lo, hi: probs[lo:hi], r_log_r)
    return loss, logs


def relaxed_expectation(
    g1_probs: torch.Tensor, h_rows: torch.Tensor, h_column_max: torch.Tensor, n_items: int
) -> torch.Tensor:
    """Eq. 16: Σ_j [log(1 + exp(−h̃_ij)) + log|I| + max_k h̃_kj] P_g1(j|s), batch mean.

    ``h_rows`` [N, n_items] = h̃_{i,·} for each row's observed item i; ``h_column_max`` [n_items].
    """
    inner = F.softplus(-widen(h_rows)) + math.log(n_items) + widen(h_column_max).unsqueeze(0)
    return (inner * g1_probs).sum(-1).mean()


def exact_expectation(g1_probs: torch.Tensor, h_rows: torch.Tensor, h_logsumexp_columns: torch.Tensor) -> torch.Tensor:
    """Eq. 14: −Σ_j log softmax_k(h̃_{·j})_i P_g1(j|s), batch mean (for tests of the bound)."""
    log_h = h_rows - h_logsumexp_columns.unsqueeze(0)
    return -(log_h * g1_probs).sum(-1).mean()


def robust_teacher_loss(
    g1_logits: torch.Tensor,
    g2_logits: torch.Tensor,
    targets: torch.Tensor,
    h_rows: torch.Tensor | None,
    h_column_max: torch.Tensor | None,
    alpha: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 18: ℓ_t = ℓ_ce + ℓ_r with ℓ_r of Eq. 17, α on KL(P_g2 ‖ P_g1) as in the paper.

    ``g2_logits`` come from the frozen side teacher (no gradient reaches g2).  Pass
    ``h_rows=None`` to drop the expectation term (the paper's Fig. 10 ablation).
    """
    # Float32 whatever the logits' dtype (bfloat16 products under mixed precision).
    log_g1 = F.log_softmax(widen(g1_logits), dim=-1)
    log_g2 = F.log_softmax(widen(g2_logits.detach()), dim=-1)
    ce = F.nll_loss(log_g1, targets)
    kl_21 = kl_divergence(log_g2, log_g1)  # KL(P_g2 ‖ P_g1)
    kl_12 = kl_divergence(log_g1, log_g2)  # KL(P_g1 ‖ P_g2)
    loss = ce + alpha * kl_21 + (1.0 - alpha) * kl_12
    logs = {"ce": float(ce.detach()), "kl_g2_g1": float(kl_21.detach()), "kl_g1_g2": float(kl_12.detach())}
    if h_rows is not None:
        expectation = relaxed_expectation(log_g1.exp(), h_rows, h_column_max, g1_logits.shape[-1])
        loss = loss + expectation
        logs["expectation"] = float(expectation.detach())
    return loss, logs


class _FusedRobustTeacherLoss(torch.autograd.Function):
    """Eq. 18 (:func:`robust_teacher_loss`) in row chunks, its gradients formed in the forward.

    Per row, with p1 = softmax(z1), p2 = softmax(z2) (z2 frozen), log-probabilities z − lse and
    the expectation's inner_j = softplus(−h̃_ij) + log|I| + max_k h̃_kj (Eq. 16), the gradients of
    the batch-mean loss are, divided by N:
      ∂z1 = p1 − onehot(i) + α (p1 − p2) + (1 − α) p1 ⊙ (log p1 − log p2 − KL(p1 ‖ p2))
            + p1 ⊙ (inner − Σ_j inner_j p1_j)
      ∂h̃_i· = −p1 ⊙ sigmoid(−h̃_i·),   ∂max_k h̃_kj = Σ_rows p1_j.
    Each chunk's float32 softmaxes and products exist only while it is processed; the kept
    gradients are in the inputs' dtypes.  log p is z − lse (finite), so an underflowed p adds 0.
    """

    @staticmethod
    def forward(ctx, g1_logits, g2_logits, targets, h_rows, h_column_max, alpha, chunk_rows):
        n, n_items = g1_logits.shape
        device = g1_logits.device
        wide = widen(g1_logits[:0]).dtype
        expectation = h_rows is not None
        grad_z = torch.empty_like(g1_logits)
        grad_h = torch.empty_like(h_rows) if expectation else None
        grad_max = torch.zeros(n_items, dtype=wide, device=device) if expectation else None
        names = ("ce", "kl21", "kl12", "expectation") if expectation else ("ce", "kl21", "kl12")
        rows = {name: torch.empty(n, dtype=wide, device=device) for name in names}
        with torch.autocast(device_type=device.type, enabled=False):
            if expectation:
                column_term = widen(h_column_max.detach()) + math.log(n_items)
            for lo in range(0, n, chunk_rows):
                hi = min(n, lo + chunk_rows)
                log_p1 = torch.log_softmax(widen(g1_logits[lo:hi]), dim=-1)
                log_p2 = torch.log_softmax(widen(g2_logits[lo:hi].detach()), dim=-1)
                p1, p2 = log_p1.exp(), log_p2.exp()
                log_ratio = log_p1 - log_p2
                rows_targets = targets[lo:hi].unsqueeze(1)
                rows["ce"][lo:hi] = -log_p1.gather(1, rows_targets).squeeze(1)
                kl12 = torch.linalg.vecdot(p1, log_ratio)
                rows["kl12"][lo:hi] = kl12
                rows["kl21"][lo:hi] = -torch.linalg.vecdot(p2, log_ratio)
                # ∂z1 without the one-hot, built in place: (1 + α) p1 − α p2 + (1 − α) p1 (log p1 − log p2 − KL12)
                grad = log_ratio.sub_(kl12.unsqueeze(1)).mul_(1.0 - alpha).add_(1.0 + alpha).mul_(p1)
                grad.sub_(p2, alpha=alpha)
                if expectation:
                    h = widen(h_rows[lo:hi])
                    inner = F.softplus(-h).add_(column_term)
                    expected = torch.linalg.vecdot(p1, inner)
                    rows["expectation"][lo:hi] = expected
                    grad.addcmul_(p1, inner.sub_(expected.unsqueeze(1)))
                    grad_max += p1.sum(0)
                    torch.mul(torch.sigmoid(-h).mul_(p1), -1.0 / n, out=grad_h[lo:hi])
                grad.scatter_add_(1, rows_targets, grad.new_full(rows_targets.shape, -1.0))
                torch.mul(grad, 1.0 / n, out=grad_z[lo:hi])
        if expectation:
            grad_max /= n
        ctx.save_for_backward(grad_z, grad_h, grad_max)
        ctx.max_dtype = None if h_column_max is None else h_column_max.dtype
        ce, kl21, kl12 = rows["ce"].mean(), rows["kl21"].mean(), rows["kl12"].mean()
        loss = ce + alpha * kl21 + (1.0 - alpha) * kl12
        terms = torch.stack([ce, kl21, kl12, rows["expectation"].mean() if expectation else ce.new_zeros(())])
        if expectation:
            loss = loss + terms[3]
        ctx.mark_non_differentiable(terms)
        return loss, terms

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _unused):
        grad_z, grad_h, grad_max = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_loss.to(g.dtype)  # noqa: E731
        grad_max = scale(grad_max)
        return (scale(grad_z), None, None, scale(grad_h),
                None if grad_max is None else grad_max.to(ctx.max_dtype), None, None)


def fused_robust_teacher_loss(
    g1_logits: torch.Tensor,
    g2_logits: torch.Tensor,
    targets: torch.Tensor,
    h_rows: torch.Tensor | None,
    h_column_max: torch.Tensor | None,
    alpha: float,
    chunk_elements: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`robust_teacher_loss` (Eq. 16–18) in one chunked pass with a closed-form backward.

    The same loss and logs; autograd's version keeps a dozen [rows × items] intermediates for its
    backward, this one only the gradients of g1's logits and of h̃'s rows.
    """
    if g1_logits.dim() != 2 or g2_logits.shape != g1_logits.shape:
        raise ValueError(f"g1 and g2 logits must both be [rows, items], got {tuple(g1_logits.shape)} and "
                         f"{tuple(g2_logits.shape)}")
    if (h_rows is None) != (h_column_max is None):
        raise ValueError("the expectation term needs both h̃'s rows and its column max (or neither)")
    n, n_items = g1_logits.shape
    chunk_rows = max(1, (chunk_elements or FUSED_CHUNK_ELEMENTS) // max(n_items, 1))
    loss, terms = _FusedRobustTeacherLoss.apply(g1_logits, g2_logits, targets, h_rows, h_column_max,
                                                float(alpha), chunk_rows)
    ce, kl21, kl12, expectation = terms.tolist()
    logs = {"ce": ce, "kl_g2_g1": kl21, "kl_g1_g2": kl12}
    if h_rows is not None:
        logs["expectation"] = expectation
    return loss, logs


def popularity_logits(item_counts: torch.Tensor, scale: float = 5.0) -> torch.Tensor:
    """SoftRec's teacher logits (Cheng et al. 2021): counts mapped linearly onto [−scale, scale].

    ``item_counts`` [n_items] over the real items (training split only).  As the authors'
    ``pop.py`` (whose min is the padding column's 0): scale · (2 · count / max − 1).
    """
    counts = item_counts.to(torch.float32)
    return scale * (2.0 * counts / counts.max().clamp_min(1.0) - 1.0)
