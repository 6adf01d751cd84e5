"""Where a soft-label student's extra time goes: one training step, phase by phase, Base vs CSRec.

    python bench/student_profile.py [--datasets lastfm,yelp] [--backbone gru4rec] [--teachers 1,2,4]
                                    [--batches 40] [--rounds 3]

For each dataset, the same training batches (64 sub-sessions each) are stepped through by a Base
student (one-hot CE) and by a CSRec student reading a factored soft-label store of m teachers
(β 0.5, T 3, float32 and bfloat16 products), with a timer around each phase: the backbone's
forward, the output-layer product, the soft-label read (the teachers' logit product and its
softmax), the loss forward, the backward pass and the optimiser step.  The teachers are untrained
(timing does not depend on their weights).  Milliseconds per batch are the median over --rounds
passes over --batches batches, 1 torch thread unless OMP_NUM_THREADS says otherwise.  Writes
bench/results/student_profile.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, markdown_table, write_result  # noqa: E402

import csrec  # noqa: E402
from csrec.methods.losses import student_loss_from_teacher_probs  # noqa: E402
from csrec.methods.softlabels import build_store  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.training import BatchMaker  # noqa: E402

PHASES = ("backbone forward", "output product", "soft-label read", "loss forward", "backward", "optimiser step")


def profile(model, batches, store=None, precision="float32", beta=0.5, temperature=3.0) -> dict[str, float]:
    """Seconds per phase summed over ``batches`` (one pass)."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = dict.fromkeys(PHASES, 0.0)
    model.train()

    def timed(phase, fn):
        started = time.perf_counter()
        out = fn()
        seconds[phase] += time.perf_counter() - started
        return out

    for batch in batches:
        reps, targets = timed("backbone forward", lambda: model.training_representations(batch.inputs, batch.targets))
        logits = timed("output product", lambda: model.item_scores(reps))
        if store is None:
            loss = timed("loss forward", lambda: F.cross_entropy(logits, targets - 1))
        else:
            with torch.no_grad():
                probs = timed("soft-label read", lambda: store.teacher_probs(batch.rows, temperature, precision))
            loss = timed("loss forward",
                         lambda: student_loss_from_teacher_probs(logits, targets - 1, probs, beta, "code",
                                                                 r_log_r=torch.zeros(len(targets)))[0])
        extra = model.extra_loss()
        if extra is not None:
            loss = loss + extra
        optimiser.zero_grad(set_to_none=True)
        timed("backward", loss.backward)
        timed("optimiser step", optimiser.step)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,yelp")
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--teachers", default="1,2,4", help="comma list of m")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", default="student_profile", help="result name under bench/results/")
    args = parser.parse_args()
    counts = [int(m) for m in args.teachers.split(",")]
    rows = []
    for name in args.datasets.split(","):
        data = csrec.load_dataset(name, data_dir=args.data_dir)
        maker = BatchMaker(data, None, 64, torch.device("cpu"))
        batches = list(maker.batches(np.random.default_rng(0)))[: args.batches]
        n_rows = sum(len(b.rows) for b in batches)
        teachers = []
        for seed in range(max(counts)):
            torch.manual_seed(1000 + seed)
            teachers.append(build_backbone(args.backbone, data.n_items, data.max_len).eval())
        variants = [("Base", None, "")]
        for m in counts:
            store = build_store(teachers[:m], data, "factored")
            variants += [(f"CSRec, m = {m}", store, "float32"), (f"CSRec, m = {m}", store, "bfloat16")]
        base_total = None
        for label, store, precision in variants:
            per_round = []
            for _ in range(args.rounds + 1):  # the first round warms up
                torch.manual_seed(0)
                student = build_backbone(args.backbone, data.n_items, data.max_len)
                per_round.append(profile(student, batches, store, precision or "float32"))
            per_round = per_round[1:]
            ms = {p: 1000 * statistics.median(r[p] for r in per_round) / len(batches) for p in PHASES}
            total = sum(ms.values())
            base_total = base_total or total
            rows.append([name, label, precision, *(f"{ms[p]:.1f}" for p in PHASES), f"{total:.1f}",
                         f"{100 * (total - base_total) / base_total:+.0f}%"])
            print(rows[-1], flush=True)
        rows.append([name, f"({len(batches)} batches, {n_rows / len(batches):.0f} targets per batch, "
                           f"{data.n_items:,} items)", "", *[""] * len(PHASES), "", ""])
    body = markdown_table(["dataset", "student", "product", *(f"{p} ms" for p in PHASES), "step ms", "vs Base"], rows)
    body += (f"\n\n{args.backbone} student, batches of 64 sub-sessions, β 0.5, T 3, factored store of m untrained "
             f"teachers (logit-mean ensemble); milliseconds per batch, median of {args.rounds} passes after a warm-up "
             "pass.  \"soft-label read\" is the teachers' joint logit product plus its tempered softmax; "
             "\"loss forward\" is Base's fused CE or the fused Eq. 19–20 loss (Σ r log r cached, as in training).")
    write_result(args.output, "Soft-label student step, phase by phase", body)


if __name__ == "__main__":
    main()
