"""The teachers' ensemble as a recommender, against a brute-force computation of its scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import csrec
from csrec.evaluation import evaluate
from csrec.methods.ensemble import TeacherEnsemble


def _teacher_logits(teachers, split) -> list[np.ndarray]:
    """Each teacher's [sequences × items] logits, one sequence at a time (no batching, no mask)."""
    out = []
    with torch.no_grad():
        for t in teachers:
            rows = []
            for i in range(len(split.targets)):
                length = int(split.lengths[i])
                inputs = torch.as_tensor(split.inputs[i:i + 1, :length])
                rep = t.last_representation(inputs, torch.as_tensor([length]))
                rows.append(t.item_scores(rep).float().numpy()[0])
            out.append(np.stack(rows).astype(np.float64))
    return out


def _ranks(scores: np.ndarray, split) -> np.ndarray:
    ranks = []
    for i, row in enumerate(scores):
        row = row.copy()
        answer = row[split.targets[i] - 1]
        seen = [j - 1 for j in split.inputs[i, :int(split.lengths[i])] if j > 0]
        row[seen] = -np.inf
        ranks.append(int((row > answer).sum()))
    return np.array(ranks)


@pytest.mark.parametrize("ensemble,weights", [("logits", None), ("probs", [0.1, 0.9]), ("probs", None)])
def test_ensemble_ranks_equal_brute_force(m_setup, data, ensemble, weights):
    _, _, teachers = m_setup
    models = [t.model for t in teachers]
    split = data.eval_split("test")
    logits = _teacher_logits(models, split)
    if ensemble == "logits":
        expected = np.mean(logits, axis=0)
    else:
        w = np.asarray(weights or [1.0, 1.0]) / np.sum(weights or [1.0, 1.0])
        probs = [np.exp(l / 3.0 - (l / 3.0).max(1, keepdims=True)) for l in logits]
        probs = [p / p.sum(1, keepdims=True) for p in probs]
        expected = np.log(sum(wk * p for wk, p in zip(w, probs)))
    result = evaluate(TeacherEnsemble(models, ensemble, temperature=3.0, weights=weights), data, "test")
    np.testing.assert_array_equal(result.ranks, _ranks(expected, split))


def test_a_single_teacher_ensemble_is_the_teacher(method_config):
    fitted = csrec.fit(config=method_config("csrec-m", num_teachers=1))
    assert fitted.ensemble == fitted.teachers[0]["test"]
    assert csrec.fit(config=method_config("base")).ensemble is None
    with pytest.raises(ValueError, match="2 weights for 1 teachers"):
        TeacherEnsemble([object()], weights=[0.5, 0.5])  # type: ignore[list-item]
