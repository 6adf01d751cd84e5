"""The sweep's schedulers: the deterministic batch stopper and grid searcher, and ASHA across restores."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from csrec.sweep.schedule import BatchRungStopper, GridPoints, ResumableASHA, rung_cutoff, rung_milestones
from csrec.sweep.trial import METRIC


def test_rung_milestones_and_cutoff_by_hand():
    assert rung_milestones(grace_period=1, reduction_factor=3, max_t=11) == [1, 3, 9]
    assert rung_milestones(grace_period=10, reduction_factor=3, max_t=41) == [10, 30]
    assert rung_milestones(grace_period=5, reduction_factor=3, max_t=5) == []
    # the 66.7th percentile of (0.1, 0.4, 0.7), linear interpolation: 0.4 + (2/3·2 − 1)·0.3 = 0.5
    assert rung_cutoff([0.7, 0.1, 0.4], 3) == pytest.approx(0.5)
    assert rung_cutoff([0.7, 0.1, 0.4], 3, mode="min") == pytest.approx(np.percentile([0.1, 0.4, 0.7], 100 / 3))


def _stopper(path, **kwargs):
    options = dict(batch_size=2, grace_period=1, max_t=10, reduction_factor=3, metric=METRIC, mode="max")
    return BatchRungStopper(str(path), **{**options, **kwargs})


def _feed(stopper, events):
    """``events``: (trial index, epoch, value); returns the decisions."""
    out = []
    for index, epoch, value in events:
        trial = SimpleNamespace(trial_id=f"t{index}")
        stopper.on_trial_add(None, trial)
        out.append(stopper.on_trial_result(None, trial, {"training_iteration": epoch, METRIC: value}))
    return out


def test_batch_stopper_compares_only_with_earlier_batches(tmp_path):
    """Rungs at epochs 1, 3, 9.  Batch 0 (t0, t1) is never stopped; batch 1 (t2, t3) is held to the
    top third of batch 0 at the same rung, never to its own batch-mate, whatever the arrival order."""
    batch0 = [(0, 1, 0.2), (1, 1, 0.1), (0, 2, 0.3), (0, 3, 0.5), (1, 3, 0.15)]
    # batch 0 at rung 1: (0.2, 0.1) → cutoff 0.1 + (2/3)·0.1 = 0.1667; at rung 3: (0.5, 0.15) → 0.3833
    batch1 = [(2, 1, 0.18), (3, 1, 0.12), (2, 3, 0.35)]
    expected = ["CONTINUE"] * 5 + ["CONTINUE", "STOP", "STOP"]
    assert _feed(_stopper(tmp_path / "a.json"), batch0 + batch1) == expected
    # batch 1's trials reporting in the other order (another concurrency): the same decisions
    reordered = _feed(_stopper(tmp_path / "b.json"), batch0 + [batch1[1], batch1[0], batch1[2]])
    assert reordered == expected[:5] + [expected[6], expected[5], expected[7]]
    # a value off the rungs is never a decision
    assert _feed(_stopper(tmp_path / "c.json"), batch0 + [(2, 2, 0.0)]) == ["CONTINUE"] * 6


def test_batch_stopper_state_survives_a_restore(tmp_path):
    events = [(0, 1, 0.2), (1, 1, 0.1), (2, 1, 0.18), (3, 1, 0.12)]
    uninterrupted = _feed(_stopper(tmp_path / "a.json"), events)
    killed = _stopper(tmp_path / "b.json")
    pickled = pickle.dumps(killed)  # as the Tuner pickles it, before any trial ran
    assert _feed(killed, events[:3]) == uninterrupted[:3]
    restored = pickle.loads(pickled)
    # t2 reports its rung again after the restore (the same decision), t3 is decided on the same rungs
    assert _feed(restored, events[2:]) == uninterrupted[2:]
    assert restored.batch_of("t3") == 1
    with pytest.raises(ValueError, match="batch_size"):
        _stopper(tmp_path / "d.json", batch_size=0)


def test_grid_points_come_in_order_and_survive_a_restore(tmp_path):
    from ray.tune.search import Searcher

    points = [{"beta": b, "temperature": t} for b in (0.25, 0.5) for t in (1.0, 3.0)]
    searcher = GridPoints(points)
    assert [searcher.suggest(f"t{i}") for i in range(2)] == points[:2]
    searcher.save(str(tmp_path / "state.pkl"))
    restored = GridPoints([])
    restored.restore(str(tmp_path / "state.pkl"))
    assert [restored.suggest(f"t{i}") for i in range(2, 5)] == points[2:] + [Searcher.FINISHED]


def test_asha_decisions_and_rungs_survive_a_restore(tmp_path):
    """A restored ResumableASHA replays the decisions taken and decides the next from the same rungs,
    as the uninterrupted scheduler does; Tune's own ASHA starts from empty rungs and decides otherwise."""
    def scheduler(name):
        return ResumableASHA(str(tmp_path / name), time_attr="training_iteration", metric=METRIC, mode="max",
                             max_t=4, grace_period=1, reduction_factor=3)

    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(4)]
    values = [0.5, 0.6, 0.1, 0.4]

    def feed(asha, indices):
        decisions = []
        for i in indices:
            asha.on_trial_add(None, trials[i])
            decisions.append(asha.on_trial_result(None, trials[i], {"training_iteration": 1, METRIC: values[i]}))
        return decisions

    uninterrupted = feed(scheduler("a.json"), range(4))
    assert uninterrupted == ["CONTINUE", "CONTINUE", "STOP", "STOP"]  # cutoff: the 67th percentile at rung 1

    killed = scheduler("b.json")
    pickled = pickle.dumps(killed)  # as the Tuner pickles it, before any trial ran
    assert feed(killed, range(3)) == uninterrupted[:3]  # the driver dies here
    restored = pickle.loads(pickled)
    # t2 restarts from before its decision (the same decision again); t3 is decided on the same rungs.
    assert feed(restored, [2, 3]) == uninterrupted[2:]
    assert feed(scheduler("c.json"), [2, 3]) == ["CONTINUE", "CONTINUE"]  # without the kept rungs
