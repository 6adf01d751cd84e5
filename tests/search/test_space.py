"""The search space as data: the paper grid, the Optuna ranges and the ablations (no Ray)."""

from __future__ import annotations

import pytest

from csrec.search import (
    ABLATION_DEFAULTS, ABLATIONS, PAPER_GRID, SUBSAMPLES, GridConfig, SweepConfig, ablation_cell, ablation_experiment,
    check_grid, discrete_points, expected_trials, grid_points, grid_product, method_params, optuna_space,
    parse_ablations,
)


def test_paper_grid_is_exactly_the_papers():
    assert grid_points("base") == [{}]
    assert len(grid_points("softrec")) == 3 * 4  # β × T
    assert len(grid_points("csrec-m")) == 3 * 4  # β × T, m = 2
    assert len(grid_points("csrec-d")) == 3 * 4  # β × T, m = 2, p = 0.8
    assert len(grid_points("csrec-t")) == 3 * 3 * 4  # α × β × T, p = 0.8
    for point in grid_points("csrec-t"):
        assert point["alpha"] in PAPER_GRID["alpha"] and point["beta"] in PAPER_GRID["beta"]
        assert point["temperature"] in (1.0, 3.0, 6.0, 9.0) and point["subsample"] == 0.8
        assert "num_teachers" not in point
    assert {p["num_teachers"] for p in grid_points("csrec-m")} == {2}
    assert "alpha" not in grid_points("csrec-d")[0]
    # A parameter given a value leaves the space.
    assert len(grid_points("softrec", fixed=("temperature",))) == 3
    assert expected_trials("softrec", "paper-grid", 99, fixed=("temperature",)) == 3
    assert expected_trials("base", "optuna", 12) == 1
    assert expected_trials("csrec-m", "optuna", 12) == 12


def test_optuna_space_is_conditional_per_method():
    optuna = pytest.importorskip("optuna")
    expected = {
        "softrec": {"beta", "temperature"},
        "csrec-m": {"beta", "temperature", "num_teachers"},
        "csrec-d": {"beta", "temperature", "num_teachers", "subsample"},
        "csrec-t": {"beta", "temperature", "subsample", "alpha"},
    }
    for method, names in expected.items():
        assert set(method_params(method)) == names
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            optuna_space(method)(trial)
            params = trial.params
            assert set(params) == names
            assert 0.25 <= params["beta"] <= 0.75 and 1.0 <= params["temperature"] <= 9.0
            if "num_teachers" in params:
                assert params["num_teachers"] in (1, 2, 3, 4)
            if "subsample" in params:
                assert params["subsample"] in SUBSAMPLES
            if "alpha" in params:
                assert 0.25 <= params["alpha"] <= 0.75
            study.tell(trial, 0.0)
    # The space pickles (OptunaSearch saves it with its state for Tuner.restore).
    import pickle

    assert pickle.loads(pickle.dumps(optuna_space("csrec-d"))).names == optuna_space("csrec-d").names
    assert len(discrete_points("csrec-d")) == 4 * 5 and len(discrete_points("csrec-m")) == 4


def test_each_ablation_is_the_papers_controlled_sweep():
    teachers, ratio, temperature, expectation = (ABLATIONS[n] for n in ("teachers", "ratio", "temperature",
                                                                         "expectation"))
    assert list(ABLATIONS) == ["teachers", "ratio", "temperature", "expectation"]
    # Fig. 6: m ∈ {1, 2, 3, 4} for CSRec-M and CSRec-D, β 0.5, T 3 (and p 0.8 for CSRec-D).
    assert teachers.methods == ("csrec-m", "csrec-d")
    assert teachers.grid("csrec-m") == teachers.grid("csrec-d") == {"num_teachers": [1, 2, 3, 4]}
    assert teachers.fixed("csrec-m") == {"beta": 0.5, "temperature": 3.0}
    assert teachers.fixed("csrec-d") == {"beta": 0.5, "temperature": 3.0, "subsample": 0.8}
    # Fig. 9: p ∈ {0.5, …, 0.9} for CSRec-D and CSRec-T.
    assert ratio.methods == ("csrec-d", "csrec-t")
    assert ratio.grid("csrec-d") == {"subsample": [0.5, 0.6, 0.7, 0.8, 0.9]} == {"subsample": list(SUBSAMPLES)}
    assert ratio.fixed("csrec-d") == {"beta": 0.5, "temperature": 3.0, "num_teachers": 2}
    assert ratio.fixed("csrec-t") == {"beta": 0.5, "temperature": 3.0, "alpha": 0.5, "expectation_term": True}
    # Fig. 7/8: β × T for CSRec-M/D; × α for CSRec-T.
    assert temperature.grid("csrec-m") == {"beta": [0.25, 0.5, 0.75], "temperature": [1.0, 3.0, 6.0, 9.0]}
    assert temperature.grid("csrec-t") == {"alpha": [0.25, 0.5, 0.75], "beta": [0.25, 0.5, 0.75],
                                           "temperature": [1.0, 3.0, 6.0, 9.0]}
    assert temperature.fixed("csrec-d") == {"num_teachers": 2, "subsample": 0.8}
    assert temperature.fixed("csrec-t") == {"subsample": 0.8, "expectation_term": True}
    # Fig. 10: the expectation term on and off, everything else at the defaults.
    assert expectation.methods == ("csrec-t",)
    assert expectation.grid("csrec-t") == {"expectation_term": [True, False]}
    assert expectation.fixed("csrec-t") == {"beta": 0.5, "temperature": 3.0, "subsample": 0.8, "alpha": 0.5}
    # Trials per backbone.
    per_backbone = {a.name: sum(a.trials(m) for m in a.methods) for a in ABLATIONS.values()}
    assert per_backbone == {"teachers": 8, "ratio": 10, "temperature": 12 + 12 + 36, "expectation": 2}
    with pytest.raises(KeyError, match="teachers ablation has no csrec-t"):
        teachers.grid("csrec-t")
    assert ABLATION_DEFAULTS["subsample"] == PAPER_GRID["subsample"][0]


