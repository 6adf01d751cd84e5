"""What a sweep invocation writes into its run directory (results.parquet, best/, table.md,
summary.json), and how it keeps the cells of earlier invocations.  No Ray: the cells are stand-ins
for :class:`csrec.sweep.SweepResult`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from csrec.metrics import ndcg_at_k, recall_at_k
from csrec.report.outputs import _parquet_ready, run_table, significance, write_run_outputs
from csrec.report.stats import paired_ttest


@dataclass
class Cell:
    """The part of a SweepResult that the outputs read."""

    dataset: str
    backbone: str
    method: str
    ablation: str | None
    trials: pd.DataFrame
    best_trial_path: str | None

    def record(self) -> dict:
        return {"dataset": self.dataset, "backbone": self.backbone, "method": self.method, "ablation": self.ablation,
                "cell": f"new-{self.ablation}", "trials_run": len(self.trials)}


def _rows(tmp_path, method, ablation, trials, first=0):
    return [{"dataset": "synthetic", "backbone": "gru4rec", "method": method, "ablation": ablation,
             "search": "grid" if ablation else "optuna", "trial_id": f"{method}{ablation}{i}", "status": "completed",
             "error": None, "is_best": i == 0, "config/expectation_term": (i == 0) if ablation == "expectation" else None,
             "config/num_teachers": i + 1 if method == "csrec-m" else None, "valid/best_ndcg@10": 0.1 * i,
             "trial_path": str(tmp_path / f"t{method}{ablation}{i}")} for i in range(first, first + trials)]


def test_outputs_of_earlier_invocations_are_kept(tmp_path):
    """An ablation-only rerun keeps the main cells and the other ablations of the earlier run."""
    rows = []
    for method, ablation, trials in (("base", None, 1), ("csrec-m", None, 2), ("csrec-m", "teachers", 4),
                                     ("csrec-t", "expectation", 2)):
        rows += _rows(tmp_path, method, ablation, trials)
    frame = _parquet_ready(pd.DataFrame(rows))
    assert frame["config/expectation_term"].dropna().map(type).eq(bool).all()
    frame.to_parquet(tmp_path / "results.parquet", index=False)
    summary = {"cells": [{"dataset": "synthetic", "backbone": "gru4rec", "method": m, "search": "optuna",
                          "trials_run": n} for m, n in (("base", 1), ("csrec-m", 2))],
               "ablations": [{"dataset": "synthetic", "backbone": "gru4rec", "method": m, "ablation": a, "cell": a}
                             for m, a in (("csrec-m", "teachers"), ("csrec-t", "expectation"))]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))

    new = pd.DataFrame(_rows(tmp_path, "csrec-m", None, 3, first=10)).drop(columns=["ablation", "is_best"])
    rerun = Cell("synthetic", "gru4rec", "csrec-m", "teachers", new, str(tmp_path / "tcsrec-mNone10"))
    paths = write_run_outputs(tmp_path, [rerun], {"argv": ["--resume"]})
    results = pd.read_parquet(paths["results"])
    counts = results.groupby([results["method"], results["ablation"].fillna("-")]).size().to_dict()
    assert counts == {("base", "-"): 1, ("csrec-m", "-"): 2, ("csrec-m", "teachers"): 3, ("csrec-t", "expectation"): 2}
    assert list(results.columns[:4]) == ["dataset", "backbone", "method", "ablation"]
    new_rows = results[results["ablation"] == "teachers"]
    assert new_rows["is_best"].tolist() == [True, False, False]
    written = json.loads(paths["summary"].read_text())
    assert [c["method"] for c in written["cells"]] == ["base", "csrec-m"] and written["argv"] == ["--resume"]
    assert [c["cell"] for c in written["ablations"]] == ["expectation", "new-teachers"]
    table = paths["table"].read_text()
    assert "| gru4rec | base |" in table and "| gru4rec | csrec-m |" in table and "m=1" in table

    # A run written before ablations existed (no ``ablation`` column, no ``ablations`` list): all main.
    frame[frame["ablation"].isna()].drop(columns=["ablation"]).to_parquet(tmp_path / "results.parquet", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"cells": summary["cells"]}))
    paths = write_run_outputs(tmp_path, [], {})
    results = pd.read_parquet(paths["results"])
    assert sorted(results["method"]) == ["base", "csrec-m", "csrec-m"] and results["ablation"].isna().all()
    assert json.loads(paths["summary"].read_text())["ablations"] == []


def test_run_table_marks_as_the_report_does():
    """table.md and the report's Table 3 share one t-test: SoftRec rows are marked too, and a
    constant non-zero difference (zero variance) counts as significant."""
    from scipy import stats

    from csrec.report.stats import significance_marks

    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = base + 0.05 + rng.normal(0, 0.01, 400)
    assert paired_ttest(better, base) == pytest.approx(stats.ttest_rel(better, base).pvalue)
    assert math.isnan(paired_ttest(base, base)) and paired_ttest(base + 0.1, base) == 0.0
    ranks_base = rng.integers(0, 30, 400)
    positive = rng.random(400) < 0.7

    def vectors(ranks):
        return {"test_ranks": ranks, "test_positive": positive, "recall@10": recall_at_k(ranks, 10),
                "ndcg@10": ndcg_at_k(ranks, 10)}

    best = {("d", "b", "base"): vectors(ranks_base), ("d", "b", "softrec"): vectors(np.maximum(ranks_base - 3, 0)),
            ("d", "b", "csrec-m"): vectors(np.maximum(ranks_base - 8, 0))}
    marks = significance(best, "d", "b")
    assert marks[("csrec-m", "NDCG@10")]["mark"] == "*†" and marks[("softrec", "NDCG@10")]["mark"] == "*"
    report_marks = significance_marks({m: v for (_, _, m), v in best.items()}, "ndcg@10")
    assert {m: e["mark"] for (m, label), e in marks.items() if label == "NDCG@10"} == \
        {m: e["mark"] for m, e in report_marks.items()}
    frame = pd.DataFrame([
        {"dataset": "d", "backbone": "b", "method": m, "status": "completed", "is_best": True, "config/beta": 0.5}
        for m in ("base", "softrec", "csrec-m")
    ])
    table = run_table(frame, best)
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| b |")}
    assert "*†" in rows["csrec-m"] and "*" in rows["softrec"] and "*" not in rows["base"]
    assert "Recall+@10" in table


def test_best_trial_model_is_copied_and_named_in_the_summary(tmp_path):
    """best/<cell>.model.pt is a byte copy of the best trial's model file; summary.json names it."""
    from csrec.report.outputs import TRIAL_MODEL_FILE, best_model_path

    rows = _rows(tmp_path, "csrec-m", None, 2)
    for row in rows:
        trial = tmp_path / row["trial_path"]
        trial.mkdir(parents=True)
        (trial / TRIAL_MODEL_FILE).write_bytes(f"weights of {row['trial_id']}".encode())
    frame = pd.DataFrame(rows).drop(columns=["ablation", "is_best"])

    @dataclass
    class ModelCell(Cell):
        def record(self) -> dict:
            return {"dataset": self.dataset, "backbone": self.backbone, "method": self.method}

    cell = ModelCell("synthetic", "gru4rec", "csrec-m", None, frame, rows[1]["trial_path"])
    paths = write_run_outputs(tmp_path, [cell])
    target = best_model_path(tmp_path, "synthetic", "gru4rec", "csrec-m")
    assert target == tmp_path / "best" / "synthetic__gru4rec__csrec-m.model.pt"
    assert target.read_bytes() == f"weights of {rows[1]['trial_id']}".encode()
    assert json.loads(paths["summary"].read_text())["cells"] == [
        {"dataset": "synthetic", "backbone": "gru4rec", "method": "csrec-m", "best_model": str(target)}]


