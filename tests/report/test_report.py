"""csrec.report: tables, figures and report.md from a hand-made sweep run directory (no Ray)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from csrec.data.dataset import SequenceData
from csrec.metrics import ndcg_at_k, recall_at_k
from csrec.report import (
    Run, group_tests, length_buckets, paired_ttest, popular_items, popular_test_users, report, significance_marks,
)

from fake_sweep import make_run

def _cli():
    from csrec.report import cli

    return cli


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the full report ----------------------------------------------------------------------------------
def test_every_table_and_figure_is_built(fake_report):
    out = fake_report.parent
    assert fake_report.name == "report.md" and out.name == "report"
    for name in ("table3", "table4", "table_true", "table5"):
        assert (out / f"{name}.md").stat().st_size > 100
        tex = (out / f"{name}.tex").read_text()
        assert "\\begin{tabular}" in tex and "\\bottomrule" in tex
    for png in ("fig1_4_popularity_synthetic.png", "fig3_item_popularity.png", "fig5_length_synthetic.png",
                "fig6_teachers_synthetic.png", "fig7_8_beta_T_synthetic_gru4rec.png",
                "fig7_8_beta_T_synthetic_sasrec.png", "fig9_ratio_synthetic.png"):
        assert _png_ok(out / png), png
    text = fake_report.read_text()
    assert "failed:" not in text
    for png in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert _png_ok(out / png), png
    # One sentence per drawn figure, right above its image.
    assert text.count("![") == 7
    assert "Test Recall@10 and NDCG@10 (%)" in text
    groups = pd.read_csv(out / "popularity_groups.csv")
    assert set(groups["group"]) == {"popular-type", "niche-type"}
    assert len(pd.read_csv(out / "length_buckets.csv"))
    info = json.loads((out / "report.json").read_text())
    assert {f["key"] for f in info["figures"]} >= {"fig1_4", "fig3", "fig5", "fig6", "fig7_8", "fig9", "fig10"}


def test_table3_values_bold_and_marks(fake_run, fake_report):
    out = fake_report.parent
    table = (out / "table3.md").read_text()
    with np.load(fake_run / "best" / "synthetic__gru4rec__csrec-m.npz") as best:
        recall = 100 * recall_at_k(best["test_ranks"], 10).mean()
    row = next(line for line in table.splitlines() if "| CSRec-M |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # CSRec-M has the largest rank shift: best in its column, significantly above Base and SoftRec.
    assert cells[2] == f"**{recall:.2f}**\\*†"
    base_row = next(line for line in table.splitlines() if "| Base |" in line)
    assert "\\*" not in base_row and "†" not in base_row and "**" not in base_row
    header = table.splitlines()[2]
    assert "GRU4Rec RC (%)" in header and "SASRec NG (%)" in header
    tex = (out / "table3.tex").read_text()
    assert "\\textbf{" in tex and "$^{*\\dagger}$" in tex and "\\multicolumn{2}{c}{GRU4Rec}" in tex
    sig = pd.read_csv(out / "significance.csv")
    entry = sig[(sig["table"] == "table3") & (sig["method"] == "csrec-m") & (sig["backbone"] == "gru4rec")
                & (sig["metric"] == "RC (%)")].iloc[0]
    assert entry["p_vs_base"] < 0.05 and entry["p_vs_softrec"] < 0.05
    assert entry["paired_over_vs_base"] == entry["paired_over_vs_softrec"] == "sequences"
    assert entry["pairs_vs_base"] == entry["pairs_vs_softrec"] > 0


def test_table4_pairs_only_positive_sequences(fake_run, fake_report):
    table = (fake_report.parent / "table4.md").read_text()
    with np.load(fake_run / "best" / "synthetic__sasrec__base.npz") as best:
        ranks, positive = best["test_ranks"], best["test_positive"]
    expected = 100 * ndcg_at_k(ranks[positive], 10).mean()
    row = [line for line in table.splitlines() if "| Base |" in line][0]
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
    assert cells[-1] == f"{expected:.2f}"
    assert "RC+ (%)" in table


def test_table4_negative_reads_the_poorly_rated_answers(fake_run, fake_report):
    table = (fake_report.parent / "table4_negative.md").read_text()
    with np.load(fake_run / "best" / "synthetic__sasrec__base.npz") as best:
        ranks, positive = best["test_ranks"], best["test_positive"]
    expected = 100 * ndcg_at_k(ranks[~positive], 10).mean()
    row = [line for line in table.splitlines() if "| Base |" in line][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == f"{expected:.2f}"  # no bold, no mark
    assert "RC− (%)" in table and "**" not in table.split("\n\n", 1)[1].split("RC− =")[0]
    assert "*" not in "".join(line for line in table.splitlines() if line.startswith("|  |"))


def test_table5_lists_teachers_next_to_base(fake_report):
    table = (fake_report.parent / "table5.md").read_text()
    assert "Base (student)" in table
    assert "CSRec-M teacher 1" in table and "CSRec-D teacher 1" in table
    assert "CSRec-T teacher g1 (robust" in table and "side teacher g2" in table
    assert "RC− | NG−" in table
    assert "\\begin{tabular}" in (fake_report.parent / "table5.tex").read_text()


def test_missing_dimension_is_skipped_with_the_sweep_that_would_produce_it(fake_report):
    text = fake_report.read_text()
    section = text[text.index("### Fig. 10"):]
    assert section.splitlines()[2].startswith("*Skipped*")
    assert ("`python sweeps/grid.py --datasets synthetic --backbones gru4rec,sasrec --ablation expectation --smoke "
            f"--storage-path {fake_report.parent.parent} --resume`") in section
    assert "Not included: it needs fits at several injected noise rates" in text


# --- skipped, never a crash ----------------------------------------------------------------------------
def test_a_run_without_csrec_or_data_skips_figures(tmp_path):
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base", "softrec"),
                       data_config={"name": "lastfm", "data_dir": str(tmp_path / "nowhere")}, n_test=50)
    path = report(run_dir)
    text = path.read_text()
    assert (path.parent / "table3.md").is_file()
    assert "## Teachers: Table 5\n\nSkipped: no teacher metrics found" in text
    for fig in ("Fig. 1/4", "Fig. 3", "Fig. 5", "Fig. 6", "Fig. 7/8", "Fig. 9", "Fig. 10"):
        section = text[text.index(f"### {fig}"):]
        assert section.splitlines()[2].startswith("*Skipped*"), fig
    assert "could not be loaded" in text and "--data-dir" in text
    assert "python sweeps/grid.py" in text
    assert "failed:" not in text
    assert not list(path.parent.glob("*.png"))


def test_a_broken_figure_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    import csrec.report.figures as figures

    def broken(run, out):
        raise RuntimeError("boom")

    monkeypatch.setattr(figures, "teacher_count_figures", broken)
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base",),
                       data_config={"name": "lastfm", "data_dir": str(tmp_path / "nowhere")}, n_test=40)
    assert _cli().main([str(run_dir), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "### Fig. 6 – number of teachers m\n\n*Skipped*: failed: RuntimeError: boom" in text
    assert "[report] wrote" in capsys.readouterr().out


def test_a_rerun_removes_what_the_previous_report_wrote_and_this_one_does_not(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base",),
                       data_config={"name": "lastfm", "data_dir": str(tmp_path / "nowhere")}, n_test=40)
    out = tmp_path / "out"
    report(run_dir, out_dir=out)
    listing = json.loads((out / "report.json").read_text())
    # as if an earlier report over a run with several m and with teachers had drawn Fig. 6 and Table 5
    listing["figures"].append({"key": "fig6", "file": "fig6_teachers_lastfm.png"})
    listing["tables"].append("table5")
    (out / "report.json").write_text(json.dumps(listing))
    for name in ("fig6_teachers_lastfm.png", "table5.md", "table5.tex", "notes.md", "fig9_mine.png"):
        (out / name).write_text("old")
    report(run_dir, out_dir=out, log=print)
    left = {p.name for p in out.iterdir()}
    assert not {"fig6_teachers_lastfm.png", "table5.md", "table5.tex"} & left
    assert {"notes.md", "fig9_mine.png", "table3.md", "report.md", "report.json"} <= left  # never listed: kept
    assert "[report] removed fig6_teachers_lastfm.png" in capsys.readouterr().out
    report(run_dir, out_dir=out)  # a third run finds nothing stale
    assert {p.name for p in out.iterdir()} == left


def test_mismatched_data_is_skipped(tmp_path):
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base",), n_test=17)
    text = report(run_dir).read_text()
    assert "has 17" not in text and "vectors have 17" in text


def test_extra_run_supplies_the_expectation_ablation_and_moved_runs_resolve(tmp_path):
    # A run of its own (the session's fake run stays untouched for the other tests), then moved:
    # the trial paths in its parquet point nowhere and must be found under the new location.
    original = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base", "csrec-t"))
    moved = tmp_path / "moved"
    original.rename(moved)
    extra = make_run(tmp_path / "noexp", backbones=("gru4rec",), methods=("csrec-t",), expectation_term=False, seed=1)
    run = Run.load(moved, extra_runs=[extra])
    assert run.teacher_infos("synthetic", "gru4rec", "csrec-t")
    flags = run.results[run.results["method"] == "csrec-t"]["param/expectation_term"]
    assert set(flags) == {True, False}
    from csrec.report.figures import expectation_figures

    (figure,) = expectation_figures(run, tmp_path / "figs")
    assert figure.file and _png_ok(tmp_path / "figs" / figure.file)


def test_not_a_run_directory(tmp_path, capsys):
    assert _cli().main([str(tmp_path)]) == 2
    assert "no results.parquet" in capsys.readouterr().err


def test_csrec_report_is_callable(fake_run):
    import csrec
    import csrec.report

    assert callable(csrec.report)
    assert csrec.report.report is report


# --- statistics -----------------------------------------------------------------------------------------
def test_paired_ttest_matches_scipy_and_hand_computation():
    from scipy import stats

    a = np.array([0.9, 0.4, 0.7, 0.1, 0.8, 0.6, 0.3, 0.5])
    b = np.array([0.5, 0.5, 0.2, 0.1, 0.6, 0.2, 0.1, 0.4])
    assert paired_ttest(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert paired_ttest(a, b) == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-10)
    rng = np.random.default_rng(3)
    x, y = rng.random(300), rng.random(300)
    assert paired_ttest(x, y) == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-12)
    assert math.isnan(paired_ttest(a, a))
    assert math.isnan(paired_ttest(a[:1], b[:1]))
    assert math.isnan(paired_ttest(a, b[:-1]))
    # Better on every sequence by the same amount: zero variance, infinite t, p = 0 (as scipy).
    assert paired_ttest(a + 0.1, a) == 0.0 and math.isnan(paired_ttest(a - a, a - a))


def test_significance_marks_need_higher_mean_and_p_below_005():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 30, 400)
    positive = rng.random(400) < 0.6

    def vec(ranks):
        return {"recall@10": recall_at_k(ranks, 10), "ndcg@10": ndcg_at_k(ranks, 10), "test_positive": positive}

    vectors = {"base": vec(base), "softrec": vec(np.maximum(base - 1, 0)), "csrec-m": vec(np.maximum(base - 9, 0)),
               "csrec-d": vec(base + 5)}
    marks = significance_marks(vectors, "ndcg@10")
    assert marks["csrec-m"]["mark"] == "*†"
    assert marks["csrec-d"]["mark"] == ""  # significantly *worse*: no mark
    assert marks["csrec-d"]["p_vs_base"] < 0.05
    assert "p_vs_softrec" not in marks["softrec"] and "base" not in marks
    plus = significance_marks(vectors, "ndcg@10", "test_positive")
    from scipy import stats

    expected = stats.ttest_rel(vectors["csrec-m"]["ndcg@10"][positive], vectors["base"]["ndcg@10"][positive]).pvalue
    assert plus["csrec-m"]["p_vs_base"] == pytest.approx(expected)


def _hand_made(counts: dict[int, int], n_items: int, test_items: list[int]) -> SequenceData:
    """One sequence per test item; training parts hold each item ``counts[item]`` times in total."""
    pool = [item for item, c in counts.items() for _ in range(c)]
    sequences = []
    for i, test in enumerate(test_items):
        train = pool[i::len(test_items)]
        sequences.append(train + [test, test])  # ... , valid, test
    items = np.concatenate([np.array(s, dtype=np.int64) for s in sequences])
    lengths = np.array([len(s) for s in sequences])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    data = SequenceData(name="hand", n_items=n_items, max_len=int(lengths.max()), items=items,
                        positive=np.ones(len(items), dtype=bool), offsets=offsets,
                        source_user=np.arange(len(sequences)), true_items=None, fingerprint="x", windowing="authors",
                        n_source_users=len(sequences))
    return data


def test_popularity_split_is_exactly_the_top_20_percent_by_training_frequency():
    # 10 items with training frequencies 10, 9, ..., 1 for items 3, 7, 1, ...: the top 2 are 3 and 7.
    order = [3, 7, 1, 9, 2, 5, 10, 4, 6, 8]
    counts = {item: 10 - rank for rank, item in enumerate(order)}
    data = _hand_made(counts, 10, test_items=[3, 7, 1, 8, 5])
    assert data.item_counts()[1:].tolist() == [counts[i] for i in range(1, 11)]
    mask = popular_items(data.item_counts())
    assert mask.tolist() == [False] + [i in (3, 7) for i in range(1, 11)]
    assert popular_test_users(data).tolist() == [True, True, False, False, False]
    # Ties at the boundary: the smaller id wins, so the split still has exactly 20% of the items.
    tied = np.array([0, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1])
    assert np.flatnonzero(popular_items(tied)).tolist() == [1, 2]
    assert popular_items(np.array([0] + [1] * 59)).sum() == 12  # round(0.2 * 59)
    assert popular_items(np.array([0, 4, 1])).sum() == 1  # never empty
    assert not popular_items(np.array([0, 4, 1]))[0]  # padding is never popular


def test_group_tests_mark_gains_and_losses_within_each_group():
    """Group 0: a above b by 1 ± noise (significant); group 1: below by 1 ± noise; group 2: differences
    +0.5, −0.5, … (mean 0, p = 1); group 3: identical values (p undefined): no mark for either."""
    rng = np.random.default_rng(0)
    b = rng.normal(size=40)
    groups = np.repeat([0, 1, 2, 3], 10)
    shift = np.select([groups == 0, groups == 1, groups == 2], [1.0 + rng.normal(scale=0.1, size=40),
                                                              -1.0 + rng.normal(scale=0.1, size=40),
                                                              np.tile([0.5, -0.5], 20)], 0.0)
    a = b + shift
    p_values, marks = group_tests(a, b, groups, 4)
    for g in range(3):
        keep = groups == g
        assert p_values[g] == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert p_values[0] < 0.05 and p_values[1] < 0.05 and p_values[2] == pytest.approx(1.0) and np.isnan(p_values[3])
    assert marks == ["*", "↓", "", ""]


def test_length_buckets_cover_every_sequence():
    lengths = np.array([2, 3, 3, 4, 5, 8, 9, 12, 19, 19, 19])
    index, labels = length_buckets(lengths, 4)
    assert len(labels) == index.max() + 1 and (index >= 0).all()
    assert labels[0].startswith("2") and labels[-1].endswith("19 items")
    for i, label in enumerate(labels):  # every length lies inside its bucket's label
        lo, _, hi = label.replace(" items", "").partition("–")
        hi = hi or lo
        chosen = lengths[index == i]
        assert chosen.min() >= int(lo) and chosen.max() <= int(hi)
    assert np.all(np.diff(index[np.argsort(lengths, kind="stable")]) >= 0)
    index, labels = length_buckets(np.array([7, 7, 7]))
    assert labels == ["7 items"] and index.tolist() == [0, 0, 0]


# --- robustness -------------------------------------------------------------------------------------------
def test_robustness_cli_runs_fits_and_plots(tmp_path, fake_run, capsys):
    out = tmp_path / "robust"
    argv = ["--robustness", str(out), "--noise", "0,0.3", "--epochs", "1",
            "--synthetic", "n_users=60", "--synthetic", "n_items=30", "--synthetic", "n_clusters=3",
            "--synthetic", "mean_length=10", "--set", "batch_size=256"]
    assert _cli().main(argv) == 0
    frame = pd.read_csv(out / "robustness.csv")
    assert len(frame) == 10 and set(frame["method"]) == {"base", "softrec", "csrec-m", "csrec-d", "csrec-t"}
    assert frame["true:recall@10"].between(0, 1).all() and frame["true:ndcg@10_se"].notna().all()
    assert _png_ok(out / "robustness.png")
    saved = json.loads((out / "runs" / "noise-0.3" / "gru4rec__csrec-t.json").read_text())
    assert saved["config"]["data"]["synthetic"]["noise_rate"] == 0.3
    with np.load(out / "runs" / "noise-0.3" / "gru4rec__csrec-t.npz") as arrays:
        assert "test_true_ranks" in arrays.files
    # Rerun: every fit is already saved, nothing trains again.
    lines = []
    from csrec.experiment import run_robustness

    run_robustness(out, (0.0, 0.3), 1, synthetic=dict(n_users=60, n_items=30, n_clusters=3, mean_length=10),
                   batch_size=256, log=lines.append)
    assert len(lines) == 10 and all("already done" in line for line in lines)
    # A report includes a robustness directory.
    assert _cli().main([str(fake_run), "--out", str(tmp_path / "rep"), "--robustness-dir", str(out)]) == 0
    path = tmp_path / "rep" / "report.md"
    text = path.read_text()
    assert "![robustness curve](robustness/robustness.png)" in text
    # The fixed, untuned settings of each method are stated (the CLI's defaults, one seed).
    assert "CSRec-T (β 0.5, T 3, p 0.8, α 0.5, seed 2022)" in text and "Base (seed 2022)" in text
    assert _png_ok(tmp_path / "rep" / "robustness" / "robustness.png")
    assert _cli().main(["--robustness", str(out), "--noise", "0,1.5"]) == 2
    # A --robustness-dir without a finished robustness run is an error naming the file.
    capsys.readouterr()
    assert _cli().main([str(fake_run), "--out", str(tmp_path / "rep2"), "--robustness-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'robustness.csv'} not found" in capsys.readouterr().err


def test_group_figures_values_match_a_hand_computation(fake_run, fake_report):
    """popularity_groups.csv and length_buckets.csv: each group's mean recomputed from the vectors."""
    from csrec.data import DataConfig, SyntheticConfig, load_dataset
    from fake_sweep import SMALL

    run = Run.load(fake_run)
    data = load_dataset(DataConfig(synthetic=SyntheticConfig(**SMALL)))
    popular = popular_test_users(data)
    history = data.source_history_lengths()
    index, labels = length_buckets(history, 4)
    groups = {"popularity_groups.csv": None, "length_buckets.csv": (index, labels)}
    checked = 0
    for name, grouping in groups.items():
        frame = pd.read_csv(fake_report.parent / name)
        assert len(frame)
        for _, row in frame.iterrows():
            vectors = run.best[(row["dataset"], row["backbone"], row["method"])]
            if grouping is None:
                keep = popular if row["group"].startswith("popular") else ~popular
            else:
                keep = grouping[0] == grouping[1].index(row["group"])
            assert row["sequences"] == int(keep.sum())
            base = run.best[(row["dataset"], row["backbone"], "base")]
            for metric in ("recall@10", "ndcg@10"):
                assert row[metric] == pytest.approx(vectors[metric][keep].mean())
                if row["method"] == "base":
                    assert pd.isna(row[f"p_vs_base_{metric}"])
                    continue
                # The mark against Base within the group: scipy's paired t-test over its sequences.
                a, b = vectors[metric][keep], base[metric][keep]
                want = stats.ttest_rel(a, b).pvalue if np.any(a != b) else np.nan
                assert row[f"p_vs_base_{metric}"] == pytest.approx(want, nan_ok=True)
                mark = row[f"vs_base_{metric}"] if isinstance(row[f"vs_base_{metric}"], str) else ""
                assert mark == ("" if not want < 0.05 else "*" if a.mean() > b.mean() else "↓")
                checked += 1
    assert checked > 0


