"""The paper's published Table 3 (Recall@10 / NDCG@10 in %), for the datasets csrec ships.

Transcribed from "Learning Robust Sequential Recommenders through Confident Soft Labels" (ACM TOIS
2024), Table 3 and "Table 3. Continued": the Last.FM and Yelp blocks of all eight backbones
(Electronics and Movies and TV are not among csrec's datasets).  ``tests/report/test_paper.py``
checks every figure against the paper's text.  The report puts these beside each of a run's cells
(:func:`csrec.report.tables.paper_table`); the benchmarks compare with them too.
"""

from __future__ import annotations

#: Method order of each row list below (the paper's row order).
METHODS = ("base", "softrec", "csrec-m", "csrec-d", "csrec-t")

_TABLE3 = {
    "lastfm": {
        "gru4rec": [(16.68, 10.08), (17.42, 10.62), (18.16, 10.67), (18.60, 10.99), (18.18, 10.76)],
        "nextitnet": [(15.45, 11.56), (15.47, 11.82), (16.46, 12.47), (16.20, 12.05), (15.68, 12.00)],
        "narm": [(20.26, 13.20), (20.48, 12.82), (20.81, 13.05), (20.73, 12.96), (20.69, 12.87)],
        "sasrec": [(20.35, 11.43), (20.74, 11.95), (20.87, 11.97), (21.13, 12.25), (21.04, 12.00)],
        "bert4rec": [(17.27, 9.62), (17.39, 8.77), (18.12, 10.03), (17.84, 9.54), (18.47, 10.35)],
        "srgnn": [(14.31, 9.11), (14.35, 9.30), (15.19, 9.91), (15.29, 9.78), (15.51, 9.44)],
        "dreamrec": [(15.44, 8.68), (16.07, 8.97), (19.00, 11.29), (18.69, 10.86), (19.10, 11.18)],
        "cl4srec": [(18.34, 10.19), (17.89, 9.68), (19.00, 10.72), (18.94, 10.58), (18.63, 10.35)],
    },
    "yelp": {
        "gru4rec": [(5.81, 3.51), (6.10, 3.58), (6.40, 3.82), (6.23, 3.64), (6.52, 3.89)],
        "nextitnet": [(8.07, 5.74), (8.30, 5.92), (8.58, 6.17), (8.50, 6.10), (8.58, 6.17)],
        "narm": [(8.58, 5.64), (8.10, 5.02), (8.90, 5.77), (8.72, 5.48), (8.70, 5.53)],
        "sasrec": [(8.52, 5.32), (9.05, 5.58), (9.48, 5.90), (9.48, 5.89), (9.42, 5.88)],
        "bert4rec": [(7.15, 4.34), (7.16, 4.05), (7.55, 4.61), (7.42, 4.48), (7.40, 4.51)],
        "srgnn": [(6.91, 4.72), (6.93, 4.62), (7.51, 5.11), (7.55, 4.97), (7.31, 4.77)],
        "dreamrec": [(6.99, 4.22), (6.45, 3.94), (8.37, 4.97), (8.30, 4.85), (8.18, 4.71)],
        "cl4srec": [(8.59, 5.48), (8.23, 4.56), (9.00, 5.54), (9.07, 5.59), (8.97, 5.46)],
    },
}

#: ``(dataset, backbone, method) -> (Recall@10 %, NDCG@10 %)``, the paper's Table 3.
PAPER_TABLE3: dict[tuple[str, str, str], tuple[float, float]] = {
    (dataset, backbone, method): value
    for dataset, backbones in _TABLE3.items()
    for backbone, rows in backbones.items()
    for method, value in zip(METHODS, rows)
}


def paper_table3(dataset: str) -> dict[str, dict[str, tuple[float, float]]]:
    """The paper's Table 3 block of ``dataset``: ``{backbone: {method: (Recall@10 %, NDCG@10 %)}}``
    (empty for a dataset the paper does not report)."""
    return {backbone: dict(zip(METHODS, rows)) for backbone, rows in _TABLE3.get(dataset, {}).items()}
