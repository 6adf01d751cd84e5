"""``csrec.fit`` end to end on small synthetic data: every backbone, saving, seeds, config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import csrec
from csrec.experiment import make_config
from csrec.data import DataConfig
from csrec.errors import ConfigError, DataError
from csrec.models import backbone_names

METRICS = {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)} | {"mrr"}
TIMINGS = {"data_s", "teachers_s", "soft_labels_s", "student_s", "train_epoch_s", "valid_pass_s", "test_pass_s", "total_s"}


@pytest.mark.parametrize("backbone", backbone_names())
def test_fit_every_backbone(small_data, tmp_path, backbone):
    result = csrec.fit("synthetic", backbone, epochs=2, batch_size=32, progress=False, device="cpu", data=small_data)
    assert result.config.backbone == backbone
    metrics = result.metrics
    assert METRICS <= set(metrics)
    # Synthetic data have noisy (negative) answers and clean ones, and know the true item.
    assert {"mrr+", "mrr-", "ndcg+@10", "ndcg-@10", "true:ndcg@10", "true:mrr"} <= set(metrics)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["recall@5"] <= metrics["recall@10"] <= metrics["recall@20"]
    assert result.epochs_run == len(result.history) == 2
    assert 1 <= result.best_epoch <= 2
    for epoch, log in enumerate(result.history, start=1):
        assert log["epoch"] == epoch and math.isfinite(log["train_loss"]) and log["train_loss"] > 0
        assert METRICS <= set(log["valid"])
    # The reported validation metrics are the restored best epoch's.
    best = result.history[result.best_epoch - 1]
    assert result.valid.metrics["ndcg@10"] == pytest.approx(best["valid"]["ndcg@10"], abs=1e-12)
    assert set(result.timings) == TIMINGS
    assert all(math.isfinite(v) and v >= 0 for v in result.timings.values())
    assert result.timings["total_s"] >= result.timings["student_s"] > 0
    assert result.test.ranks.shape == (small_data.n_sequences,)
    assert result.dataset == small_data.stats()
    assert backbone in result.summary() and "NDCG@10" in result.summary()

    path = result.save(tmp_path / "out" / "result.json")
    assert path == tmp_path / "out" / "result.json"
    saved = json.loads(path.read_text())
    assert saved["test"] == pytest.approx(metrics)
    assert saved["valid"] == pytest.approx(result.valid.metrics)
    assert saved["config"]["backbone"] == backbone and saved["config"]["train"]["epochs"] == 2
    assert saved["config"]["model"]["embedding_dim"] == result.config.resolved_model().embedding_dim
    assert saved["best_epoch"] == result.best_epoch and len(saved["history"]) == 2
    assert saved["dataset"]["sub_sessions"] == small_data.n_sequences
    assert set(saved["timings"]) == TIMINGS and "python" in saved["environment"]
    arrays = np.load(path.with_suffix(".npz"))
    assert np.array_equal(arrays["test_ranks"], result.test.ranks)
    assert np.array_equal(arrays["test_positive"], result.test.positive)
    assert np.array_equal(arrays["valid_ranks"], result.valid.ranks)
    assert np.array_equal(arrays["test_true_ranks"], result.test.true_ranks)
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json", "result.npz"]  # no temp files


def test_same_seed_same_result_different_seed_different(small_data):
    def run(seed):
        return csrec.fit("synthetic", "sasrec", epochs=1, seed=seed, progress=False, device="cpu", data=small_data)

    first, again, other = run(7), run(7), run(8)
    assert first.metrics == again.metrics
    assert np.array_equal(first.test.ranks, again.test.ranks)
    assert first.history[0]["train_loss"] == again.history[0]["train_loss"]
    assert not np.array_equal(first.test.ranks, other.test.ranks)
    assert first.history[0]["train_loss"] != other.history[0]["train_loss"]


def test_fit_loads_data_itself(small_data_config):
    result = csrec.fit(
        "synthetic", "nextitnet", epochs=1, progress=False, device="cpu", synthetic=small_data_config.synthetic,
        model={"embedding_dim": 16},
    )
    assert result.dataset["sub_sessions"] > 0 and math.isfinite(result.metrics["ndcg@10"])
    assert result.config.resolved_model().embedding_dim == 16
    json.dumps(result.to_dict(), default=str)


def test_make_config_routes_flat_keywords():
    config = make_config("lastfm", "SASRec", "base", max_len=12, windowing="disjoint", lr=0.01, epochs=3, beta=0.3)
    assert config.data.name == "lastfm" and config.data.max_len == 12 and config.data.windowing == "disjoint"
    assert config.train.lr == 0.01 and config.train.epochs == 3
    assert config.method.beta == 0.3
    assert config.backbone == "sasrec"
    json.dumps(config.to_dict(), default=str)


@pytest.mark.parametrize(
    "args, kwargs, fragments",
    [
        (("synthetic", "bert5rec"), {}, ["'bert5rec'", *backbone_names()]),
        (("lastfmm",), {}, ["'lastfmm'", "lastfm", "yelp", "synthetic"]),
        (("synthetic", "gru4rec", "distill"), {}, ["'distill'", "csrec-m"]),
        (("synthetic",), {"max_len": 2}, ["max_len", "2"]),
        (("synthetic",), {"learning_rate": 0.1}, ["'learning_rate'", "lr", "max_len"]),
        (("synthetic",), {"epochs": 0}, ["epochs"]),
        (("synthetic", "gru4rec"), {"model": {"hidden": 3}}, ["hidden", "hidden_dim"]),
    ],
)
def test_config_errors_name_parameter_and_valid_values(args, kwargs, fragments):
    with pytest.raises(ConfigError) as info:
        csrec.fit(*args, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), fragment


def test_bad_data_surfaces_before_training(write_file):
    path = write_file("bad.csv", "user_id,item_id\n1,2\n1,oops\n")
    with pytest.raises(DataError, match="line 3"):
        csrec.fit(config=make_config(data=DataConfig(path=str(path)), epochs=1, progress=False))
