"""Yelp and Office end to end: statistics after preprocessing (both windowings) and a Base fit.

    python bench/other_datasets.py [--datasets yelp,office] [--epochs 5] [--backbone gru4rec]

Writes bench/results/other_datasets.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,yelp,office")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    stats_rows, fit_rows = [], []
    for name in args.datasets.split(","):
        for windowing in ("authors", "disjoint"):
            s = csrec.load_dataset(name, data_dir=args.data_dir, windowing=windowing).stats()
            stats_rows.append([name, windowing, s["max_len"], f"{s['source_users']:,}", f"{s['sub_sessions']:,}",
                               f"{s['items']:,}", f"{s['interactions']:,}", f"{s['train_targets']:,}",
                               f"{s['positive_test_targets']:,}", f"{s['leaked_test_targets']:,}"])
        if name == "lastfm":
            continue
        result = csrec.fit(name, args.backbone, "base", data_dir=args.data_dir, epochs=args.epochs, patience=0)
        result.save(RESULTS / "runs" / f"{name}-{args.backbone}-base-{args.epochs}ep.json")
        m = result.metrics
        fit_rows.append([name, args.backbone, args.epochs, f"{m['recall@10'] * 100:.2f}", f"{m['ndcg@10'] * 100:.2f}",
                         f"{m.get('recall+@10', float('nan')) * 100:.2f}", f"{m.get('ndcg+@10', float('nan')) * 100:.2f}",
                         f"{result.timings['train_epoch_s']:.1f}", f"{result.timings['test_pass_s']:.1f}"])
    body = "Statistics after 5-core filtering and windowing:\n\n" + markdown_table(
        ["dataset", "windowing", "max_len", "users", "sub-sessions", "items", "interactions", "training targets",
         "positive test answers", "test answers leaked into training"], stats_rows)
    body += f"\n\nBase {args.backbone}, {args.epochs} epochs (no early stopping), test metrics in %:\n\n" + markdown_table(
        ["dataset", "backbone", "epochs", "Recall@10", "NDCG@10", "Recall+@10", "NDCG+@10", "s per train epoch",
         "s per test pass"], fit_rows)
    write_result("other_datasets", "Yelp and Office end to end", body)


if __name__ == "__main__":
    main()
