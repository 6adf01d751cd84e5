"""Full-item ranking evaluation in bounded memory.

Every real item is a candidate.  As the authors' code does, items of the input sequence (at
test time this includes the validation item) are excluded from the ranking, except that the
answer is never excluded; padding is never a candidate.  Scores are computed for a chunk of
sequences at a time, so memory stays bounded by ``max_scores`` floats whatever the catalogue.
Scores are float32 whatever the training precision (an enclosing bfloat16 autocast is left), so
ranks never change through rounding ties of a reduced-precision product.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from csrec.data.dataset import EvalSplit, SequenceData
from csrec.metrics import DEFAULT_KS, summarize
from csrec.models.base import SequentialRecommender
from csrec.models.precision import full_precision


@dataclass
class EvalResult:
    split: str
    ranks: np.ndarray  # int64 [n]: 0-based rank of each answer among all non-excluded items
    positive: np.ndarray  # bool [n]: the answer's rating is positive
    metrics: dict[str, float]
    true_ranks: np.ndarray | None = None  # rank of the true preferred item (synthetic data)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def rank_answers(
    model: SequentialRecommender,
    split: EvalSplit,
    device: torch.device | str = "cpu",
    max_scores: int = 1 << 24,
    rep_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray | None]:
    """0-based ranks of the answers (and of the true items, when known) for every sequence."""
    model.eval()
    n = len(split.targets)
    n_items = model.n_items
    chunk = max(1, min(rep_batch, max_scores // max(n_items, 1)))
    ranks = np.empty(n, dtype=np.int64)
    true_ranks = None if split.true_targets is None else np.empty(n, dtype=np.int64)
    with torch.no_grad(), full_precision(device):
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            inputs = torch.as_tensor(split.inputs[lo:hi], device=device)
            width = int(split.lengths[lo:hi].max())
            inputs = inputs[:, :width]
            lengths = torch.as_tensor(split.lengths[lo:hi], device=device)
            rep = model.last_representation(inputs, lengths)
            scores = model.item_scores(rep).float()  # [b, n_items], column j is item j + 1
            rows = torch.arange(hi - lo, device=device)
            answers = torch.as_tensor(split.targets[lo:hi], device=device)
            answer_scores = scores[rows, answers - 1].unsqueeze(1)
            true_scores = None
            if true_ranks is not None:
                true = torch.as_tensor(split.true_targets[lo:hi], device=device).clamp(min=1)
                true_scores = scores[rows, true - 1].unsqueeze(1)
            # Exclude the history (padding ids map to column -1 and are dropped by the mask).
            history = inputs - 1
            valid = history >= 0
            row_idx = rows.unsqueeze(1).expand_as(history)[valid]
            scores[row_idx, history[valid]] = float("-inf")
            # The answer itself never counts as above itself, so excluding it is harmless.
            ranks[lo:hi] = (scores > answer_scores).sum(1).cpu().numpy()
            if true_scores is not None:
                true_ranks[lo:hi] = (scores > true_scores).sum(1).cpu().numpy()
    if true_ranks is not None:
        # A true item the k-core filter dropped from the catalogue (id 0) can never be
        # recommended: a miss at every cut-off, not the rank of whatever item the clamp picked.
        true_ranks[split.true_targets < 1] = n_items
    return ranks, true_ranks


def evaluate(
    model: SequentialRecommender,
    data: SequenceData,
    split: str = "test",
    ks=DEFAULT_KS,
    device: torch.device | str = "cpu",
    max_scores: int = 1 << 24,
    eval_split: EvalSplit | None = None,
) -> EvalResult:
    import time

    start = time.perf_counter()
    eval_split = eval_split or data.eval_split(split)
    ranks, true_ranks = rank_answers(model, eval_split, device=device, max_scores=max_scores)
    metrics = summarize(ranks, eval_split.positive, ks)
    if true_ranks is not None:
        metrics.update(summarize(true_ranks, None, ks, prefix="true:"))
    return EvalResult(
        split=split, ranks=ranks, positive=eval_split.positive, metrics=metrics,
        true_ranks=true_ranks, seconds=time.perf_counter() - start,
    )
