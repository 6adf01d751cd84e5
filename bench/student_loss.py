"""The student's loss step alone: Base CE vs Eq. 19–20 materialised vs the fused soft-label loss.

    python bench/student_loss.py [--rows 1216] [--items 3646] [--repeats 20] [--dtype float32] [--output NAME]

Forward + backward of the loss over one batch of random logits (the default shape is a Last.FM
batch: 64 sub-sessions ≈ 1,216 targets × 3,646 items), 1 torch thread unless OMP_NUM_THREADS
says otherwise; best of 3 rounds of --repeats calls each.  ``--dtype bfloat16`` gives the logits
the dtype they have under mixed precision (the losses still reduce in float32).  The CSRec-T rows
are the main teacher's Eq. 16–18 against random side-teacher logits and noise rows.  The last four
rows start one step earlier, from the representations h [rows × 64] and the output table W
[items × 64] (under bfloat16 autocast with ``--dtype bfloat16``), and include the output layer's
products: the logits h·Wᵀ materialised and then the fused loss (what training did before), against
:func:`fused_output_loss`, which forms the logits chunk by chunk inside the loss.  Prints a table;
with ``--output`` also writes it to bench/results/<output>.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_result  # noqa: E402
from csrec.methods.losses import (  # noqa: E402
    fused_output_loss,
    fused_robust_teacher_loss,
    robust_teacher_loss,
    fused_student_loss,
    soft_label_from_probs,
    soft_label_self_information,
    student_loss,
    student_loss_from_teacher_probs,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1216)
    parser.add_argument("--items", type=int, default=3646)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--output", help="also write the table to bench/results/<output>.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    logits = torch.randn(args.rows, args.items).to(getattr(torch, args.dtype)).requires_grad_()
    probs = torch.softmax(3 * torch.randn(args.rows, args.items), -1)
    targets = torch.randint(0, args.items, (args.rows,))
    cached = soft_label_self_information(probs, targets)
    steps = {
        "Base: torch's cross-entropy": lambda: F.cross_entropy(logits.float(), targets),
        "Base: fused_student_loss without teachers": lambda: fused_student_loss(logits, targets, 0.0)[0],
        "Eq. 19–20, r materialised (autograd graph)":
            lambda: student_loss(logits, targets, soft_label_from_probs(probs, targets), 0.5)[0],
        "Eq. 19–20 fused, Σ r log r computed": lambda: student_loss_from_teacher_probs(logits, targets, probs, 0.5)[0],
        "Eq. 19–20 fused, Σ r log r cached (training)":
            lambda: student_loss_from_teacher_probs(logits, targets, probs, 0.5, r_log_r=cached)[0],
    }
    reps = (0.3 * torch.randn(args.rows, 64)).requires_grad_()
    table = (0.3 * torch.randn(args.items, 64)).requires_grad_()
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")  # noqa: E731
    teacher = lambda lo, hi: probs[lo:hi]  # noqa: E731

    def layer_step(fused: bool, soft: bool):
        def step():
            with autocast():
                if fused:
                    return fused_output_loss(reps, table, None, targets, 0.5 if soft else 0.0,
                                             teacher if soft else None, cached if soft else None)[0]
                return fused_student_loss(reps @ table.T, targets, 0.5 if soft else 0.0,
                                          teacher if soft else None, cached if soft else None)[0]
        return step

    side_logits = torch.randn(args.rows, args.items)
    noise_rows = torch.randn(args.rows, args.items).requires_grad_()
    noise_max = torch.randn(args.items).requires_grad_()
    steps.update({
        "CSRec-T teacher, Eq. 16–18 through autograd": lambda: robust_teacher_loss(
            logits, side_logits, targets, noise_rows, noise_max, 0.5)[0],
        "CSRec-T teacher, Eq. 16–18 fused (fused_robust_teacher_loss)": lambda: fused_robust_teacher_loss(
            logits, side_logits, targets, noise_rows, noise_max, 0.5)[0],
        "Base from h, W: logits h·Wᵀ materialised, then the fused loss": layer_step(False, False),
        "Base from h, W: fused_output_loss (output layer inside)": layer_step(True, False),
        "Eq. 19–20 cached from h, W: logits materialised, then the fused loss": layer_step(False, True),
        "Eq. 19–20 cached from h, W: fused_output_loss": layer_step(True, True),
    })
    rows = []
    for name, step in steps.items():
        best = float("inf")
        for _ in range(3):
            step().backward()
            started = time.perf_counter()
            for _ in range(args.repeats):
                step().backward()
            best = min(best, (time.perf_counter() - started) / args.repeats)
        rows.append([name, f"{1000 * best:.1f}"])
        print(rows[-1], flush=True)
    title = f"{args.rows} rows × {args.items} items, {args.dtype} logits, {torch.get_num_threads()} torch thread(s)"
    body = markdown_table(["loss", "ms per forward + backward"], rows)
    print(f"{title}\n\n{body}")
    if args.output:
        write_result(args.output, f"The loss step alone ({title})",
                     body + f"\n\nBest of 3 rounds of {args.repeats} forward + backward calls each; random logits, "
                     "teacher probabilities softmax(3·N(0, 1)), β = 0.5.")


if __name__ == "__main__":
    main()