def test_table_names_the_values_no_search_chose(tmp_path):
    """A cell whose hyperparameters came from ``--set`` shows them (from the best trial's saved
    configuration) as set, after whatever the search chose; Base has none to show."""
    rows = []
    for method in ("base", "csrec-d"):
        rows += _rows(tmp_path, method, None, 1)
    rows[1]["config/beta"] = 0.75  # searched; m, p and T were set
    trials = pd.DataFrame(rows).drop(columns=["ablation", "is_best"])
    (tmp_path / "best").mkdir()
    saved = {"config": {"method": {"name": "csrec-d", "beta": 0.75, "temperature": 3, "num_teachers": 2,
                                   "subsample": 0.8, "alpha": 0.5, "teacher_seed": 1000}}}
    (tmp_path / "best" / "synthetic__gru4rec__csrec-d.trial.json").write_text(json.dumps(saved))
    cells = [Cell("synthetic", "gru4rec", m, None, trials[trials["method"] == m], rows[i]["trial_path"])
             for i, m in enumerate(("base", "csrec-d"))]
    table = write_run_outputs(tmp_path, cells)["table"].read_text()
    lines = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| gru4rec |")}
    assert "| β=0.75; set: T=3, m=2, p=0.8 |" in lines["csrec-d"]  # α is not CSRec-D's
    assert "| – |" in lines["base"]
