"""The paper's losses as pure functions of logits (no models, no data).

Logits here are over the real items only (column j is item j + 1), so the padding column that
the authors' code carries (and drops before each KL) never enters.

* :func:`soft_label` — Eq. 19: r = ½ (softmax(e / T) + onehot(i)).
* :func:`student_loss` — Eq. 20: (1 − β) ℓ_ce + β KL.  ``direction="code"`` (default) is the
  authors' KL(r ‖ P_f), which produced the published numbers; ``"paper"`` is Eq. 20's
  KL(P_f ‖ r).  Both use batch-mean reduction, untempered student logits and no T² factor.
* :func:`robust_teacher_loss` — Eq. 17–18 for CSRec-T's main teacher g1, with the paper's α
  (the authors' ``dvae_alpha`` is 1 − α).
* :func:`popularity_logits` — SoftRec's prior: training counts scaled linearly to [−5, 5].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KL_DIRECTIONS = ("code", "paper")


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
    log_pf = F.log_softmax(student_logits, dim=-1)
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


class _RowCrossEntropies(torch.autograd.Function):
    """Per-row CE(z, i) and CE(z, p) (p a fixed distribution) in a few fused passes over z.

    Forward: one softmax (kept for the backward), two value-only row maxima and a row-wise dot
    product.  Backward, for upstream row gradients a (of CE(z, i)) and b (of CE(z, p)):
    ∂/∂z = (a + b·Σp)·softmax(z) − a·onehot(i) − b·p.  The plain autograd graph (log_softmax,
    p·log P_f, their sums and backward) makes about three times as many passes over the
    [N, n_items] logits, which dominate a student's step.
    """

    @staticmethod
    def forward(ctx, logits, targets, probs, backward_in_place=False):
        softmax = torch.softmax(logits, dim=-1)
        # log-sum-exp from the row's largest probability, which sits at the largest logit (softmax
        # is monotone) and is ≥ 1/|I|, so its log is exact: lse = max z − log max softmax.  Two
        # value-only maxima are about 10× cheaper on CPU than one max with indices, and cheaper
        # than the extra exp pass of logsumexp; the softmax itself is the backward's.
        lse = logits.amax(dim=-1) - softmax.amax(dim=-1).log()
        ce_rows = lse - logits.gather(1, targets.unsqueeze(1)).squeeze(1)
        p_sum = probs.sum(-1)
        soft_rows = lse * p_sum - torch.linalg.vecdot(probs, logits)
        ctx.save_for_backward(softmax, targets, probs, p_sum)
        ctx.backward_in_place = backward_in_place
        return ce_rows, soft_rows

    @staticmethod
    def backward(ctx, grad_ce, grad_soft):
        softmax, targets, probs, p_sum = ctx.saved_tensors
        zeros = softmax.new_zeros(len(softmax))
        a = grad_ce if grad_ce is not None else zeros
        b = grad_soft if grad_soft is not None else zeros
        scale = (a + b * p_sum).unsqueeze(1)
        # In place saves a [rows × items] allocation per step; only for a single backward (a
        # second one through this graph is then refused by autograd's version check).
        grad = softmax.mul_(scale) if ctx.backward_in_place else softmax * scale
        grad.addcmul_(probs, b.unsqueeze(1), value=-1.0)
        grad.scatter_add_(1, targets.unsqueeze(1), -a.unsqueeze(1))
        return grad, None, None, None


def soft_label_self_information(teacher_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_j r_j log r_j per row for r of Eq. 19 (the constant part of KL(r ‖ P_f)), without forming r."""
    with torch.no_grad():
        p_target = 0.5 * teacher_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        r_target = p_target + 0.5
        # Every column at ½p_j, i.e. ½ Σ p log p − ½ log 2 · Σ p, then the target column's ½p_i
        # swapped for r_i.
        return (0.5 * torch.special.xlogy(teacher_probs, teacher_probs).sum(-1)
                - 0.5 * math.log(2.0) * teacher_probs.sum(-1)
                - torch.special.xlogy(p_target, p_target) + torch.special.xlogy(r_target, r_target))


def student_loss_from_teacher_probs(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_probs: torch.Tensor,
    beta: float,
    direction: str = "code",
    r_log_r: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 19–20 from softmax(e / T) without materialising r; equals ``student_loss`` with r.

    For the code's KL(r ‖ P_f) with r = ½(p + onehot(i)) (Eq. 19):
    KL = Σ_j r_j log r_j − ½ Σ_j p_j log P_f(j) − ½ log P_f(i).  The first term does not depend
    on the student (:func:`soft_label_self_information`; pass it as ``r_log_r`` when it is cached
    per row); the rest is a cross-entropy against p plus half the one-hot CE, so
    ℓ_s = (1 − β/2)·CE(i) + (β/2)·CE(p) + β·Σ r log r, with both cross-entropies from one fused
    function (:class:`_RowCrossEntropies`).  The paper's direction needs log r itself and falls
    back to :func:`student_loss`.
    """
    if direction != "code" or beta == 0.0:
        return student_loss(student_logits, targets, soft_label_from_probs(teacher_probs, targets), beta, direction)
    probs = teacher_probs.detach().to(student_logits.dtype)
    ce_rows, soft_ce_rows = _RowCrossEntropies.apply(student_logits, targets, probs, True)
    if r_log_r is None:
        r_log_r = soft_label_self_information(probs, targets)
    r_log_r = r_log_r.to(student_logits.dtype)
    ce = ce_rows.mean()
    kl = (r_log_r + 0.5 * soft_ce_rows.detach() + 0.5 * ce_rows.detach()).mean()
    loss = ((1.0 - beta) * ce_rows + beta * (0.5 * soft_ce_rows + 0.5 * ce_rows)).mean() + beta * r_log_r.mean()
    return loss, {"ce": float(ce.detach()), "kl": float(kl)}


def relaxed_expectation(
    g1_probs: torch.Tensor, h_rows: torch.Tensor, h_column_max: torch.Tensor, n_items: int
) -> torch.Tensor:
    """Eq. 16: Σ_j [log(1 + exp(−h̃_ij)) + log|I| + max_k h̃_kj] P_g1(j|s), batch mean.

    ``h_rows`` [N, n_items] = h̃_{i,·} for each row's observed item i; ``h_column_max`` [n_items].
    """
    inner = F.softplus(-h_rows) + math.log(n_items) + h_column_max.unsqueeze(0)
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
    log_g1 = F.log_softmax(g1_logits, dim=-1)
    log_g2 = F.log_softmax(g2_logits.detach(), dim=-1)
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


def popularity_logits(item_counts: torch.Tensor, scale: float = 5.0) -> torch.Tensor:
    """SoftRec's teacher logits (Cheng et al. 2021): counts mapped linearly onto [−scale, scale].

    ``item_counts`` [n_items] over the real items (training split only).  As the authors'
    ``pop.py`` (whose min is the padding column's 0): scale · (2 · count / max − 1).
    """
    counts = item_counts.to(torch.float32)
    return scale * (2.0 * counts / counts.max().clamp_min(1.0) - 1.0)
