"""The report reads ``sweeps/grid.py --ablation`` trials for Fig. 6/7/8/9/10 and never for the tables (no Ray)."""

from __future__ import annotations

import json
import re
import shlex

import pandas as pd
import pytest

from csrec.report import Run, report
from csrec.report.figures import (
    ABLATION_SWEEPS, _sweep_lines, expectation_figures, heatmap_figures, ratio_figures, teacher_count_figures,
)

from fake_sweep import add_ablation, make_run

TEACHERS = [{"num_teachers": m} for m in (1, 2, 3, 4)]
BETA_T = [{"beta": b, "temperature": t} for b in (0.25, 0.5, 0.75) for t in (1.0, 3.0, 6.0, 9.0)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a run without ablations and its report dir, the same run with three ablations added and its report dir)."""
    root = tmp_path_factory.mktemp("ablation")
    plain = make_run(root / "plain", backbones=("gru4rec",))
    plain_report = report(plain).parent
    run = make_run(root / "run", backbones=("gru4rec",))
    add_ablation(run, "teachers", "gru4rec", "csrec-m", TEACHERS, seed=1)
    add_ablation(run, "teachers", "gru4rec", "csrec-d", TEACHERS, seed=2)
    add_ablation(run, "temperature", "gru4rec", "csrec-m", BETA_T, seed=3)
    add_ablation(run, "expectation", "gru4rec", "csrec-t", [{"expectation_term": True}, {"expectation_term": False}],
                 seed=4)
    return plain, plain_report, run, report(run).parent


def _figure(report_dir, key):
    info = json.loads((report_dir / "report.json").read_text())
    (figure,) = [f for f in info["figures"] if f["key"] == key]
    return figure


def test_ablation_trials_are_labelled_and_kept_out_of_the_main_grid(runs):
    plain, _, run_dir, _ = runs
    run = Run.load(run_dir)
    assert run.ablations() == ["expectation", "teachers", "temperature"]
    assert len(run.ablation("teachers")) == 8 and len(run.ablation("temperature")) == 12
    assert len(run.main) == len(Run.load(plain).main) and run.main["ablation"].isna().all()
    # The ablation trials have the best validation scores of their (dataset, backbone, method), yet
    # the cell's best trial is still the main grid's.
    best = run.best_row("synthetic", "gru4rec", "csrec-m")
    assert pd.isna(best["ablation"]) and best["trial_id"] == Run.load(plain).best_row("synthetic", "gru4rec",
                                                                                     "csrec-m")["trial_id"]
    # Parameters fixed by the ablation (not config/* columns) are read from trial_result.json.
    teachers = run.ablation("teachers")
    assert set(teachers["param/beta"]) == {0.5} and set(teachers["param/temperature"]) == {3.0}
    assert sorted(teachers[teachers["method"] == "csrec-d"]["param/num_teachers"]) == [1, 2, 3, 4]


def test_tables_do_not_change_when_ablations_are_added(runs):
    _, plain_report, _, run_report = runs
    for name in ("table3.md", "table4.md", "table5.md", "table_true.md"):
        assert (run_report / name).read_text() == (plain_report / name).read_text(), name


def test_fig6_reads_only_the_teachers_ablation(runs):
    _, _, run_dir, run_report = runs
    run = Run.load(run_dir)
    lines = _sweep_lines(run, "synthetic", ("csrec-m", "csrec-d"), "num_teachers", "teachers")
    assert [(b, m, n, src) for b, m, _, n, src in lines] == [("gru4rec", "csrec-m", 4, "ablation"),
                                                             ("gru4rec", "csrec-d", 4, "ablation")]
    for _, method, best, _, _ in lines:
        assert best["_value"].tolist() == [1, 2, 3, 4]
        assert (best["ablation"] == "teachers").all()
        expected = run.ablation("teachers")
        expected = expected[expected["method"] == method].sort_values("param/num_teachers")
        assert best["test/ndcg@10"].tolist() == expected["test/ndcg@10"].tolist()
    # Without the ablation the main grid's searched trials (m ∈ {1, 2, 3}) are the fallback.
    plain_lines = _sweep_lines(run, "synthetic", ("csrec-m",), "num_teachers", "ratio")
    assert plain_lines[0][3] == 4 and plain_lines[0][4] == "grid"
    assert sorted(plain_lines[0][2]["_value"]) == [1, 2, 3]
    figure = _figure(run_report, "fig6")
    assert figure["file"] == "fig6_teachers_synthetic.png" and (run_report / figure["file"]).is_file()
    assert "controlled `--ablation teachers` sweep (β 0.5, T 3, p 0.8)" in figure["sentence"]


def test_fig7_8_fig9_fig10_name_their_source(runs, tmp_path):
    _, _, run_dir, run_report = runs
    run = Run.load(run_dir)
    (heat,) = heatmap_figures(run, tmp_path)
    assert heat.file
    assert "Series marked “ablation” come from the controlled `--ablation temperature`" in heat.sentence
    (ratio,) = ratio_figures(run, tmp_path)
    assert ratio.file and "the controlled `--ablation ratio` sweep holds them fixed" in ratio.sentence
    # Fig. 9's CSRec-T series: the main grid's 8 trials, not the expectation ablation's (p = 0.8 as well).
    lines = _sweep_lines(run, "synthetic", ("csrec-d", "csrec-t"), "subsample", "ratio")
    assert {m: n for _, m, _, n, _ in lines} == {"csrec-d": 4, "csrec-t": 8}
    (expectation,) = expectation_figures(run, tmp_path)
    assert expectation.file and "controlled `--ablation expectation` sweep" in expectation.sentence
    text = (run_report / "report.md").read_text()
    assert "Ablation sweeps (`sweeps/grid.py --ablation`)" in text and "`teachers` (8 trials)" in text
    assert json.loads((run_report / "report.json").read_text())["ablations"] == {
        "expectation": 2, "teachers": 8, "temperature": 12}


def test_skipped_figures_name_the_exact_ablation_command(tmp_path):
    run_dir = make_run(tmp_path / "my run", backbones=("gru4rec", "sasrec"), methods=("base", "softrec"))
    argv = ["--datasets", "synthetic", "--data-dir", "/data dir", "--epochs", "30", "--set", "num_teachers=2",
            "--set", "max_len=20", "--storage-path", str(run_dir), "--search", "paper-grid"]
    (run_dir / "run.json").write_text(json.dumps({"argv": argv}))
    run = Run.load(run_dir)
    tail = f"--data-dir '/data dir' --epochs 30 --set max_len=20 --storage-path {shlex.quote(str(run_dir))} --resume"
    expected = {
        "teachers": (teacher_count_figures, "gru4rec,sasrec"), "ratio": (ratio_figures, "gru4rec,sasrec"),
        "expectation": (expectation_figures, "gru4rec,sasrec"),
    }
    for name, (build, backbones) in expected.items():
        (figure,) = build(run, tmp_path / "figs")
        assert figure.file is None
        command = re.search(r"`(python sweeps/grid.py [^`]+)`", figure.skipped).group(1)
        assert command == f"python sweeps/grid.py --datasets synthetic --backbones {backbones} --ablation {name} {tail}"
        assert ABLATION_SWEEPS[name] in figure.skipped
        # The command parses back to the intended argv (quoting survives).
        words = shlex.split(command)
        assert words[words.index("--data-dir") + 1] == "/data dir" and "num_teachers=2" not in words
    heat = heatmap_figures(run, tmp_path / "figs")
    assert [f.skipped.count("--ablation temperature") for f in heat] == [1, 1]
    assert "--backbones sasrec --ablation temperature" in heat[1].skipped


def test_a_run_of_ablations_only_still_draws_its_figures(tmp_path):
    """``grid.py --ablation teachers`` on a fresh directory: no main trial, yet Fig. 6 is drawn."""
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base",))
    add_ablation(run_dir, "teachers", "gru4rec", "csrec-m", TEACHERS)
    frame = pd.read_parquet(run_dir / "results.parquet")
    frame[frame["ablation"].notna()].to_parquet(run_dir / "results.parquet", index=False)
    run = Run.load(run_dir)
    assert len(run.main) == 0 and run.sweep_datasets() == ["synthetic"]
    (figure,) = teacher_count_figures(run, tmp_path / "figs")
    assert figure.file and (tmp_path / "figs" / figure.file).is_file()
