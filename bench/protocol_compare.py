"""csrec's default protocol against the authors', one departure at a time, on Last.FM GRU4Rec.

    python bench/protocol_compare.py [--backbone gru4rec]

Reads the runs that ``bench/lastfm_methods.py`` keeps under bench/results/runs/ for these settings
(each a ``--tag`` of that script; run them first, they resume):

    csrec             --seeds 1 --tag csrec                      csrec's defaults
    authors           --seeds 1 --protocol authors --tag authors the authors' preset in full
    authors-logits    ... --set ensemble=logits --set ensemble_weights=null --tag authors-logits
                      (the preset, but the paper's equal-weight logit mean; CSRec-M and CSRec-D)
    csrec-runningmax  --seeds 1 --set noise_column_max=running --tag csrec-runningmax
                      (csrec's defaults, but the authors' running column max; CSRec-T)
    authors-exactmax  ... --protocol authors --set noise_column_max=exact --tag authors-exactmax
                      (the preset, but Eq. 16's exact column max; CSRec-T.  Slow: the exact
                      arg-max over all |I|² entries every step, 60,000 steps for 80 authors' epochs)

and writes bench/results/protocol_compare.md: per method, each setting's student test Recall@10 /
NDCG@10, its teachers' own test Recall@10, the teachers' ensemble (as that setting's student reads
it), the student's gain over Base and over SoftRec of the same protocol, seconds per training
epoch and wall seconds, beside the paper's Table 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_result  # noqa: E402
from lastfm_methods import METHODS, PAPER, run_path  # noqa: E402

#: tag → (what it is, the Base/SoftRec tag its gains are measured against)
SETTINGS = {
    "csrec": ("csrec's default protocol", "csrec"),
    "authors": ("authors' protocol (preset in full)", "authors"),
    "authors-logits": ("authors' protocol, equal-weight logit-mean ensemble", "authors"),
    "csrec-runningmax": ("csrec's default protocol, the authors' running column max", "csrec"),
    "authors-exactmax": ("authors' protocol, exact column max (Eq. 16)", "authors"),
}
SEED = 2022


def load(backbone: str, method: str, tag: str) -> dict | None:
    path = run_path(backbone, method, SEED, tag)
    return json.loads(path.read_text()) if path.exists() else None


def pct(metrics: dict | None, key: str = "recall@10") -> float | None:
    return None if metrics is None else metrics[key] * 100


def rows(backbone: str) -> list[list]:
    out = []
    for method in METHODS:
        for tag, (label, reference) in SETTINGS.items():
            run = load(backbone, method, tag)
            if run is None:
                continue
            recall = pct(run["test"])
            gains = []
            for other in ("base", "softrec"):
                ref = load(backbone, other, reference)
                gains.append("" if ref is None or method in ("base", other) else f"{recall - pct(ref['test']):+.2f}")
            paper = PAPER.get(backbone, {}).get(method)
            timings = run["timings"]
            out.append([
                method, label, f"{recall:.2f}", f"{pct(run['test'], 'ndcg@10'):.2f}", *gains,
                "; ".join(f"{pct(t['test']):.2f}" for t in run.get("teachers", [])),
                "" if not run.get("ensemble") else f"{pct(run['ensemble']):.2f}",
                f"{run['best_epoch']}/{run['epochs_run']}", f"{timings['train_epoch_s']:.1f}",
                f"{timings['total_s']:.0f}", "" if paper is None else f"{paper[0]} / {paper[1]}",
            ])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gru4rec")
    args = parser.parse_args()
    body = markdown_table(
        ["method", "setting", "Recall@10 %", "NDCG@10 %", "gain over Base (same protocol)",
         "gain over SoftRec (same protocol)", "teachers' own test Recall@10 %", "teachers' ensemble test Recall@10 %",
         "best / run epochs", "student s per train epoch", "wall s (teachers trained in the run incl.)",
         "paper Recall@10 / NDCG@10"], rows(args.backbone))
    body += (f"\n\n{args.backbone}, Last.FM, one seed (student 2022, teachers 1000 + k), β = 0.5, T = 3, α = 0.5, "
             "m = 2, p = 0.8. Gains are in Recall@10 points against Base and SoftRec trained under the same protocol "
             "(a departure that only changes CSRec's teachers or ensemble keeps its protocol's Base and SoftRec). Teachers come from "
             "one pool, so a run's wall time counts only the teachers it trained itself; seconds are one torch "
             "thread with another run on the second core. Runs: `python bench/lastfm_methods.py` with the tags in "
             "this script's docstring.")
    write_result("protocol_compare", f"Last.FM {args.backbone}: csrec's protocol vs the authors', one departure at a time",
                 body)


if __name__ == "__main__":
    main()
