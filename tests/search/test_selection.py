"""A cell's best trial: highest validation metric, ties broken by the configuration, never by row order."""

from __future__ import annotations

import math

import pandas as pd

from csrec.search.selection import SELECT_METRIC, best_row, config_key


def _trials() -> pd.DataFrame:
    return pd.DataFrame([
        {"trial_id": "b", "config/beta": 0.275, "config/temperature": 6.48, "config/num_teachers": 2,
         SELECT_METRIC: 0.247381},
        {"trial_id": "a", "config/beta": 0.255, "config/temperature": 4.99, "config/num_teachers": 1,
         SELECT_METRIC: 0.247381},
        {"trial_id": "c", "config/beta": 0.5, "config/temperature": 1.0, "config/num_teachers": 3,
         SELECT_METRIC: 0.2},
        {"trial_id": "d", "config/beta": 0.25, "config/temperature": 1.0, "config/num_teachers": 4,
         SELECT_METRIC: math.nan},
    ])


def test_tied_rows_give_the_same_best_in_either_order():
    frame = _trials()
    forward = best_row(frame)
    backward = best_row(frame.iloc[::-1])
    shuffled = best_row(frame.sample(frac=1.0, random_state=3))
    assert forward["trial_id"] == backward["trial_id"] == shuffled["trial_id"] == "a"  # β 0.255 < β 0.275
    # Without the tie the metric decides, whatever the configuration.
    frame.loc[frame["trial_id"] == "b", SELECT_METRIC] = 0.25
    assert best_row(frame)["trial_id"] == best_row(frame.iloc[::-1])["trial_id"] == "b"


def test_config_key_is_canonical():
    one = pd.Series({"trial_id": "x", "config/temperature": 3.0, "config/beta": 0.5, "config/alpha": math.nan})
    other = pd.Series({"config/alpha": None, "config/beta": 0.5, "trial_id": "y", "config/temperature": 3.0})
    assert config_key(one) == config_key(other) == '{"config/alpha": null, "config/beta": 0.5, "config/temperature": 3.0}'


def test_same_configuration_ties_go_to_the_smaller_trial_id_and_missing_metrics_never_win():
    frame = pd.DataFrame([{"trial_id": "z", "config/beta": 0.5, SELECT_METRIC: 0.3},
                          {"trial_id": "y", "config/beta": 0.5, SELECT_METRIC: 0.3}])
    assert best_row(frame)["trial_id"] == best_row(frame.iloc[::-1])["trial_id"] == "y"
    assert best_row(frame.assign(**{SELECT_METRIC: math.nan})) is None
    assert best_row(frame.iloc[:0]) is None and best_row(frame.drop(columns=[SELECT_METRIC])) is None


def test_seed_rows_orders_the_best_trial_then_completed_replicates():
    from csrec.search.selection import seed_rows

    cell = pd.DataFrame({
        "trial_id": ["a", "b", "r2", "r1", "r3"], "config/beta": [0.25, 0.5, 0.5, 0.5, 0.5],
        "status": ["completed", "completed", "completed", "completed", "error"],
        "is_best": [False, True, False, False, False], "replicate": [None, None, 2, 1, 3],
        "test/recall@10": [0.1, 0.2, 0.3, 0.4, 0.5],
    })
    rows = seed_rows(cell)
    assert rows.index.tolist() == [0, 1, 2] and rows["trial_id"].tolist() == ["b", "r1", "r2"]
    assert seed_rows(cell[cell["replicate"].isna()]) is None
