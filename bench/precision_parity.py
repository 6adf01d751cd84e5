"""Accuracy parity of bfloat16 mixed precision: the same runs in fp32 and bf16, side by side.

    python bench/precision_parity.py [--runs base:gru4rec,base:sasrec,csrec-m:gru4rec]
                                     [--seeds 2022,2023,2024] [--method-seeds 1] [--dataset lastfm]

Each run trains to early stopping (validation NDCG@10, patience 10) and tests once, once with
``precision="fp32"`` and once with ``"bf16"`` (a CSRec method's teachers train in the same
precision as its student).  Base runs use every seed of --seeds; soft-label methods the first
--method-seeds of them.  Each run is saved under bench/results/runs/ and reused on a rerun (delete
the JSON to redo it).  The table shows mean ± sample std of test Recall@10 / NDCG@10 (%) per
precision and whether the bf16 mean lies within one fp32 standard deviation of the fp32 mean.
Writes bench/results/<--output>.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def run_once(dataset: str, backbone: str, method: str, precision: str, seed: int, data_dir: str, data) -> dict:
    path = RESULTS / "runs" / f"{dataset}-{backbone}-{method}-{precision}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = csrec.fit(dataset, backbone, method, data=data, data_dir=data_dir, epochs=200, patience=10, seed=seed,
                       precision=precision, progress=False)
    result.save(path)
    print(result.summary(), flush=True)
    return json.loads(path.read_text())


def _teachers(fp32: list[list[tuple]], bf16: list[list[tuple]]) -> str:
    """Each teacher of the first seed's run by its role, fp32 / bf16."""
    if not fp32 or not fp32[0]:
        return "–"
    return ", ".join(f"{role} {a:.2f} / {b:.2f}" for (role, a), (_, b) in zip(fp32[0], bf16[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="base:gru4rec,base:sasrec,csrec-m:gru4rec", help="comma list of method:backbone")
    parser.add_argument("--seeds", default="2022,2023,2024")
    parser.add_argument("--method-seeds", type=int, default=1, help="seeds (from the start of --seeds) for soft-label methods")
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", default="precision_parity")
    args = parser.parse_args()
    data = csrec.load_dataset(args.dataset, data_dir=args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for item in args.runs.split(","):
        method, backbone = item.split(":")
        run_seeds = seeds if method == "base" else seeds[: args.method_seeds]
        stats = {}
        for precision in PRECISIONS:
            runs = [run_once(args.dataset, backbone, method, precision, s, args.data_dir, data) for s in run_seeds]
            stats[precision] = {
                "recall": np.array([r["test"]["recall@10"] for r in runs]) * 100,
                "ndcg": np.array([r["test"]["ndcg@10"] for r in runs]) * 100,
                "epochs": [f"{r['best_epoch']}/{r['epochs_run']}" for r in runs],
                "epoch_s": np.mean([r["timings"]["train_epoch_s"] + r["timings"]["valid_pass_s"] for r in runs]),
                # each teacher's own validation NDCG@10 (CSRec-T: the side teacher, then the robust main one)
                "teachers": [[(t.get("role") or f"teacher {k + 1}", t["valid"]["ndcg@10"] * 100)
                              for k, t in enumerate(r.get("teachers") or [])] for r in runs],
            }

        def fmt(values):
            return f"{values.mean():.2f}" + (f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else "")

        fp32, bf16 = stats["fp32"], stats["bf16"]
        verdict = []
        for key in ("recall", "ndcg"):
            gap = bf16[key].mean() - fp32[key].mean()
            if len(fp32[key]) > 1:
                within = abs(gap) <= fp32[key].std(ddof=1)
                verdict.append(f"{gap:+.2f} ({'within' if within else 'outside'} 1 std)")
            else:
                verdict.append(f"{gap:+.2f}")
        rows.append([f"{method} {backbone}", len(run_seeds), fmt(fp32["recall"]), fmt(bf16["recall"]),
                     fmt(fp32["ndcg"]), fmt(bf16["ndcg"]), *verdict,
                     " ".join(fp32["epochs"]), " ".join(bf16["epochs"]),
                     f"{fp32['epoch_s']:.2f} / {bf16['epoch_s']:.2f}", _teachers(fp32["teachers"], bf16["teachers"])])
        print(rows[-1], flush=True)
    body = markdown_table(
        ["run", "seeds", "fp32 Recall@10 %", "bf16 Recall@10 %", "fp32 NDCG@10 %", "bf16 NDCG@10 %",
         "Δ Recall@10 (bf16 − fp32)", "Δ NDCG@10", "fp32 best/run epochs", "bf16 best/run epochs",
         "mean s per epoch fp32 / bf16 (train+valid, loaded machine)",
         "teachers' valid NDCG@10 % fp32 / bf16 (first seed, by role)"], rows)
    body += (f"\n\nSeeds {', '.join(map(str, seeds))} (soft-label methods: the first {args.method_seeds}); early stopping "
             "on validation NDCG@10 (patience 10, at most 200 epochs), best epoch restored, one test pass scored in "
             "float32; std is the sample standard deviation over seeds.  CSRec-M: m = 2 teachers of the same backbone "
             "trained in the run's precision, β 0.5, T 3, factored store read in the run's precision; CSRec-T: the side teacher (p = 0.8) "
             "and the robust main teacher (α 0.5, the expectation term) in the run's precision.  The per-epoch "
             "seconds are taken while other jobs shared the machine; the speed comparison is section 11's side-by-side run.")
    write_result(args.output, f"bf16 vs fp32 accuracy parity ({args.dataset})", body)


if __name__ == "__main__":
    main()
