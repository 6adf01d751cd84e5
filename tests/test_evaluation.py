"""Full-item ranking against a brute-force per-row Python sort, chunking included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csrec.data.dataset import EvalSplit
from csrec.evaluation import evaluate, rank_answers
from csrec.metrics import summarize
from csrec.models import build_backbone
from csrec.models.base import BackboneConfig, SequentialRecommender


class FixedScores(SequentialRecommender):
    """Scores are a fixed random function of the (unpadded) input sequence.

    Scores take few distinct values, so ties with the answer are common: they must not count as
    ranked above it.  The item table is the identity, so ``item_scores`` returns the
    representation itself.
    """

    def __init__(self, n_items: int, max_len: int, seed: int = 0, levels: int = 6):
        super().__init__(n_items, max_len, BackboneConfig(embedding_dim=n_items))
        g = torch.Generator().manual_seed(seed)
        self.n_keys = 997
        self.register_buffer("table", torch.randint(0, levels, (self.n_keys, n_items), generator=g).float())
        self.register_buffer("mult", torch.randint(1, 10_000, (max_len + 1,), generator=g))
        self.calls: list[int] = []

    def last_representation(self, items, lengths):
        self.calls.append(items.shape[0])
        # Right padding is 0, so trailing padding columns never change the key.
        key = (items * self.mult[: items.shape[1]]).sum(1) + 7919 * lengths
        return self.table[key % self.n_keys]

    def output_table(self):
        return torch.cat([torch.zeros(1, self.n_items), torch.eye(self.n_items)])


def brute_force_ranks(model: SequentialRecommender, split: EvalSplit, answers: np.ndarray) -> list[int]:
    """For each row alone: sort all real items by score, skipping the history (never the answer)
    and padding, and return the number of candidates strictly above the answer."""
    ranks = []
    with torch.no_grad():
        for row in range(len(answers)):
            n = int(split.lengths[row])
            history = split.inputs[row, :n].tolist()
            rep = model.last_representation(
                torch.as_tensor(split.inputs[row : row + 1, :n]), torch.as_tensor([n])
            )
            scores = model.item_scores(rep)[0].tolist()
            answer = int(answers[row])
            if answer == 0:  # a true item outside the catalogue: never recommended
                ranks.append(model.n_items)
                continue
            candidates = [
                (scores[item - 1], item) for item in range(1, model.n_items + 1) if item == answer or item not in history
            ]
            candidates.sort(key=lambda pair: -pair[0])
            answer_score = scores[answer - 1]
            ranks.append(sum(1 for score, item in candidates if item != answer and score > answer_score))
    return ranks


@pytest.mark.parametrize("split_name", ["valid", "test"])
def test_rank_answers_matches_brute_force(small_data, split_name):
    split = small_data.eval_split(split_name)
    model = FixedScores(small_data.n_items, small_data.max_len, seed=1)
    ranks, true_ranks = rank_answers(model, split)
    assert ranks.dtype == np.int64 and ranks.shape == split.targets.shape
    assert ranks.tolist() == brute_force_ranks(model, split, split.targets)
    assert true_ranks.tolist() == brute_force_ranks(model, split, split.true_targets)
    # The data exercise the special cases: answers repeated from the history, and ties.
    in_history = [split.targets[i] in split.inputs[i, : split.lengths[i]] for i in range(len(split.targets))]
    assert any(in_history)
    assert ranks.max() < small_data.n_items


@pytest.mark.parametrize("max_scores", [1, 7 * 59, 59 * 1000])
def test_chunking_does_not_change_ranks(small_data, max_scores):
    split = small_data.eval_split("test")
    model = FixedScores(small_data.n_items, small_data.max_len, seed=2)
    full, full_true = rank_answers(model, split)
    assert model.calls == [len(split.targets)]
    model.calls.clear()
    ranks, true_ranks = rank_answers(model, split, max_scores=max_scores)
    chunk = max(1, min(1024, max_scores // small_data.n_items))
    assert model.calls == [min(chunk, len(split.targets) - lo) for lo in range(0, len(split.targets), chunk)]
    assert np.array_equal(ranks, full) and np.array_equal(true_ranks, full_true)


def test_evaluate_metrics_from_ranks(small_data):
    model = FixedScores(small_data.n_items, small_data.max_len, seed=3)
    split = small_data.eval_split("test")
    result = evaluate(model, small_data, "test", max_scores=3 * small_data.n_items)
    expected_ranks = brute_force_ranks(model, split, split.targets)
    assert result.ranks.tolist() == expected_ranks
    assert result.split == "test"
    assert np.array_equal(result.positive, split.positive)
    expected = summarize(np.array(expected_ranks), split.positive)
    expected.update(summarize(np.array(brute_force_ranks(model, split, split.true_targets)), None, prefix="true:"))
    assert result.metrics == pytest.approx(expected, rel=1e-12)
    assert {"recall+@10", "recall-@10", "ndcg+@20", "ndcg-@20", "mrr+", "mrr-", "true:ndcg@10"} <= set(result.metrics)


def test_hand_made_split_with_answer_in_history_and_ties():
    # 6 items; scores fixed per row through an identity "model".
    class Table(SequentialRecommender):
        def __init__(self, scores):
            super().__init__(scores.shape[1], 4, BackboneConfig(embedding_dim=scores.shape[1]))
            self.scores = scores

        def last_representation(self, items, lengths):
            return self.scores[items[:, 0] - 1]  # row chosen by the first item

        def output_table(self):
            return torch.cat([torch.zeros(1, self.n_items), torch.eye(self.n_items)])

    scores = torch.tensor(
        [
            [0.9, 0.5, 0.5, 0.1, 0.7, 0.2],  # row for sequences starting with item 1
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # item 2
        ]
    )
    split = EvalSplit(
        inputs=np.array([[1, 5, 0], [1, 3, 2], [2, 6, 0], [2, 0, 0]]),
        lengths=np.array([2, 3, 2, 1]),
        targets=np.array([3, 1, 6, 5]),
        positive=np.array([True, False, True, True]),
        true_targets=None,
    )
    ranks, true_ranks = rank_answers(Table(scores), split)
    # Row 0: history {1, 5} is excluded; item 2 ties with the answer 3 (not above): rank 0.
    # Row 1: the answer 1 is in the history but still ranked; nothing else is above 0.9: rank 0.
    # Row 2: answer 6 is in the history; rank 0.  Row 3: history {2}; item 6 (0.6) above 5: rank 1.
    assert ranks.tolist() == [0, 0, 0, 1]
    assert true_ranks is None
    assert ranks.tolist() == brute_force_ranks(Table(scores), split, split.targets)
    # True items: 0 (outside the catalogue) is a miss, ranked below every candidate.
    split.true_targets = np.array([0, 4, 0, 6])
    ranks, true_ranks = rank_answers(Table(scores), split)
    assert true_ranks.tolist() == [6, 2, 6, 0]  # row 1: history {1, 2, 3} masked; 5 and 6 above 4
    assert summarize(true_ranks, None, (5,))["recall@5"] == 0.5


def test_real_backbone_matches_brute_force(small_data):
    torch.manual_seed(0)
    model = build_backbone("sasrec", small_data.n_items, small_data.max_len, {"embedding_dim": 16}).eval()
    split = small_data.eval_split("test")
    ranks, _ = rank_answers(model, split, max_scores=5 * small_data.n_items)
    expected = brute_force_ranks(model, split, split.targets)
    # Batched and one-row passes may differ in the last float bit; allow a rare off-by-one.
    assert np.abs(ranks - np.array(expected)).max() <= 1
    assert np.mean(ranks == np.array(expected)) > 0.95


def test_scores_stay_float32_inside_a_bfloat16_autocast(small_data):
    """Evaluation leaves any enclosing autocast: the ranks are the float32 ones."""
    from csrec.models.precision import autocast

    torch.manual_seed(0)
    model = build_backbone("sasrec", small_data.n_items, small_data.max_len)
    split = small_data.eval_split("test")
    want, _ = rank_answers(model, split)
    with autocast("bf16", torch.device("cpu")):
        got, _ = rank_answers(model, split)
    np.testing.assert_array_equal(got, want)
