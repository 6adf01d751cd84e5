"""The authors' protocol preset: each documented choice is set, and explicit keywords win."""

from __future__ import annotations

import pytest

from csrec.errors import ConfigError
from csrec.experiment import make_config
from csrec.experiment.protocol import PROTOCOLS, protocol_settings


def test_csrec_protocol_changes_nothing():
    assert make_config("synthetic", "gru4rec", "csrec-m") == make_config("synthetic", "gru4rec", "csrec-m", protocol="csrec")


@pytest.mark.parametrize(
    "backbone, method, epochs, weights",
    [
        ("gru4rec", "csrec-m", 80, (0.1, 0.9)),
        ("sasrec", "csrec-m", 50, (0.2, 0.8)),
        ("narm", "csrec-m", 100, (0.5, 0.5)),
        ("nextitnet", "csrec-d", 50, (0.5, 0.5)),
        ("gru4rec", "csrec-d", 80, (0.5, 0.5)),
        ("bert4rec", "csrec-t", 80, None),
        ("gru4rec", "base", 80, None),
    ],
)
def test_authors_preset_sets_each_documented_choice(backbone, method, epochs, weights):
    config = make_config("synthetic", backbone, method, protocol="authors")
    train, m = config.train, config.method
    assert (train.batch_unit, train.batch_size, train.lr, train.patience, train.epochs) == ("targets", 64, 1e-3, 0, epochs)
    assert (m.ensemble, m.noise_column_max, m.ensemble_weights) == ("probs", "running", weights)


def test_explicit_keywords_win_over_the_preset():
    config = make_config("synthetic", "gru4rec", "csrec-m", protocol="authors", lr=3e-3, epochs=5,
                         ensemble_weights=(0.5, 0.5))
    assert (config.train.lr, config.train.epochs, config.method.ensemble_weights) == (3e-3, 5, (0.5, 0.5))
    assert config.train.batch_unit == "targets"


def test_weights_only_for_the_authors_two_teacher_ensemble():
    assert make_config("synthetic", "gru4rec", "csrec-m", protocol="authors", num_teachers=3).method.ensemble_weights is None


def test_unknown_protocol_is_a_clear_error():
    assert PROTOCOLS == ("csrec", "authors")
    with pytest.raises(ConfigError, match="unknown protocol 'paper'; valid: csrec, authors"):
        protocol_settings("paper", "gru4rec", "base", 2)
