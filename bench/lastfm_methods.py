"""Base, SoftRec and CSRec-M/D/T students on Last.FM, next to the paper's Table 3.

    python bench/lastfm_methods.py [--backbones gru4rec,sasrec] [--seeds 3] [--beta 0.5] [--temperature 3]

Base and CSRec-M run with several seeds (mean ± std); seed index i trains the student with seed
2022 + i and CSRec-M's teachers with seeds 1000 + 10·i + k.  SoftRec, CSRec-D and CSRec-T run
once.  Teachers live in one on-disk pool, so CSRec-T's side teacher is CSRec-D's first teacher.
Writes bench/results/lastfm_methods.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402
from csrec.methods import TeacherPool  # noqa: E402
from csrec.methods.run import run_method  # noqa: E402,F401

# Paper Table 3, Last.FM, Recall@10 / NDCG@10 in %.
PAPER = {
    "gru4rec": {"base": (16.68, 10.08), "softrec": None, "csrec-m": (18.16, None), "csrec-d": (18.60, None), "csrec-t": (18.18, None)},
    "sasrec": {"base": (20.35, 11.43), "softrec": None, "csrec-m": (20.87, None), "csrec-d": (21.13, None), "csrec-t": (21.04, None)},
}
MULTI_SEED = ("base", "csrec-m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="gru4rec,sasrec")
    parser.add_argument("--methods", default="base,softrec,csrec-m,csrec-d,csrec-t")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--pool", default=str(RESULTS / "runs" / "teacher-pool"))
    args = parser.parse_args()
    pool = TeacherPool(args.pool)
    data = csrec.load_dataset("lastfm", data_dir=args.data_dir)
    rows = []
    for backbone in args.backbones.split(","):
        for method in args.methods.split(","):
            results, walls = [], []
            for i in range(args.seeds if method in MULTI_SEED else 1):
                config = csrec.make_config(
                    "lastfm", backbone, method, data_dir=args.data_dir, epochs=args.epochs, seed=2022 + i,
                    beta=args.beta, temperature=args.temperature, alpha=args.alpha, teacher_seed=1000 + 10 * i,
                    progress=False,
                )
                started = time.perf_counter()
                result = csrec.fit(config=config, data=data, pool=pool)
                walls.append(time.perf_counter() - started)
                result.save(RESULTS / "runs" / f"lastfm-{backbone}-{method}-seed{2022 + i}.json")
                print(result.summary(), f"[{walls[-1]:.0f}s wall incl. teachers]", flush=True)
                results.append(result)
            recall = np.array([r.metrics["recall@10"] for r in results]) * 100
            ndcg = np.array([r.metrics["ndcg@10"] for r in results]) * 100
            fmt = lambda v: f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")  # noqa: E731
            paper = PAPER.get(backbone, {}).get(method)
            teachers = results[0].teachers
            rows.append([
                backbone, method, len(results), fmt(recall), fmt(ndcg),
                "" if paper is None else paper[0],
                "; ".join(f"{t['test']['recall@10'] * 100:.2f}" for t in teachers) or "",
                f"{np.mean(walls):.0f}",
            ])
    body = markdown_table(["backbone", "method", "seeds", "Recall@10 %", "NDCG@10 %", "paper Recall@10",
                           "teachers' own test Recall@10 %", "wall s per run (teachers trained in it incl.)"], rows)
    body += (f"\n\nSetting: β = {args.beta}, T = {args.temperature}, α = {args.alpha}, m = 2, p = 0.8, "
             "logit-mean ensemble, KL(r ‖ P_f) as the authors' code, factored soft-label store; "
             "lr 3e-3, 64 sub-sessions per batch, early stopping (patience 10) on validation NDCG@10. "
             "Teachers come from one pool: a run reuses teachers an earlier run trained, so wall time "
             "counts only the teachers trained in that run.")
    write_result("lastfm_methods", "Last.FM, Base / SoftRec / CSRec-M/D/T students vs the paper's Table 3", body)


if __name__ == "__main__":
    main()
