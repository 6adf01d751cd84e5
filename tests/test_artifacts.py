"""Model files: save → load → recommend gives the in-memory model's scores in raw item ids; seen
items, unknown items, long histories, a mismatched dataset and damaged files are handled."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from csrec import artifacts
from csrec.data import DataConfig, SyntheticConfig, load_dataset
from csrec.errors import ConfigError, DataError
from csrec.evaluation import rank_answers
from csrec.models import backbone_names, build_backbone
from csrec.training import TrainConfig, train_model

SMALL = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)
TINY_MODEL = {"embedding_dim": 16}


@pytest.fixture(scope="module")
def data_config() -> DataConfig:
    return DataConfig(synthetic=SyntheticConfig(**SMALL), use_cache=False)


@pytest.fixture(scope="module")
def data(data_config):
    return load_dataset(data_config)


@pytest.fixture(scope="module")
def item_ids(data_config):
    return artifacts.catalogue_item_ids(data_config)


@pytest.fixture(scope="module")
def trained(data):
    """A GRU4Rec trained for one epoch (its best weights are the epoch's)."""
    torch.manual_seed(0)
    model = build_backbone("gru4rec", data.n_items, data.max_len, TINY_MODEL)
    train_model(model, data, TrainConfig(epochs=1, batch_size=32, seed=1, device="cpu", progress=False))
    return model.eval()


@pytest.fixture(scope="module")
def saved(trained, data, data_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "fit.model.pt"
    assert artifacts.save(path, trained, data, data_config) == path
    return path


def _test_histories(data, item_ids):
    """The test split's inputs as raw-id histories, plus the internal inputs they came from."""
    split = data.eval_split("test")
    histories = [item_ids[split.inputs[i, : split.lengths[i]] - 1].tolist() for i in range(len(split.lengths))]
    return histories, split


def _in_memory_scores(model, split) -> np.ndarray:
    with torch.no_grad():
        rep = model.last_representation(torch.as_tensor(split.inputs), torch.as_tensor(split.lengths))
        return model.item_scores(rep).numpy()


def _columns(item_ids, raw):
    """Model column of each raw id (brute force: a dict)."""
    column = {int(raw_id): j for j, raw_id in enumerate(item_ids)}
    return np.vectorize(column.__getitem__)(raw)


# --- the round trip -------------------------------------------------------------------------------
def test_round_trip_gives_the_in_memory_models_scores(trained, saved, data, item_ids):
    loaded = artifacts.load(saved, data=data)
    assert loaded.backbone == "gru4rec" and loaded.n_items == data.n_items and loaded.max_len == data.max_len
    histories, split = _test_histories(data, item_ids)
    expected = _in_memory_scores(trained, split)
    out = loaded.recommend(histories, k=data.n_items, exclude_seen=False, max_scores=40 * data.n_items)  # 4 chunks
    assert out.items.shape == out.scores.shape == (len(histories), data.n_items)
    columns = _columns(item_ids, out.items)
    assert np.array_equal(np.sort(columns, axis=1), np.tile(np.arange(data.n_items), (len(histories), 1)))
    np.testing.assert_allclose(out.scores, np.take_along_axis(expected, columns, 1), rtol=1e-5, atol=1e-6)
    assert (np.diff(out.scores, axis=1) <= 0).all()  # best first


def test_round_trip_of_every_backbone(data, data_config, item_ids, tmp_path):
    histories, split = _test_histories(data, item_ids)
    histories, split = histories[:16], dataclasses.replace(
        split, inputs=split.inputs[:16], lengths=split.lengths[:16], targets=split.targets[:16]
    )
    for name in backbone_names():
        torch.manual_seed(0)
        model = build_backbone(name, data.n_items, data.max_len, TINY_MODEL).eval()
        path = artifacts.save(tmp_path / f"{name}.model.pt", model, data, data_config)
        out = artifacts.load(path).recommend(histories, k=5, exclude_seen=False)
        expected = np.sort(_in_memory_scores(model, split), axis=1)[:, ::-1][:, :5]
        np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        assert artifacts.load(path).model.config == model.config


def test_excluding_seen_items_ranks_answers_as_evaluation_does(saved, trained, data, item_ids):
    """Where the answer is not in its input, its place in the full list is evaluation's rank."""
    histories, split = _test_histories(data, item_ids)
    ranks, _ = rank_answers(trained, split)
    out = artifacts.load(saved).recommend(histories, k=data.n_items, exclude_seen=True)
    answers = item_ids[split.targets - 1]
    fresh = np.array([answers[i] not in histories[i] for i in range(len(histories))])
    assert fresh.sum() > 50
    place = np.argmax(out.items == answers[:, None], axis=1)
    assert np.array_equal(place[fresh], ranks[fresh])


# --- recommend's rules ----------------------------------------------------------------------------
def test_exclude_seen_drops_every_history_item_and_fills_with_minus_inf(saved, data, item_ids):
    loaded = artifacts.load(saved)
    history = item_ids[:30].tolist()  # longer than the model's window of max_len - 1 = 19 items
    assert len(history) > loaded.history_window
    shown = loaded.recommend([history], k=10, exclude_seen=False)
    top = loaded.recommend([history], k=10).items[0]
    assert not set(top) & set(history)
    assert set(shown.items[0]) & set(history)  # without the rule, some seen items rank high
    full = loaded.recommend([history], k=data.n_items)
    assert np.isfinite(full.scores[0, : data.n_items - 30]).all()
    assert np.isneginf(full.scores[0, data.n_items - 30 :]).all()
    assert set(full.items[0, data.n_items - 30 :]) == set(history)


def test_long_history_is_cut_to_its_last_window_as_evaluation_inputs_are(saved, trained, data, item_ids):
    """Evaluation feeds at most max_len - 1 items (a sub-session less its answer); so does recommend."""
    loaded = artifacts.load(saved)
    assert loaded.history_window == data.max_len - 1 == 19
    history = item_ids[:30].tolist()
    out = loaded.recommend([history], k=data.n_items, exclude_seen=False)
    tail = torch.arange(30 - 19, 30).unsqueeze(0) + 1  # internal ids of the last 19 items
    with torch.no_grad():
        expected = trained.item_scores(trained.last_representation(tail, torch.tensor([19])))[0].numpy()
    np.testing.assert_allclose(out.scores[0], expected[_columns(item_ids, out.items[0])], rtol=1e-5, atol=1e-6)
    short = loaded.recommend([history[-19:]], k=8, exclude_seen=False)
    np.testing.assert_array_equal(out.items[:, :8], short.items)


def test_unknown_item_is_an_error_naming_history_and_item_or_is_skipped(saved, item_ids):
    loaded = artifacts.load(saved)
    stranger = int(item_ids.max()) + 1000
    histories = [item_ids[:3].tolist(), [int(item_ids[4]), stranger, int(item_ids[5])]]
    with pytest.raises(artifacts.HistoryError, match=f"history 1: item {stranger} is not in the model's catalogue") as info:
        loaded.recommend(histories)
    assert info.value.index == 1 and "unknown='skip'" in str(info.value)
    skipped = loaded.recommend(histories, unknown="skip")
    cleaned = loaded.recommend([histories[0], [int(item_ids[4]), int(item_ids[5])]])
    np.testing.assert_array_equal(skipped.items, cleaned.items)
    with pytest.raises(artifacts.HistoryError, match="history 1: no item of the model's catalogue"):
        loaded.recommend([histories[0], [stranger]], unknown="skip")
    with pytest.raises(artifacts.HistoryError, match="history 0: no item"):
        loaded.recommend([[]])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(k=0), "k must be between 1 and the catalogue size"),
        (dict(k=10_000), "k must be between 1"),
        (dict(unknown="ignore"), "unknown must be one of error, skip"),
    ],
)
def test_bad_arguments_are_config_errors(saved, item_ids, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        artifacts.load(saved).recommend([item_ids[:3].tolist()], **kwargs)


@pytest.mark.parametrize("history", [["11", "12"], [11.0, 12.5], [11, "x"]])
def test_non_integer_ids_are_a_config_error_not_truncated_or_parsed(saved, history):
    with pytest.raises(ConfigError, match="histories must hold integer item ids"):
        artifacts.load(saved).recommend([history])


# --- the dataset check ----------------------------------------------------------------------------
def test_loading_with_other_data_is_refused_with_both_described(saved, data, data_config):
    other = load_dataset(dataclasses.replace(data_config, synthetic=SyntheticConfig(**{**SMALL, "seed": 7})))
    with pytest.raises(DataError) as info:
        artifacts.load(saved, data=other)
    message = str(info.value)
    assert message.startswith(f"{saved}: the model was trained on 'synthetic'")
    assert data.fingerprint[:12] in message and other.fingerprint[:12] in message
    shorter = load_dataset(dataclasses.replace(data_config, max_len=10))
    with pytest.raises(DataError, match="max_len 20.*max_len 10"):
        artifacts.load(saved, data=shorter)
    assert artifacts.load(saved, data=load_dataset(data_config)).dataset.fingerprint == data.fingerprint


def test_save_refuses_a_config_that_did_not_prepare_the_data(trained, data, data_config, tmp_path):
    other = dataclasses.replace(data_config, synthetic=SyntheticConfig(**{**SMALL, "n_items": 40}))
    with pytest.raises(ConfigError, match="data_config did not prepare this data"):
        artifacts.save(tmp_path / "m.pt", trained, data, other)
    with pytest.raises(ConfigError, match="data_config did not prepare this data"):
        artifacts.save(tmp_path / "m.pt", trained, data, dataclasses.replace(data_config, windowing="disjoint"))
    assert not (tmp_path / "m.pt").exists()


def test_catalogue_maps_columns_back_to_the_files_item_ids(tmp_path):
    """Raw ids far from 1..n: each sub-session, read through the table, is its user's file sequence."""
    frame = pd.DataFrame({
        "user_id": np.repeat([30, 10, 20], [6, 7, 5]),
        "item_id": 9000 + 7 * np.array([5, 3, 5, 8, 1, 3, 8, 8, 1, 3, 5, 1, 3, 1, 3, 5, 8, 8]),
    })
    frame["timestamp"] = np.arange(len(frame))
    path = tmp_path / "raw.csv"
    frame.to_csv(path, index=False)
    config = DataConfig(path=str(path), min_user_interactions=3, min_item_interactions=1, max_len=50, use_cache=False)
    data = load_dataset(config)
    item_ids = artifacts.catalogue_item_ids(config)
    got = [item_ids[data.items[lo:hi] - 1].tolist() for lo, hi in zip(data.offsets[:-1], data.offsets[1:])]
    assert got == [frame.item_id[frame.user_id == u].tolist() for u in (30, 10, 20)]
    # The prepared data carries the same table, fresh and read back from the cache alike.
    assert data.item_ids.tolist() == item_ids.tolist()
    cached = dataclasses.replace(config, use_cache=True, cache_dir=str(tmp_path / "cache"))
    load_dataset(cached)
    assert load_dataset(cached).item_ids.tolist() == item_ids.tolist()


# --- the file -------------------------------------------------------------------------------------
def test_model_path_sits_beside_the_result_json(tmp_path):
    assert artifacts.model_path_for(tmp_path / "runs" / "fit.json") == tmp_path / "runs" / "fit.model.pt"


def test_missing_damaged_and_foreign_files_are_clear_errors(saved, tmp_path):
    with pytest.raises(DataError, match="no such model file"):
        artifacts.load(tmp_path / "absent.model.pt")
    blob = saved.read_bytes()
    cases = {
        "truncated.pt": blob[: len(blob) // 2],
        "garbage.pt": bytes(range(256)) * 4,
        "empty.pt": b"",
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataError, match=f"{name}: not a readable csrec model file") as info:
            artifacts.load(tmp_path / name)
        assert "\n" not in str(info.value)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(DataError, match="foreign.pt: not a csrec model file"):
        artifacts.load(tmp_path / "foreign.pt")


def test_tampered_payloads_are_clear_errors(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)

    def broken(name, **changes):
        path = tmp_path / name
        torch.save({**payload, **changes}, path)
        return path

    with pytest.raises(DataError, match="version 99; this csrec reads version 1"):
        artifacts.load(broken("future.pt", version=99))
    with pytest.raises(DataError, match="cannot rebuild the model: unknown backbone 'lstm'"):
        artifacts.load(broken("backbone.pt", backbone="lstm"))
    state = dict(payload["state_dict"])
    state.pop(next(iter(state)))
    with pytest.raises(DataError, match="weights do not fit a gru4rec"):
        artifacts.load(broken("weights.pt", state_dict=state))
    ids = payload["item_ids"].clone()
    ids[0] += 1
    with pytest.raises(DataError, match="item-id table does not match"):
        artifacts.load(broken("ids.pt", item_ids=ids))
    with pytest.raises(DataError, match="damaged csrec model file"):
        artifacts.load(broken("ids_list.pt", item_ids=ids.tolist()))
    with pytest.raises(DataError, match="damaged csrec model file"):
        artifacts.load(broken("dataset.pt", dataset={"name": "x"}))
