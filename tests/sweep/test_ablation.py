"""``sweeps/grid.py --ablation``: the controlled sweeps behind Fig. 6/7/8/9/10.

Unit tests of the ablation → grid mapping, labels, argument checks and the merge of outputs
across invocations (no Ray runtime), then one end-to-end run on tiny synthetic data: a main grid
cell, the teachers ablation added with --resume, and the expectation ablation added by running
the exact command the report's skip message names.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csrec.data import SyntheticConfig
from csrec.sweep.space import (
    ABLATION_DEFAULTS, ABLATIONS, PAPER_GRID, SUBSAMPLES, ablation_cell, ablation_experiment, check_grid, grid_product,
    parse_ablations,
)
from csrec.sweep.teachers import collect_teacher_specs
from csrec.sweep.trial import SweepContext
from csrec.sweep.tuner import _experiment_name, base_config, known_configs

REPO = Path(__file__).resolve().parents[2]
TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


def _grid():
    spec = importlib.util.spec_from_file_location("csrec_sweeps_grid_ablation", REPO / "sweeps" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the ablations themselves -----------------------------------------------------------------------
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
    names = {_experiment_name("lastfm", "gru4rec", m, s, None, None)
             for m in ("base", "softrec", "csrec-m", "csrec-d", "csrec-t") for s in ("optuna", "paper-grid")}
    ablation_names = {_experiment_name("lastfm", "gru4rec", m, "grid", a.grid(m), a.name)
                      for a in ABLATIONS.values() for m in a.methods}
    assert len(ablation_names) == 2 + 2 + 3 + 1 and not names & ablation_names
    # A plain explicit grid gets its own name per grid, never an ablation's.
    plain = {_experiment_name("lastfm", "gru4rec", "csrec-m", "grid", {"num_teachers": v}, None)
             for v in ([1, 2], [1, 2, 3])}
    assert len(plain) == 2 and not plain & (names | ablation_names)
    cells = _grid().ablation_cells(["lastfm"], ["gru4rec", "sasrec"], ["teachers", "ratio"], {"csrec-d"})
    assert cells == [("lastfm", "gru4rec", "csrec-d", "teachers"), ("lastfm", "gru4rec", "csrec-d", "ratio"),
                     ("lastfm", "sasrec", "csrec-d", "teachers"), ("lastfm", "sasrec", "csrec-d", "ratio")]


def test_ablation_teachers_come_from_one_shared_pool():
    """The teachers every ablation point needs: m = 3 reuses m = 2's, CSRec-T's side teacher is CSRec-D's first."""
    syn = SyntheticConfig(**TINY)

    def configs(name, method):
        ablation = ABLATIONS[name]
        kwargs = ablation.fixed(method)
        base = base_config("synthetic", "gru4rec", method, epochs=1, synthetic=syn, **kwargs)
        return known_configs(base, "grid", "auto", tuple(kwargs), ablation.grid(method))

    m = configs("teachers", "csrec-m")
    assert [c.method.num_teachers for c in m] == [1, 2, 3, 4]
    assert all((c.method.beta, c.method.temperature) == (0.5, 3.0) for c in m)
    assert len(collect_teacher_specs(m)) == 4  # not 1 + 2 + 3 + 4
    d = configs("teachers", "csrec-d")
    assert len(collect_teacher_specs(d)) == 4 and all(c.method.subsample == 0.8 for c in d)
    ratio_d, ratio_t = configs("ratio", "csrec-d"), configs("ratio", "csrec-t")
    assert [c.method.subsample for c in ratio_t] == list(SUBSAMPLES)
    # CSRec-D: 2 teachers per p; CSRec-T: a side teacher per p (CSRec-D's first) + a main teacher per p.
    assert len(collect_teacher_specs(ratio_d)) == 10 and len(collect_teacher_specs(ratio_t)) == 10
    assert len(collect_teacher_specs(ratio_d + ratio_t)) == 15
    assert len(collect_teacher_specs(d + ratio_d)) == 4 + 8  # p = 0.8's two are the teachers ablation's
    exp = configs("expectation", "csrec-t")
    assert [c.method.expectation_term for c in exp] == [True, False]
    assert len(collect_teacher_specs(exp)) == 3  # one side teacher, a main teacher with and one without
    temperature = configs("temperature", "csrec-t")
    assert len(temperature) == 36 and len(collect_teacher_specs(temperature)) == 1 + 3  # side + one main per α


