"""The paper's Table 3 as csrec holds it, and the report's table that sets a run beside it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from csrec.report.paper import METHODS, PAPER_TABLE3, paper_table3
from csrec.report.runs import Run
from csrec.report.tables import main_table, paper_table

PAPER_TEXT = Path(__file__).resolve().parents[2] / ".." / "shared" / "paper" / "csrec-tois2024.txt"
PARTS = (("gru4rec", "nextitnet", "narm", "sasrec"), ("bert4rec", "srgnn", "dreamrec", "cl4srec"))
LABELS = {"Base": "base", "SoftRec": "softrec", "CSRec-M": "csrec-m", "CSRec-D": "csrec-d", "CSRec-T": "csrec-t"}


def _published_table3(text: str) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Table 3 read from the paper's text: its two parts, each 4 datasets × 5 method rows of
    (RC, NG) per backbone; the first two datasets are Last.FM and Yelp."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("Dataset\tMethod\tRC (%)")]
    assert len(headers) == 2, "expected the two parts of Table 3"
    table = {}
    for start, backbones in zip(headers, PARTS):
        rows = []
        for line in lines[start + 1:]:
            fields = [f.strip() for f in line.split("\t")]
            method = next((LABELS[f] for f in fields if f in LABELS), None)
            if method is None:
                continue
            numbers = [float(x) for x in re.findall(r"\d+\.\d+", "\t".join(fields[fields.index(next(
                f for f in fields if f in LABELS)) + 1:]))]
            rows.append((method, numbers))
            if len(rows) == 10:
                break
        for k, (method, numbers) in enumerate(rows):
            assert method == METHODS[k % 5] and len(numbers) == 8, (method, numbers)
            dataset = ("lastfm", "yelp")[k // 5]
            for j, backbone in enumerate(backbones):
                table[(dataset, backbone, method)] = (numbers[2 * j], numbers[2 * j + 1])
    return table


def test_every_figure_matches_the_papers_text():
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT}")
    published = _published_table3(PAPER_TEXT.read_text())
    assert len(published) == 2 * 8 * 5
    assert PAPER_TABLE3 == published


def test_paper_table3_by_dataset():
    lastfm = paper_table3("lastfm")
    assert lastfm["gru4rec"]["csrec-d"] == (18.60, 10.99) and lastfm["sasrec"]["base"] == (20.35, 11.43)
    assert set(lastfm) == {b for part in PARTS for b in part}
    assert paper_table3("office") == {}


def test_paper_table_sets_each_cell_beside_the_paper_and_names_the_far_ones(fake_run):
    table3 = main_table(Run.load(fake_run), "table3")
    cells = dict(zip(table3.row_keys, (cells for _, cells in table3.rows)))
    base_rc, base_ng = (100 * c.value for c in cells[("synthetic", "base")][:2])  # GRU4Rec's pair
    softrec_rc = 100 * cells[("synthetic", "softrec")][0].value
    paper = {("synthetic", "gru4rec", "base"): (base_rc - 0.5, base_ng + 1.0),
             ("synthetic", "gru4rec", "softrec"): (softrec_rc + 2.0, 1.0)}
    beside = paper_table(table3, paper=paper)
    assert [labels for labels, _ in beside.rows] == [["Synthetic", "GRU4Rec", "Base"], ["", "", "SoftRec"]]
    base = beside.rows[0][1]
    assert base[0].text() == cells[("synthetic", "base")][0].text()
    assert math.isclose(base[1].value, (base_rc - 0.5) / 100)
    assert base[2].text() == "+0.50" and base[5].text() == "-1.00"
    assert beside.rows[1][1][2].text() == "-2.00"
    assert "from the paper: Synthetic / GRU4Rec / SoftRec." in "\n".join(beside.notes)  # 2.0 > 1.5, 0.5 is not
    assert "$\\Delta$" in beside.latex() and "Δ" not in beside.latex()
    assert paper_table(table3).empty  # the paper reports no synthetic data

