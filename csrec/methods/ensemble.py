"""The teachers' ensemble as a recommender: how good the soft labels are on their own.

A student can only learn from teachers that know something it does not; the ensemble's own test
metrics (next to each teacher's and the student's) say how strong the soft labels are.  Items are
ranked as the soft label orders them: by the mean of the teachers' logits (``ensemble="logits"``,
Alg. 1–2; any T gives the same order) or by the weighted mean of their tempered probabilities
softmax(e_k / T) (``"probs"``, the authors' code), exactly as :mod:`csrec.methods.softlabels`
combines them.
"""

from __future__ import annotations

import torch

from csrec.models.base import SequentialRecommender


class TeacherEnsemble(torch.nn.Module):
    """Scores of the teachers' combined soft label, usable wherever a model is ranked
    (:func:`csrec.evaluation.evaluate`)."""

    def __init__(self, teachers: list[SequentialRecommender], ensemble: str = "logits", temperature: float = 1.0,
                 weights: list[float] | None = None):
        super().__init__()
        if not teachers:
            raise ValueError("an ensemble needs at least one teacher")
        if weights is not None and len(weights) != len(teachers):
            raise ValueError(f"{len(weights)} weights for {len(teachers)} teachers")
        self.teachers = torch.nn.ModuleList(teachers)
        self.n_items = teachers[0].n_items
        self.ensemble, self.temperature = ensemble, float(temperature)
        weights = torch.tensor(weights or [1.0] * len(teachers), dtype=torch.float32)
        self.register_buffer("weights", weights / weights.sum())

    def last_representation(self, inputs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        return [t.last_representation(inputs, lengths) for t in self.teachers]

    def item_scores(self, reps: list[torch.Tensor]) -> torch.Tensor:
        logits = [t.item_scores(r).float() for t, r in zip(self.teachers, reps)]
        if self.ensemble == "logits":
            return torch.stack(logits).mean(0)
        probs = sum(w * torch.softmax(l / self.temperature, -1) for w, l in zip(self.weights, logits))
        return torch.log(probs)
