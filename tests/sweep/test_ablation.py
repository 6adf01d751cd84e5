"""``sweeps/grid.py --ablation``: the controlled sweeps behind Fig. 6/7/8/9/10.

The teachers an ablation needs (no Ray runtime; the grids themselves are tested in
``tests/search``), then one end-to-end run on tiny synthetic data: a main grid cell, the teachers
ablation added with --resume, and the expectation ablation added by running the exact command
the report's skip message names.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csrec.data import SyntheticConfig
from csrec.search import ABLATIONS, SUBSAMPLES
from csrec.sweep.teachers import collect_teacher_specs
from csrec.sweep.trial import SweepContext
from csrec.sweep.tuner import base_config, known_configs

TINY = dict(n_users=120, n_items=60, n_clusters=6, mean_length=14)


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


# --- end to end on Ray ------------------------------------------------------------------------------
@pytest.mark.ray
def test_ablations_join_a_grid_run_and_feed_the_report(ray_session, tmp_path, grid_main):
    from csrec.report import Run, report

    main = grid_main
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
    assert sorted(p.name for p in (run_dir / "best").iterdir()) == [  # the main cell's best trial only
        "synthetic__gru4rec__base.model.pt", "synthetic__gru4rec__base.npz", "synthetic__gru4rec__base.trial.json"]
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


def test_an_optuna_cell_prebuilds_its_teachers_only_when_fixed_parameters_decide_them():
    """m and p fixed (α too for CSRec-T): every trial needs the same teachers, so the cell trains
    them up front, concurrently; a grid run leaves them to the cell (``shared_set=False``)."""
    syn = SyntheticConfig(**TINY)

    def known(method, shared_set=True, **fixed):
        base = base_config("synthetic", "gru4rec", method, epochs=1, synthetic=syn, **fixed)
        return known_configs(base, "optuna", "auto", tuple(fixed), None, shared_set=shared_set)

    d = known("csrec-d", num_teachers=2, subsample=0.8)
    assert len(d) == 1 and len(collect_teacher_specs(d)) == 2
    assert known("csrec-d", num_teachers=2) == []  # p searched: the trials' teachers differ
    assert known("csrec-d", shared_set=False, num_teachers=2, subsample=0.8) == []
    assert known("csrec-t", num_teachers=2, subsample=0.8) == []  # the main teacher follows the searched α
    t = known("csrec-t", num_teachers=2, subsample=0.8, alpha=0.5)
    assert len(collect_teacher_specs(t)) == 2 and t[0].method.alpha == 0.5  # side, then main
    assert len(known("base")) == 1 and collect_teacher_specs(known("base")) == []
