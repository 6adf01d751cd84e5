"""What each teacher of a pool recommends: how popular its top 10 are, how many items it covers,
how confident its softmax is, next to the test answers themselves.

    python bench/teacher_popularity.py --dataset yelp --pool ../runs/yelp-teachers
                                       [--sequences 5000] [--data-dir DIR] [--output NAME]

For every teacher in the pool (its ``teacher-*.json`` record and checkpoint), over an evenly spaced
subset of the test sequences (the history excluded from the ranking, as in evaluation):
test Recall@10 on the subset; the share of its top-10 items among the 20% most frequent training
items (the split of Fig. 1/4) and their median training count; how many distinct items its top 10
cover over the subset; and the mean entropy (nats) and top-1 probability of its softmax at T = 1.
The first row does the same for the test answers (what a perfect recommender's top 1 would be).
A teacher pool lives outside the repository, so the rows need the sweep that trained it.
Writes bench/results/<--output>.md (default teacher_popularity_<dataset>).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, markdown_table, write_result  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.report.stats import POPULAR_FRACTION, popular_items  # noqa: E402

TOP_K = 10


def top_items(model, split, rows: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the given test rows: top-10 item ids (1-based), the answer's rank, softmax entropy and top-1 probability."""
    model.eval()
    tops, ranks, entropy, top1 = [], [], [], []
    with torch.no_grad():
        for lo in range(0, len(rows), chunk):
            index = rows[lo:lo + chunk]
            lengths = torch.as_tensor(split.lengths[index])
            inputs = torch.as_tensor(split.inputs[index])[:, : int(lengths.max())]
            scores = model.item_scores(model.last_representation(inputs, lengths)).float()
            log_p = torch.log_softmax(scores, dim=-1)  # before the history mask: the teacher's own distribution
            entropy.append(-(log_p.exp() * log_p).sum(-1).numpy())
            top1.append(log_p.max(-1).values.exp().numpy())
            answers = torch.as_tensor(split.targets[index]) - 1
            answer_scores = scores.gather(1, answers.unsqueeze(1))
            history = inputs - 1
            valid = history >= 0
            scores[torch.arange(len(index)).unsqueeze(1).expand_as(history)[valid], history[valid]] = -math.inf
            ranks.append((scores > answer_scores).sum(1).numpy())
            tops.append(scores.topk(TOP_K, dim=-1).indices.numpy() + 1)
    return np.concatenate(tops), np.concatenate(ranks), np.concatenate(entropy), np.concatenate(top1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="yelp")
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--sequences", type=int, default=5000, help="test sequences, evenly spaced")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = csrec.load_dataset(args.dataset, data_dir=args.data_dir)
    split = data.eval_split("test")
    rows = np.unique(np.linspace(0, len(split.targets) - 1, min(args.sequences, len(split.targets))).astype(int))
    counts = np.asarray(data.item_counts())  # training interactions per item id (index 0: padding)
    popular = popular_items(counts)  # the same id indexing

    def describe(items: np.ndarray) -> list[str]:
        flat = items.reshape(-1)
        return [f"{100 * popular[flat].mean():.1f}", f"{np.median(counts[flat]):.0f}", f"{len(np.unique(flat)):,}"]

    table = [["test answers (top 1)", "–", "–", *describe(split.targets[rows]), "–", "–"]]
    records = sorted(args.pool.glob("teacher-*.json"))
    if not records:
        raise SystemExit(f"{args.pool}: no teacher-*.json records")
    for path in records:
        record = json.loads(path.read_text())
        checkpoint = path.with_suffix(".pt")
        if not checkpoint.is_file():
            continue
        spec = record["spec"]
        model = build_backbone(spec["backbone"], data.n_items, data.max_len, dict(spec["model"]))
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state"])
        tops, ranks, entropy, top1 = top_items(model, split, rows)
        # two teachers can share a description (one retrained after a fix): the pool key tells them apart
        key = record.get("key", path.stem.removeprefix("teacher-"))[:8]
        table.append([record.get("describe", path.stem), key, f"{100 * (ranks < TOP_K).mean():.2f}", *describe(tops),
                      f"{entropy.mean():.2f}", f"{top1.mean():.3f}"])
        print(table[-1], flush=True)
    body = markdown_table(
        ["teacher", "pool key", f"test Recall@10 % (these {len(rows):,} sequences)",
         f"top-10 items among the {int(100 * POPULAR_FRACTION)}% most frequent (%)",
         "median training count of the top-10 items", "distinct items in the top 10s", "softmax entropy (nats)",
         "top-1 probability"], table)
    body += (f"\n\n{data.n_items:,} items (uniform softmax entropy {math.log(data.n_items):.2f} nats); "
             f"{len(rows):,} of {len(split.targets):,} test sequences, evenly spaced; pool `{args.pool}`.")
    write_result(args.output or f"teacher_popularity_{args.dataset}", f"What the teachers recommend ({args.dataset})", body)


if __name__ == "__main__":
    main()
