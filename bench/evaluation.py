"""Full-ranking evaluation: seconds per test pass and the memory it adds, per dataset and backbone.

    python bench/evaluation.py [--datasets lastfm,yelp] [--backbones gru4rec,sasrec]
                               [--synthetic-items 100000] [--synthetic-sequences 10000] [--repeats 3]

Each case runs in its own process, so its peak RSS is its own: the process loads the data, builds
the (untrained: ranking cost does not depend on the weights) model, notes its resident memory,
then runs ``repeats`` full-ranking test passes (every item scored, history items excluded as the
authors do, per-sequence Recall/NDCG) and reports the fastest pass and the peak RSS minus the
memory before the first pass.  The synthetic case ranks random sequences over a catalogue of
100k+ items.  Scores are computed in chunks of at most ``max_scores`` (2^24 floats, 64 MiB), so
the memory a pass adds is bounded by the chunk, not by sequences × items.
Writes bench/results/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from common import (DEFAULT_DATA_DIR, current_rss_mib, markdown_table, peak_rss_mib,  # noqa: E402
                    random_eval_split, write_result)


def one_case(dataset: str, backbone: str, args: argparse.Namespace) -> dict:
    import csrec
    from csrec.evaluation import evaluate, rank_answers
    from csrec.models import build_backbone

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if dataset == "synthetic":
        n, n_items = args.synthetic_sequences, args.synthetic_items
        split = random_eval_split(n, n_items)
        model = build_backbone(backbone, n_items, 20).to(device)

        def run() -> None:
            rank_answers(model, split, device=device)
    else:
        data = csrec.load_dataset(dataset, data_dir=args.data_dir)
        n, n_items = len(data.eval_split("test").targets), data.n_items
        model = build_backbone(backbone, data.n_items, data.max_len).to(device)

        def run() -> None:
            evaluate(model, data, "test", device=device)
    before = current_rss_mib()
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return {"dataset": dataset, "backbone": backbone, "sequences": n, "items": n_items, "best_s": min(seconds),
            "first_s": seconds[0], "rss_before": before, "peak": peak_rss_mib(), "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,yelp")
    parser.add_argument("--backbones", default="gru4rec,sasrec")
    parser.add_argument("--synthetic-items", type=int, default=100_000)
    parser.add_argument("--synthetic-sequences", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "BACKBONE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_case(*args.one, args)))
        return
    cases = [(d, b) for d in args.datasets.split(",") for b in args.backbones.split(",")]
    cases += [("synthetic", b) for b in args.backbones.split(",")]
    rows = []
    for dataset, backbone in cases:
        command = [sys.executable, __file__, "--one", dataset, backbone, "--repeats", str(args.repeats),
                   "--data-dir", args.data_dir, "--synthetic-items", str(args.synthetic_items),
                   "--synthetic-sequences", str(args.synthetic_sequences)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            raise SystemExit(f"bench/evaluation.py: the {dataset} / {backbone} case failed (exit {done.returncode})")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append([r["dataset"], r["backbone"], f"{r['sequences']:,}", f"{r['items']:,}", f"{r['best_s']:.2f}",
                     f"{r['first_s']:.2f}", f"{r['sequences'] / r['best_s']:,.0f}", f"{r['rss_before']:,.0f}",
                     f"{r['peak']:,.0f}", f"{r['peak'] - r['rss_before']:,.0f}"])
        print(rows[-1], flush=True)
    body = markdown_table(["dataset", "backbone", "test sequences", "items", "s per pass (best)", "s (first pass)",
                           "sequences / s", "RSS before (MiB)", "peak RSS (MiB)", "added by the pass (MiB)"], rows)
    body += (f"\n\nDevice {r['device']}, {torch.get_num_threads()} torch threads, best of {args.repeats} passes; "
             "each row is its own process (data + model loaded before the RSS is read). The synthetic rows rank "
             f"{args.synthetic_sequences:,} random sequences of up to 19 items over {args.synthetic_items:,} items.")
    write_result("evaluation", "Full-ranking evaluation: time and memory per test pass", body)


if __name__ == "__main__":
    main()
