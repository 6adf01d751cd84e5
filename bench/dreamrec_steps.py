"""DreamRec's sampling steps at evaluation: validation (and test) Recall/NDCG@10 on Last.FM.

    python bench/dreamrec_steps.py [--epochs 8] [--steps 1,2,5,20]

Trains one Base DreamRec (seed 0) for --epochs epochs, then reads the same weights with each
number of DDIM steps (``eval_steps``).  The default of csrec/models/dreamrec.py is chosen on the
validation columns.  Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, markdown_table  # noqa: E402
from csrec.evaluation import evaluate  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.training import TrainConfig, train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", default="1,2,5,20")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = csrec.load_dataset("lastfm", data_dir=args.data_dir)
    model = build_backbone("dreamrec", data.n_items, data.max_len)
    train_model(model, data, TrainConfig(epochs=args.epochs, patience=0, progress=False))
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        model.config.eval_steps = steps
        valid, test = evaluate(model, data, "valid"), evaluate(model, data, "test")
        rows.append([steps, *(f"{100 * r.metrics[k]:.2f}" for r in (valid, test) for k in ("recall@10", "ndcg@10")),
                     f"{test.seconds:.2f}"])
    print(markdown_table(["eval_steps", "valid Recall@10 %", "valid NDCG@10 %", "test Recall@10 %", "test NDCG@10 %",
                          "s per test pass"], rows))


if __name__ == "__main__":
    main()