def test_trial_config_takes_the_expectation_switch():
    base = base_config("synthetic", "gru4rec", "csrec-t", epochs=1, synthetic=SyntheticConfig(**TINY))
    ctx = SweepContext(base=base, pool_dir="", sweep="")
    assert ctx.config_for({"expectation_term": False}).method.expectation_term is False
    assert ctx.config_for({"beta": 0.25}).method.expectation_term is True


def test_grid_rejects_bad_ablation_arguments(tmp_path, capsys):
    main = _grid().main
    run = ["--smoke", "--storage-path", str(tmp_path / "run")]
    assert main(run + ["--ablation", "teacher"]) == 2
    assert "unknown ablation teacher" in capsys.readouterr().err
    assert main(run + ["--grace-period", "0"]) == 2
    assert "--grace-period must be at least 1 epoch, got 0" in capsys.readouterr().err
    assert main(run + ["--ablation", "expectation", "--methods", "csrec-m,csrec-d"]) == 2
    assert "the expectation ablation sweeps csrec-t" in capsys.readouterr().err
    assert main(run + ["--ablation", "teachers", "--set", "num_teachers=3"]) == 2
    assert "varies num_teachers: do not fix it with --set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_outputs_of_earlier_invocations_are_kept(tmp_path):
    """What an ablation-only rerun keeps of an earlier run: the main cells and the other ablations."""
    grid = _grid()
    rows = []
    for method, ablation, trials in (("base", None, 1), ("csrec-m", None, 2), ("csrec-m", "teachers", 4),
                                     ("csrec-t", "expectation", 2)):
        for i in range(trials):
            rows.append({"dataset": "synthetic", "backbone": "gru4rec", "method": method, "ablation": ablation,
                         "search": "grid" if ablation else "optuna", "trial_id": f"{method}{ablation}{i}",
                         "status": "completed", "error": None, "is_best": i == 0,
                         "config/expectation_term": (i == 0) if ablation == "expectation" else None,
                         "config/num_teachers": i + 1 if method == "csrec-m" else None,
                         "valid/best_ndcg@10": 0.1 * i, "trial_path": str(tmp_path / f"t{method}{ablation}{i}")})
    frame = grid._parquet_ready(pd.DataFrame(rows))
    assert frame["config/expectation_term"].dropna().map(type).eq(bool).all()
    frame.to_parquet(tmp_path / "results.parquet", index=False)
    summary = {"cells": [{"dataset": "synthetic", "backbone": "gru4rec", "method": m, "search": "optuna",
                          "trials_run": n, "trials_expected": n, "complete": True, "best_config": {}, "path": "p"}
                         for m, n in (("base", 1), ("csrec-m", 2))],
               "ablations": [{"dataset": "synthetic", "backbone": "gru4rec", "method": m, "ablation": a, "cell": a}
                             for m, a in (("csrec-m", "teachers"), ("csrec-t", "expectation"))]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    main, kept_rows, kept_cells = grid._previous_outputs(
        tmp_path, {("synthetic", "gru4rec", "base")}, {("synthetic", "gru4rec", "csrec-m", "teachers")})
    assert [(r.method, r.trials_run, len(r.trials)) for r in main] == [("csrec-m", 2, 2)]
    assert main[0].best_trial_path == str(tmp_path / "tcsrec-mNone0") and "ablation" not in main[0].trials
    assert kept_rows["ablation"].tolist() == ["expectation", "expectation"]
    assert [c["ablation"] for c in kept_cells] == ["expectation"]
    # A run written before ablations existed (no ``ablation`` column, no ``ablations`` list).
    frame[frame["ablation"].isna()].drop(columns=["ablation"]).to_parquet(tmp_path / "results.parquet", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"cells": summary["cells"]}))
    main, kept_rows, kept_cells = grid._previous_outputs(tmp_path, set(), set())
    assert sorted(r.method for r in main) == ["base", "csrec-m"] and not len(kept_rows) and kept_cells == []


