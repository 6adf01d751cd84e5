"""Where a soft-label student's extra time goes: one training step, phase by phase, Base vs CSRec.

    python bench/student_profile.py [--datasets lastfm,yelp] [--backbone gru4rec] [--teachers 1,2,4]
                                    [--precisions fp32,bf16] [--batches 40] [--rounds 3]

For each dataset and training precision, the same training batches (64 sub-sessions each) are
stepped through by a Base student (one-hot CE) and by a CSRec student reading a factored
soft-label store of m teachers (β 0.5, T 3, the store's product in the same precision), exactly
as training runs them (the step under csrec.models.precision.autocast), with a timer around each
phase: the backbone's forward, the output-layer product, the soft-label read (the teachers' logit
product and tempered softmax, read chunk by chunk inside the fused loss and timed there), the
rest of the fused loss's forward (which also forms the gradient), the backward pass and the
optimiser step.  The teachers are untrained (timing does not depend on their weights).
CPU milliseconds per batch (process time, so waiting for a core on a shared machine is not
counted) are the median over --rounds passes over --batches batches, after a warm-up pass; the rounds of all variants alternate, so they see the same machine load.  1 torch
thread unless OMP_NUM_THREADS says otherwise.  Writes bench/results/<--output>.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA_DIR, markdown_table, write_result  # noqa: E402

import csrec  # noqa: E402
from csrec.methods.config import MethodConfig  # noqa: E402
from csrec.methods.losses import fused_student_loss  # noqa: E402
from csrec.methods.run import SoftLabelLoss  # noqa: E402
from csrec.methods.softlabels import build_store  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.models.precision import autocast  # noqa: E402
from csrec.training import BatchMaker  # noqa: E402

# CPU time of the process: with one torch thread it is the work each phase did, without the time
# the process waited for a core while other jobs shared the machine (wall time counts both).
CLOCK = time.process_time
PHASES = ("backbone forward", "output product", "soft-label read", "loss forward", "backward", "optimiser step")


def profile(model, optimiser, batches, precision: str, loss: SoftLabelLoss | None = None) -> dict[str, float]:
    """Seconds per phase summed over ``batches`` (one pass)."""
    seconds = dict.fromkeys(PHASES, 0.0)
    model.train()
    device = torch.device("cpu")

    def timed(phase, fn):
        started = CLOCK()
        out = fn()
        seconds[phase] += CLOCK() - started
        return out

    for batch in batches:
        with autocast(precision, device):
            reps, targets = timed("backbone forward", lambda: model.training_representations(batch.inputs, batch.targets))
            logits = timed("output product", lambda: model.item_scores(reps))
            if loss is None:
                value = timed("loss forward", lambda: fused_student_loss(logits, targets - 1, 0.0)[0])
            else:
                read = loss.reader(batch.rows)

                def timed_read(lo, hi, read=read):
                    return timed("soft-label read", lambda: read(lo, hi))

                cached = torch.zeros(len(targets))  # Σ r log r comes from the per-row cache in training
                before = seconds["soft-label read"]
                value = timed("loss forward", lambda: fused_student_loss(
                    logits, targets - 1, loss.beta, timed_read, cached)[0])
                seconds["loss forward"] -= seconds["soft-label read"] - before
            extra = model.extra_loss()
            if extra is not None:
                value = value + extra
        optimiser.zero_grad(set_to_none=True)
        timed("backward", value.backward)
        timed("optimiser step", optimiser.step)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,yelp")
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--teachers", default="1,2,4", help="comma list of m")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of TrainConfig.precision values")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--output", default="student_profile", help="result name under bench/results/")
    args = parser.parse_args()
    counts = [int(m) for m in args.teachers.split(",")]
    precisions = args.precisions.split(",")
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
        stores = {m: build_store(teachers[:m], data, "factored") for m in counts}
        variants = []  # (label, precision, loss, model, optimiser)
        for precision in precisions:
            for m in [None, *counts]:
                torch.manual_seed(0)
                student = build_backbone(args.backbone, data.n_items, data.max_len)
                loss = None if m is None else SoftLabelLoss(stores[m], beta=MethodConfig.beta, temperature=MethodConfig.temperature, precision=precision)
                variants.append(("Base" if m is None else f"CSRec, m = {m}", precision, loss, student,
                                 torch.optim.Adam(student.parameters(), lr=1e-3)))
        per_round = {i: [] for i in range(len(variants))}
        for round_ in range(args.rounds + 1):  # the first round warms up
            for i, (_, precision, loss, student, optimiser) in enumerate(variants):
                result = profile(student, optimiser, batches, precision, loss)
                if round_:
                    per_round[i].append(result)
        base_total = {}
        for i, (label, precision, loss, _, _) in enumerate(variants):
            ms = {p: 1000 * statistics.median(r[p] for r in per_round[i]) / len(batches) for p in PHASES}
            total = sum(ms.values())
            base_total.setdefault(precision, total)
            rows.append([name, label, precision, *(f"{ms[p]:.1f}" for p in PHASES), f"{total:.1f}",
                         f"{100 * (total - base_total[precision]) / base_total[precision]:+.0f}%"])
            print(rows[-1], flush=True)
        rows.append([name, f"({len(batches)} batches, {n_rows / len(batches):.0f} targets per batch, "
                           f"{data.n_items:,} items)", "", *[""] * len(PHASES), "", ""])
    body = markdown_table(["dataset", "student", "precision", *(f"{p} ms" for p in PHASES), "step ms",
                           "vs Base (same precision)"], rows)
    body += (f"\n\n{args.backbone} student, batches of 64 sub-sessions, β 0.5, T 3, factored store of m untrained "
             f"teachers (logit-mean ensemble); CPU milliseconds per batch (process time), median of {args.rounds} passes after a warm-up "
             "pass, the variants' passes alternating.  \"soft-label read\" is the teachers' joint logit product plus "
             "its tempered softmax, computed chunk by chunk inside the fused loss, or, where every row's soft label "
             "fits in SoftLabelLoss's cache (TrainConfig.soft_label_cache_gib, 1 GiB: Last.FM, not Yelp), the "
             "lookup of the batch's rows (the cache is built in the warm-up pass); \"loss forward\" is the rest of "
             "the fused loss (student softmax, cross-entropies and the gradient it keeps for the backward; Σ r log r "
             "cached, as in training), for Base the same fused function without teachers.")
    write_result(args.output, "Soft-label student step, phase by phase", body)


if __name__ == "__main__":
    main()