def test_the_report_describes_the_same_ablations():
    from csrec.report.figures import ABLATION_SWEEPS

    assert set(ABLATION_SWEEPS) == set(ABLATIONS)
    for name, ablation in ABLATIONS.items():
        trials = sum(ablation.trials(m) for m in ablation.methods)
        assert f"{trials} trials per backbone" in ABLATION_SWEEPS[name]


def test_parse_ablations_and_grid_checks():
    assert parse_ablations("teachers") == ["teachers"]
    assert parse_ablations(" Ratio , teachers,ratio ") == ["ratio", "teachers"]
    assert parse_ablations("all") == list(ABLATIONS)
    assert parse_ablations(None) == [] and parse_ablations("") == []
    with pytest.raises(ValueError, match="unknown ablation temprature; valid: all, teachers"):
        parse_ablations("teachers,temprature")
    assert grid_product({"a": [1, 2], "b": [3, 4, 5]}) == [
        {"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 1, "b": 5}, {"a": 2, "b": 3}, {"a": 2, "b": 4}, {"a": 2, "b": 5}]
    assert grid_product(None) == [{}]
    assert check_grid({"num_teachers": (1, 2)}) == {"num_teachers": [1, 2]}
    assert check_grid({"expectation_term": False}) == {"expectation_term": [False]}
    with pytest.raises(ValueError, match="not a method parameter"):
        check_grid({"lr": [1e-3]})
    with pytest.raises(ValueError, match="both fixed"):
        check_grid({"beta": [0.5]}, fixed=("beta",))
    with pytest.raises(ValueError, match="no value"):
        check_grid({"beta": []})
    with pytest.raises(ValueError, match="repeats"):
        check_grid({"beta": [0.5, 0.5]})


def test_ablation_labels_never_collide_with_the_main_grid():
    assert ablation_experiment("lastfm", "gru4rec", "csrec-m", "teachers") == "lastfm-gru4rec-csrec-m-ablation-teachers"
    assert ablation_cell("lastfm", "gru4rec", "csrec-m", "teachers") == "lastfm__gru4rec__csrec-m__ablation-teachers"
    names = {SweepConfig("lastfm", "gru4rec", m, s).experiment_name
             for m in ("base", "softrec", "csrec-m", "csrec-d", "csrec-t") for s in ("optuna", "paper-grid")}
    ablation_names = {SweepConfig("lastfm", "gru4rec", m, grid=a.grid(m), ablation=a.name).experiment_name
                      for a in ABLATIONS.values() for m in a.methods}
    assert len(ablation_names) == 2 + 2 + 3 + 1 and not names & ablation_names
    # A plain explicit grid gets its own name per grid, never an ablation's.
    plain = {SweepConfig("lastfm", "gru4rec", "csrec-m", grid={"num_teachers": v}).experiment_name
             for v in ([1, 2], [1, 2, 3])}
    assert len(plain) == 2 and not plain & (names | ablation_names)
    config = GridConfig(datasets=("lastfm",), backbones=("gru4rec", "sasrec"), methods=("csrec-d",),
                        ablations=("teachers", "ratio"))
    cells = [(c.dataset, c.backbone, c.method, c.ablation) for c in config.cells()]
    assert cells == [("lastfm", "gru4rec", "csrec-d", "teachers"), ("lastfm", "gru4rec", "csrec-d", "ratio"),
                     ("lastfm", "sasrec", "csrec-d", "teachers"), ("lastfm", "sasrec", "csrec-d", "ratio")]


def test_ablation_defaults_are_the_method_configs():
    from csrec.methods import MethodConfig

    defaults = MethodConfig()
    assert ABLATION_DEFAULTS == {name: getattr(defaults, name) for name in ABLATION_DEFAULTS}
