"""``csrec.fit`` end to end on small synthetic data: every backbone, saving (the result and its
model), seeds, config errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import csrec
from csrec import artifacts
from csrec.cli import main
from csrec.experiment import make_config
from csrec.data import DataConfig, SyntheticConfig, load_dataset
from csrec.errors import ConfigError, DataError
from csrec.models import backbone_names

METRICS = {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)} | {"mrr"}
TIMINGS = {"data_s", "teachers_s", "soft_labels_s", "student_s", "train_epoch_s", "valid_pass_s", "test_pass_s", "total_s"}


@pytest.mark.parametrize("backbone", backbone_names())
def test_fit_every_backbone(small_data, small_data_config, tmp_path, backbone):
    result = csrec.fit("synthetic", backbone, epochs=2, batch_size=32, progress=False, device="cpu", data=small_data,
                       synthetic=small_data_config.synthetic)
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
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json", "result.model.pt", "result.npz"]  # no temp files
    assert csrec.load(path.with_name("result.model.pt"), data=small_data).backbone == backbone


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


# --- the trained model: FitResult.save → csrec.load → recommend -----------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A SASRec CSRec-M fit on small synthetic data, saved (JSON, ranks and model)."""
    config = make_config("synthetic", "sasrec", "csrec-m", num_teachers=2, epochs=2, batch_size=32, progress=False,
                         device="cpu", use_cache=False, synthetic=SyntheticConfig(n_users=120, n_items=60, n_clusters=6,
                                                                                  mean_length=14))
    result = csrec.fit(config=config)
    path = result.save(tmp_path_factory.mktemp("fit") / "fit.json")
    return result, path


def _test_split_histories(result):
    """The test split's inputs as histories of raw item ids, and the split itself."""
    item_ids = artifacts.catalogue_item_ids(result.config.data)
    split = result.data.eval_split("test")
    histories = [item_ids[split.inputs[i, : split.lengths[i]] - 1].tolist() for i in range(len(split.lengths))]
    return histories, split, item_ids


def test_fit_result_keeps_its_student_and_data_out_of_the_json(fitted):
    result, path = fitted
    assert result.student is not None and result.data is not None and result.data.n_items == result.student.n_items
    assert not {"student", "data"} & set(result.to_dict())
    assert not {"student", "data"} & set(json.loads(path.read_text()))


def test_saved_model_recommends_with_the_in_memory_students_scores(fitted):
    result, path = fitted
    model_path = artifacts.model_path_for(path)
    assert model_path == path.with_name("fit.model.pt") and model_path.is_file()
    loaded = csrec.load(model_path, data=load_dataset(result.config.data))
    assert loaded.backbone == "sasrec" and loaded.n_items == result.data.n_items
    histories, split, item_ids = _test_split_histories(result)
    k = 10
    out = loaded.recommend(histories, k=k, exclude_seen=False)

    student = result.student.eval()
    with torch.no_grad():
        scores = student.item_scores(
            student.last_representation(torch.as_tensor(split.inputs), torch.as_tensor(split.lengths))
        ).numpy()
    best = np.sort(scores, axis=1)[:, ::-1][:, :k]
    np.testing.assert_allclose(out.scores, best, rtol=1e-5, atol=1e-6)
    # Each recommended raw id is the column the in-memory student gave that score.
    column = {int(raw): j for j, raw in enumerate(item_ids)}
    columns = np.vectorize(column.__getitem__)(out.items)
    np.testing.assert_allclose(np.take_along_axis(scores, columns, 1), out.scores, rtol=1e-5, atol=1e-6)
    # The loaded model ranks the test answers as the fit's evaluation did (history excluded, 0-based).
    answers = item_ids[split.targets - 1]
    everything = loaded.recommend(histories, k=loaded.n_items, exclude_seen=False)
    answer_scores = everything.scores[everything.items == answers[:, None]]
    unseen = loaded.recommend(histories, k=loaded.n_items, exclude_seen=True)
    assert np.array_equal((unseen.scores > answer_scores[:, None]).sum(1), result.test.ranks)


def test_loading_the_model_with_other_data_is_refused(fitted):
    result, path = fitted
    other = load_dataset(dataclasses.replace(
        result.config.data, synthetic=dataclasses.replace(result.config.data.synthetic, seed=7)))
    with pytest.raises(DataError) as info:
        csrec.load(artifacts.model_path_for(path), data=other)
    message = str(info.value)
    assert "the model was trained on 'synthetic'" in message
    assert result.data.fingerprint[:12] in message and other.fingerprint[:12] in message


def test_save_refuses_a_config_that_does_not_describe_the_data(small_data, tmp_path):
    result = csrec.fit("synthetic", "gru4rec", epochs=1, progress=False, device="cpu", data=small_data)  # default synthetic config
    with pytest.raises(ConfigError, match=r"fit\.model\.pt: cannot save the model: data_config did not prepare this data"):
        result.save(tmp_path / "fit.json")
    assert list(tmp_path.iterdir()) == []


def test_cli_fit_output_writes_the_model_beside_the_json(synthetic_csv, tmp_path, capsys):
    out = tmp_path / "runs" / "cli.json"
    argv = ["fit", "--path", str(synthetic_csv), "--backbone", "gru4rec", "--epochs", "1", "--no-progress",
            "--device", "cpu", "--no-use-cache", "--model", "embedding_dim=16", "--output", str(out)]
    assert main(argv) == 0
    model_path = out.with_name("cli.model.pt")
    assert str(model_path) in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["cli.json", "cli.model.pt", "cli.npz"]
    saved = json.loads(out.read_text())
    loaded = csrec.load(model_path, data=load_dataset(DataConfig(path=str(synthetic_csv), use_cache=False)))
    assert loaded.backbone == "gru4rec" and loaded.n_items == saved["dataset"]["items"]
    assert set(loaded.item_ids.tolist()) <= set(np.unique(np.loadtxt(synthetic_csv, delimiter=",", skiprows=1, usecols=1)))
