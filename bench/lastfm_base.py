"""Base (one-hot CE) backbones on Last.FM with the paper's protocol, next to the paper's Table 3.

    python bench/lastfm_base.py [--backbones gru4rec,nextitnet,narm,sasrec] [--seeds 2022]

Trains each backbone to early stopping (validation NDCG@10, patience 10), restores the best
epoch and runs the single test pass.  Writes bench/results/lastfm_base.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from csrec.report.paper import paper_table3  # noqa: E402
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402

# Paper Table 3, Last.FM: (Recall@10, NDCG@10) in % per backbone and method.
PAPER = paper_table3("lastfm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="gru4rec,nextitnet,narm,sasrec")
    parser.add_argument("--seeds", default="2022")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    rows = []
    for backbone in args.backbones.split(","):
        runs = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            overrides = {k: v for k, v in {"lr": args.lr, "batch_size": args.batch_size}.items() if v is not None}
            result = csrec.fit("lastfm", backbone, "base", data_dir=args.data_dir, epochs=args.epochs,
                               patience=args.patience, seed=seed, **overrides)
            result.save(RESULTS / "runs" / f"lastfm-{backbone}-base-seed{seed}.json")
            print(result.summary(), flush=True)
            runs.append(result)
        recall = np.array([r.metrics["recall@10"] for r in runs]) * 100
        ndcg = np.array([r.metrics["ndcg@10"] for r in runs]) * 100
        paper_r, paper_n = PAPER.get(backbone, {}).get("base", (None, None))
        fmt = lambda v: f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")  # noqa: E731
        r0 = runs[0]
        rows.append([
            backbone, fmt(recall), fmt(ndcg), paper_r, paper_n,
            f"{recall.mean() - paper_r:+.2f}" if paper_r else "",
            f"{np.mean([r.best_epoch for r in runs]):.0f} / {np.mean([r.epochs_run for r in runs]):.0f}",
            f"{np.mean([r.timings['train_epoch_s'] + r.timings['valid_pass_s'] for r in runs]):.2f}",
            f"{np.mean([r.timings['student_s'] for r in runs]):.0f}",
            f"{r0.config.train.lr:g}", r0.config.train.batch_size,
        ])
    body = markdown_table(
        ["backbone", "Recall@10 %", "NDCG@10 %", "paper Recall@10", "paper NDCG@10", "Δ Recall@10",
         "best / run epochs", "s per epoch (train+valid)", "s to converged model", "lr", "batch (sub-sessions)"], rows)
    body += ("\n\nFull ranking over all 3,646 items, history items excluded (as the authors), per-sequence means; "
             "each sub-session's every next-item target in one forward pass; Adam; early stopping on validation "
             "NDCG@10 with the best epoch restored before the single test pass.")
    write_result("lastfm_base", "Last.FM, Base backbones vs the paper's Table 3", body)


if __name__ == "__main__":
    main()