# --- end to end on Ray ------------------------------------------------------------------------------
@pytest.mark.ray
def test_ablations_join_a_grid_run_and_feed_the_report(ray_session, tmp_path):
    from csrec.report import Run, report

    main = _grid().main
    run_dir = tmp_path / "run"
    common = ["--smoke", "--backbones", "gru4rec", "--storage-path", str(run_dir), "--verbose", "0"]
    assert main(common + ["--methods", "base"]) == 0
    argv = common + ["--ablation", "teachers", "--methods", "csrec-m", "--resume"]
    assert main(argv) == 0
    # The command recorded is the argv given to main(), not the test runner's sys.argv.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["argv"] == argv and summary["command"] == "python sweeps/grid.py " + shlex.join(argv)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["argv"] == argv and info["previous"][0]["argv"] == common + ["--methods", "base"]

    # The report names the command that adds Fig. 10's data; run exactly that.
    text = report(run_dir).read_text()
    section = text[text.index("### Fig. 10"):].split("###")[1]
    command = re.search(r"`(python sweeps/grid.py [^`]+)`", section).group(1)
    words = shlex.split(command)
    assert words[:2] == ["python", "sweeps/grid.py"] and "--ablation" in words and "expectation" in words
    assert main(words[2:] + ["--verbose", "0"]) == 0

    results = pd.read_parquet(run_dir / "results.parquet")
    counts = results.groupby([results["method"], results["ablation"].fillna("-")]).size().to_dict()
    assert counts == {("base", "-"): 1, ("csrec-m", "teachers"): 4, ("csrec-t", "expectation"): 2}
    assert set(results["status"]) == {"completed"}  # ablations run without ASHA: every point finishes
    teachers = results[results["ablation"] == "teachers"].sort_values("config/num_teachers")
    assert teachers["config/num_teachers"].tolist() == [1, 2, 3, 4] and (teachers["search"] == "grid").all()
    assert teachers["is_best"].sum() == 1
    assert sorted(results.loc[results["ablation"] == "expectation", "config/expectation_term"]) == [False, True]
    for method, ablation in (("csrec-m", "teachers"), ("csrec-t", "expectation")):
        exp = run_dir / f"synthetic-gru4rec-{method}-ablation-{ablation}"
        assert exp.is_dir() and all(Path(p).parent == exp for p in results.loc[results["ablation"] == ablation,
                                                                               "trial_path"])
    # The main grid's outputs are the base cell's alone.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [c["method"] for c in summary["cells"]] == ["base"]
    assert sorted(c["cell"] for c in summary["ablations"]) == [
        "synthetic__gru4rec__csrec-m__ablation-teachers", "synthetic__gru4rec__csrec-t__ablation-expectation"]
    assert all(c["complete"] for c in summary["ablations"])
    assert [p.name for p in (run_dir / "best").iterdir()] == ["synthetic__gru4rec__base.npz"]
    table = (run_dir / "table.md").read_text()
    assert "| gru4rec | base |" in table and "csrec" not in table
    # One shared teacher pool: CSRec-M's four seeds (m = 4 holds m = 1..3's) + CSRec-T's side and two mains.
    assert len(list((run_dir / "teachers").glob("teacher-*.pt"))) == 4 + 3
    assert results.loc[results["ablation"].notna(), "teachers_trained_here"].eq(0).all()

    # The report draws Fig. 6 and Fig. 10 from the ablations; the tables hold only the main grid's Base.
    path = report(run_dir)
    info = json.loads((path.parent / "report.json").read_text())
    figures = {f["key"]: f for f in info["figures"]}
    assert figures["fig6"]["file"] and "--ablation teachers" in figures["fig6"]["sentence"]
    assert figures["fig10"]["file"] and "--ablation expectation" in figures["fig10"]["sentence"]
    assert "--ablation ratio" in figures["fig9"]["skipped"]
    run = Run.load(run_dir)
    assert len(run.main) == 1 and run.ablations() == ["expectation", "teachers"]
    assert np.isfinite(run.ablation("teachers")["test/ndcg@10"].astype(float)).all()
