"""Seconds per training epoch of one Base backbone, for comparing two checkouts side by side.

    PYTHONPATH=<checkout> python bench/epoch_time.py DATASET BACKBONE PRECISION [--epochs 3] [--data-dir DIR]

Trains ``--epochs`` epochs (one torch thread, seed 0, no early stopping) with the ``csrec`` found on
PYTHONPATH and prints the median training seconds of the epochs after the first, with the last
validation NDCG@10 (equal figures across checkouts say the arithmetic did not change).  To compare
the code before a change with the code after it, check the older commit out beside this one
(``git worktree add ../csrec-before <commit>``) and run this script with each checkout on
PYTHONPATH, alternating, on the same machine.  Writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import csrec
from csrec.models import build_backbone
from csrec.training import TrainConfig, train_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("backbone")
    parser.add_argument("precision", choices=["fp32", "bf16"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = csrec.load_dataset(args.dataset, data_dir=args.data_dir)
    torch.manual_seed(0)
    model = build_backbone(args.backbone, data.n_items, data.max_len)
    outcome = train_model(model, data, TrainConfig(epochs=args.epochs, patience=0, progress=False,
                                                   precision=args.precision, seed=0))
    seconds = [log.seconds_train for log in outcome.history[1:]] or [outcome.history[0].seconds_train]
    print(f"{Path(csrec.__file__).parent.parent}: {args.dataset} {args.backbone} {args.precision}: median train "
          f"epoch {np.median(seconds):.2f} s over epochs 2..{args.epochs}; valid NDCG@10 after epoch {args.epochs} "
          f"{outcome.history[-1].valid['ndcg@10']:.5f}")


if __name__ == "__main__":
    main()