def test_damaged_files_never_crash_the_report(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base", "softrec", "csrec-m"))
    # A truncated best-trial vector file: that cell's value falls back to the parquet, untested.
    best = run_dir / "best" / "synthetic__gru4rec__csrec-m.npz"
    best.write_bytes(best.read_bytes()[:100])
    for trial in run_dir.glob("synthetic-gru4rec-csrec-m-optuna/trial_*/ranks.npz"):
        trial.write_bytes(b"not a zip")
    robustness = tmp_path / "robustness"
    robustness.mkdir()
    (robustness / "robustness.csv").write_text("noise,method\n0.1,base\n")  # columns missing
    path = report(run_dir, robustness_dir=robustness)
    text = path.read_text()
    assert ("Not tested (no per-sequence test vectors of the best trial, so no mark either way): "
            "Synthetic / GRU4Rec / CSRec-M.") in text
    assert "*Failed* to read" in text and "robustness.csv" in text
    # An unreadable results.parquet is an error naming the file, not a pyarrow traceback.
    (run_dir / "results.parquet").write_bytes(b"PAR1 garbage")
    assert _cli().main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "results.parquet: unreadable" in err


def test_best_vectors_come_from_the_best_trial_not_a_stale_copy(tmp_path):
    run_dir = make_run(tmp_path / "run", backbones=("gru4rec",), methods=("base", "softrec"))
    copy = run_dir / "best" / "synthetic__gru4rec__softrec.npz"
    with np.load(copy) as arrays:
        stale = {k: arrays[k] for k in arrays.files}
    stale["test_ranks"] = np.full_like(stale["test_ranks"], 10_000)  # a copy from an earlier best trial
    np.savez_compressed(copy, **stale)
    run = Run.load(run_dir)
    row = run.best_row("synthetic", "gru4rec", "softrec")
    with np.load(Path(run.resolve_trial_path(row.get("trial_path"), row.get("run_dir"))) / "ranks.npz") as own:
        expected = recall_at_k(own["test_ranks"], 10)
    assert np.array_equal(run.best[("synthetic", "gru4rec", "softrec")]["recall@10"], expected)
    assert expected.any()  # the stale copy (every rank 10,000) would give all zeros


def test_heatmap_axis_shows_a_few_searched_values_as_themselves_and_bins_many():
    from csrec.report.figures import _axis

    # four Optuna points: each its own row, labelled with its value (no bin edge to fall across)
    values = [1.3998, 4.9925, 4.8959, 6.1796]
    index, labels = _axis(pd.Series(values), 6, 4)
    assert [labels[i] for i in index] == ["1.4", "4.99", "4.9", "6.18"]
    # the paper's grid keeps its plain labels; two values equal to 3 digits share a row
    assert _axis(pd.Series([0.25, 0.5, 0.75, 0.25]), 5, 3)[1] == ["0.25", "0.5", "0.75"]
    index, labels = _axis(pd.Series([0.25471, 0.25468, 0.5]), 5, 3)
    assert labels == ["0.255", "0.5"] and index.tolist() == [0, 0, 1]
    # many values: equal-width bins, each value inside the interval its label prints
    many = pd.Series(np.linspace(1.0, 9.0, 40))
    index, labels = _axis(many, 6, 4)
    assert labels[0] == "[1, 3)" and labels[-1] == "[7, 9]"
    bounds = [tuple(float(x) for x in label.strip("[])").split(", ")) for label in labels]
    for value, i in zip(many, index):
        lo, hi = bounds[i]
        assert lo <= value <= hi
