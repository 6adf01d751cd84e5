"""csrec.fit for every soft-label method on tiny synthetic data: teachers reported, runs repeatable."""

from __future__ import annotations

import math

import pytest

import csrec
from csrec.methods import TeacherPool

METRICS = ("recall@10", "ndcg@10")
EXPECTED_ROLES = {
    "softrec": [],
    "csrec-m": ["teacher", "teacher"],
    "csrec-d": ["teacher", "teacher"],
    "csrec-t": ["main", "side"],
}


def _check_metrics(metrics: dict) -> None:
    for name in METRICS:
        assert name in metrics and 0.0 <= metrics[name] <= 1.0 and math.isfinite(metrics[name])


@pytest.mark.parametrize("method", list(EXPECTED_ROLES))
def test_fit_reports_teachers_and_is_repeatable(method, method_config, tmp_path):
    config = method_config(method)
    first = csrec.fit(config=config)
    second = csrec.fit(config=method_config(method), pool=TeacherPool(tmp_path))  # fresh teachers
    assert first.config.method.name == method
    _check_metrics(first.metrics)
    assert first.epochs_run == 1
    assert [t["role"] for t in first.teachers] == EXPECTED_ROLES[method]
    for teacher in first.teachers:
        _check_metrics(teacher["valid"])
        _check_metrics(teacher["test"])
        assert teacher["key"] and teacher["spec"]["backbone"] == "gru4rec"
    if method == "csrec-d":
        assert [t["spec"]["subsample_seed"] for t in first.teachers] == [2000, 2001]
    if method == "csrec-t":
        main, side = first.teachers
        assert main["spec"]["robust"] and main["spec"]["side"] == side["spec"]
        assert side["spec"]["subsample"] == pytest.approx(0.8)
    # The student trained with the soft-label loss (its KL term was logged).
    assert "kl" in first.history[0]["extra"]
    # Same seed, same everything.
    assert second.metrics == first.metrics
    assert second.valid.metrics == first.valid.metrics
    assert [(t["key"], t["valid"], t["test"]) for t in second.teachers] == [
        (t["key"], t["valid"], t["test"]) for t in first.teachers
    ]
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]
    assert first.to_dict()["teachers"] == first.teachers


def test_fit_result_differs_with_seed(method_config):
    a = csrec.fit(config=method_config("csrec-m", seed=1))
    b = csrec.fit(config=method_config("csrec-m", seed=2))
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]


def test_fit_keeps_soft_labels_within_the_configured_budget(method_config, monkeypatch):
    """TrainConfig.soft_label_cache_gib reaches the student's loss: 0 rebuilds the soft labels in
    every batch, the default keeps them; in float32 both give the same student."""
    from csrec.methods import run

    built = []
    original = run.SoftLabelLoss.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(run.SoftLabelLoss, "__init__", recording)
    kept = csrec.fit(config=method_config("csrec-m"))
    rebuilt = csrec.fit(config=method_config("csrec-m", soft_label_cache_gib=0.0))
    assert [loss.caches for loss in built] == [True, False]
    assert kept.history[0]["train_loss"] == pytest.approx(rebuilt.history[0]["train_loss"], rel=1e-6)
    assert kept.metrics == pytest.approx(rebuilt.metrics, abs=1e-6)
