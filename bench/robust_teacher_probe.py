"""Why does CSRec-T's robust teacher collapse on Yelp?  Its first epochs under one change at a time.

    python bench/robust_teacher_probe.py --pool ../runs/yelp-teachers [--dataset yelp] [--backbone gru4rec]
                                         [--epochs 2] [--variants as-run,fp32,no-expectation,running-max]
                                         [--valid-sequences 3000] [--data-dir DIR]

Each variant trains the main teacher g1 of CSRec-T (α 0.5, the side teacher p = 0.8 from the pool:
the one the sweep of docs/yelp trained) for a few epochs from the same seed:
``as-run`` as the sweep did (bf16, the expectation term with the exact column max), ``fp32``,
``no-expectation`` (Eq. 17 without the expectation term: the paper's Fig. 10 ablation) and
``running-max`` (the authors' running column max).  After every epoch: the loss terms (mean over
the epoch's batches), validation NDCG@10, and over an evenly spaced subset of validation sequences
the mean entropy (nats) and top-1 probability of g1's softmax, plus the scale of the noise matrix
h̃ (the largest |h̃_ij| over 256 sampled rows).  A variant's rows are written as soon as it ends.
Writes bench/results/robust_teacher_probe_<dataset>.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, markdown_table, write_result  # noqa: E402
from teacher_popularity import top_items  # noqa: E402
from csrec.experiment.fit import make_config  # noqa: E402
from csrec.methods import TeacherPool, teacher_specs, train_teacher  # noqa: E402

VARIANTS = {
    "as-run": {"precision": "bf16"},
    "fp32": {"precision": "fp32"},
    "no-expectation": {"precision": "bf16", "expectation_term": False},
    "running-max": {"precision": "bf16", "noise_column_max": "running"},
}
HEADER = ["variant", "epoch", "CE", "KL(g2‖g1)", "KL(g1‖g2)", "expectation", "valid NDCG@10 %", "softmax entropy (nats)",
          "top-1 probability", "max |h̃| (256 rows)", "s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True, help="the sweep's teacher pool (holds the side teacher)")
    parser.add_argument("--dataset", default="yelp")
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--valid-sequences", type=int, default=3000)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", default=None, help="bench/results/<NAME>.md (default robust_teacher_probe_<dataset>)")
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; valid: {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    data = csrec.load_dataset(args.dataset, data_dir=args.data_dir)
    split = data.eval_split("valid")
    rows = np.unique(np.linspace(0, len(split.targets) - 1, min(args.valid_sequences, len(split.targets))).astype(int))

    # The side teacher exactly as the sweep trained it (its pool key includes the sweep's training settings).
    swept = make_config(args.dataset, args.backbone, "csrec-t", precision="bf16", epochs=40, patience=5, alpha=0.5,
                        subsample=0.8, progress=False)
    (swept_spec,) = teacher_specs(swept)
    pool = TeacherPool(args.pool)
    if not pool.has(swept_spec.side, data, swept.train):
        raise SystemExit(f"{args.pool}: the side teacher {swept_spec.side.describe()} is not in this pool "
                         f"(run the sweep of docs/{args.dataset}/README.md first)")
    side = pool.get(swept_spec.side, data, swept.train).model

    table: list[list[str]] = []
    for variant in args.variants.split(","):
        settings = VARIANTS[variant]
        config = make_config(args.dataset, args.backbone, "csrec-t", epochs=args.epochs, patience=0, alpha=0.5,
                             subsample=0.8, progress=False, **settings)
        (spec,) = teacher_specs(config)
        captured: dict = {}
        started = time.perf_counter()

        def prepare(model, params, captured=captured):
            captured["model"], captured["params"] = model, params

        def on_epoch(log, variant=variant, captured=captured):
            _, _, entropy, top1 = top_items(captured["model"], split, rows)
            noise = captured["params"][-2:] if spec.expectation_term else []  # M and N, after g1's own
            scale = "–"
            if len(noise) == 2:
                with torch.no_grad():
                    sample = torch.linspace(0, data.n_items - 1, 256).long()
                    scale = f"{float((noise[0][sample] @ noise[1].t()).abs().max()):.1f}"
            extra = log.extra
            table.append([variant, str(log.epoch), f"{extra.get('ce', float('nan')):.3f}",
                          f"{extra.get('kl_g2_g1', float('nan')):.3f}", f"{extra.get('kl_g1_g2', float('nan')):.3f}",
                          f"{extra['expectation']:.3f}" if "expectation" in extra else "–",
                          f"{100 * log.valid['ndcg@10']:.2f}", f"{entropy.mean():.2f}", f"{top1.mean():.3f}", scale,
                          f"{time.perf_counter() - started:.0f}"])
            print(table[-1], flush=True)

        train_teacher(spec, data, config.train, side=side,
                      on_epoch=on_epoch, prepare=prepare)
        body = markdown_table(HEADER, table)
        body += (f"\n\n{args.backbone} on {args.dataset}: CSRec-T's main teacher g1 (model seed {spec.seed}, α 0.5) against "
                 f"the pooled side teacher {swept_spec.side.describe()}; {args.epochs} epochs per variant, no early "
                 f"stopping.  Loss terms are epoch means; entropy and top-1 probability over {len(rows):,} evenly spaced "
                 f"validation sequences (uniform entropy {np.log(data.n_items):.2f} nats); s = seconds since the "
                 f"variant started, on a machine shared with other jobs.")
        write_result(args.output or f"robust_teacher_probe_{args.dataset}", f"CSRec-T's robust teacher, first epochs ({args.dataset})",
                     body)


if __name__ == "__main__":
    main()
