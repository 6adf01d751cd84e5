"""The report's tables and paragraphs computed from per-seed test values (csrec.report.tables)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from csrec.report.tables import seed_noise_paragraph


def test_seed_noise_paragraph_pairs_by_seed_and_marks_only_gains_beyond_noise():
    """Hand-computed: per-seed differences, their mean ± std in points, the paired t-test's p
    (t = mean / (std / √n) with n − 1 degrees of freedom), and the p < 0.05 rule of the marks."""
    per_seed = {
        "base": {"recall@10": np.array([0.160, 0.170, 0.165])},
        "softrec": {"recall@10": np.array([0.170, 0.172, 0.180])},   # +1.0, +0.2, +1.5 points
        "csrec-m": {"recall@10": np.array([0.181, 0.190, 0.186])},   # +2.1, +2.0, +2.1 over Base
        "csrec-d": {"recall@10": np.array([0.150, 0.180, 0.170, 0.2])},  # a 4th seed is cut off
    }
    text = seed_noise_paragraph("lastfm", "gru4rec", per_seed)
    diff = 100 * (per_seed["csrec-m"]["recall@10"] - per_seed["base"]["recall@10"])
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(3))
    p = 2 * stats.t.sf(abs(t), df=2)
    assert p < 0.05
    assert f"CSRec-M {diff.mean():+.2f} ± {diff.std(ddof=1):.2f} (p = {p:.2g})" in text
    soft = 100 * (per_seed["softrec"]["recall@10"] - per_seed["base"]["recall@10"])
    assert f"over Base, SoftRec {soft.mean():+.2f} ± {soft.std(ddof=1):.2f}" in text
    assert text.startswith("**GRU4Rec on Last.FM, 3 seeds.**")
    # Over SoftRec CSRec-M gains (+1.1, +1.8, +0.6): a higher mean, but p = 0.079.
    assert "over SoftRec, CSRec-M +1.17 ± 0.60 (p = 0.079)" in text
    assert text.endswith("Beyond seed noise (p < 0.05, higher mean): CSRec-M over Base.")
    assert "CSRec-D +0.17 ± 1.04 (p = " in text  # (−1.0, +1.0, +0.5) over Base from the 3 common seeds
    # A method still short of seeds is compared over the seeds it has, and says how many; the
    # others keep all of theirs.
    short = dict(per_seed, **{"csrec-d": {"recall@10": np.array([0.150, 0.180])}})
    text = seed_noise_paragraph("lastfm", "gru4rec", short)
    assert "CSRec-D +0.00 ± 1.41 (p = 1, 2 seeds)" in text
    assert f"CSRec-M {diff.mean():+.2f} ± {diff.std(ddof=1):.2f} (p = {p:.2g})" in text
    # One seed, or no method beside Base: nothing to say.
    assert seed_noise_paragraph("lastfm", "gru4rec", {m: {"recall@10": v["recall@10"][:1]} for m, v in per_seed.items()}) is None
    assert seed_noise_paragraph("lastfm", "gru4rec", {"base": per_seed["base"]}) is None


def test_marks_across_seeds_pair_each_method_over_the_seeds_both_have():
    """A method still short of seeds neither loses its marks nor shortens the others' tests; one
    with a single seed is tested over the test sequences instead, and says so."""
    from csrec.report.stats import across_seed_vectors, significance_marks

    per_seed = {"base": [0.160, 0.170, 0.165], "csrec-m": [0.181, 0.190, 0.186], "csrec-d": [0.190, 0.200],
                "csrec-t": [0.2]}
    marks = significance_marks({}, "recall@10", seeds=per_seed)
    assert marks["csrec-m"]["p_vs_base"] == stats.ttest_rel([0.181, 0.190, 0.186], [0.160, 0.170, 0.165]).pvalue
    assert marks["csrec-d"]["p_vs_base"] == 0.0  # (+3.0, +3.0) over the first 2 seeds: zero spread → p 0
    assert marks["csrec-m"]["mark"] == marks["csrec-d"]["mark"] == "*"
    assert marks["csrec-m"]["paired_over_vs_base"] == "seeds" and marks["csrec-m"]["pairs_vs_base"] == 3
    assert "csrec-t" not in marks  # one seed and no per-sequence vectors: no test at all
    assert across_seed_vectors({"base": {"r": per_seed["base"]}, "csrec-t": {"r": per_seed["csrec-t"]}}) is None

    # With the best trials' per-sequence vectors, the one-seed method is tested over the sequences.
    rng = np.random.default_rng(0)
    base = rng.random(300)
    sequences = {"base": {"recall@10": base}, "csrec-m": {"recall@10": base + 0.01},
                 "csrec-t": {"recall@10": base + 0.05 + rng.normal(0, 0.01, 300)}}
    mixed = significance_marks(sequences, "recall@10", seeds=per_seed)
    assert mixed["csrec-t"]["paired_over_vs_base"] == "sequences" and mixed["csrec-t"]["pairs_vs_base"] == 300
    assert mixed["csrec-t"]["p_vs_base"] == stats.ttest_rel(sequences["csrec-t"]["recall@10"], base).pvalue
    assert mixed["csrec-t"]["mark"] == "*"
    assert mixed["csrec-m"] == marks["csrec-m"]  # two shared seeds or more: the seeds decide


def test_seeds_pair_by_seed_index_across_gaps_and_base_short_of_seeds():
    """A seed that has not finished (NaN at its index) leaves a gap: the others pair by index, not
    by position; the header counts Base's seeds only when Base has several."""
    from csrec.report.stats import significance_marks

    nan = float("nan")
    per_seed = {"base": {"recall@10": np.array([0.160, nan, 0.165])},      # seed 1 not finished
                "csrec-m": {"recall@10": np.array([0.181, 0.150, 0.190])}}
    marks = significance_marks({}, "recall@10", seeds={m: v["recall@10"] for m, v in per_seed.items()})
    p = stats.ttest_rel([0.181, 0.190], [0.160, 0.165]).pvalue
    assert marks["csrec-m"]["p_vs_base"] == pytest.approx(p) and marks["csrec-m"]["pairs_vs_base"] == 2
    text = seed_noise_paragraph("lastfm", "gru4rec", per_seed)
    assert f"CSRec-M +2.30 ± 0.28 (p = {p:.2g})" in text and text.startswith("**GRU4Rec on Last.FM, 2 seeds.**")
    alone = {"base": {"recall@10": np.array([0.160])}, "softrec": {"recall@10": np.array([0.17, 0.18, 0.19])},
             "csrec-m": {"recall@10": np.array([0.18, 0.19, 0.20])}}
    assert seed_noise_paragraph("lastfm", "gru4rec", alone).startswith("**GRU4Rec on Last.FM, 3 seeds.**")


def test_seed_values_put_each_run_at_its_seed_index():
    """A replicate that has not finished leaves NaN at its index (csrec.report.outputs.seed_values)."""
    import pandas as pd

    from csrec.report.outputs import seed_values

    rows = pd.DataFrame({"method": ["base"] * 4, "replicate": [None, 1, 2, 3],
                         "status": ["completed", "completed", "error", "completed"], "is_best": [True, False, False, False],
                         "test/recall@10": [0.1, 0.2, None, 0.4]})
    values = seed_values(rows, {"recall@10": "test/recall@10"})["base"]["recall@10"]
    assert values[[0, 1, 3]].tolist() == [0.1, 0.2, 0.4] and np.isnan(values[2])


def test_single_seed_backbones_are_read_against_the_pooled_seed_std():
    """Hand-computed: σ pooled over the seeded cells (variances weighted by degrees of freedom), the
    2√2σ threshold for a difference of two single runs, gains in points over Base and SoftRec."""
    from csrec.report.tables import pooled_seed_std, single_seed_paragraph

    cells = [np.array([0.160, 0.170, 0.165]), np.array([0.180, 0.186, np.nan]), np.array([0.2])]
    sigma, count = pooled_seed_std(cells)
    # variances 2.5e-5 (2 df) and 1.8e-5 (1 df); the one-seed cell has none
    assert count == 2 and sigma == pytest.approx(np.sqrt((2 * 2.5e-5 + 1 * 1.8e-5) / 3))
    assert pooled_seed_std([np.array([0.2]), np.array([np.nan, 0.1])]) is None

    values = {"nextitnet": {"base": 0.1582, "softrec": 0.1614, "csrec-d": 0.1800},
              "narm": {"base": 0.170}}
    text = single_seed_paragraph("lastfm", values, (0.005, 4))
    assert text.startswith("**One seed: NextItNet, NARM on Last.FM.**")
    assert "NextItNet: SoftRec +0.32, CSRec-D +2.18 / +1.86" in text  # SoftRec has no "over SoftRec"
    assert "σ = 0.50 points" in text and "√2σ = 0.71" in text and "2√2σ = 1.41 points" in text
    assert text.endswith("points: NextItNet CSRec-D over Base, NextItNet CSRec-D over SoftRec.")
    assert single_seed_paragraph("lastfm", values, (0.01, 4)).endswith("points: none.")  # threshold 2.83
    assert single_seed_paragraph("lastfm", {"narm": {"base": 0.17}}, (0.005, 4)) is None
