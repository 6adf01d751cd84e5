"""Training and evaluation speed: seconds per epoch and per full-ranking pass, per backbone.

    python bench/throughput.py [--datasets lastfm] [--backbones all] [--epochs 3] [--warmup 1]
                               [--precisions fp32] [--eval-items 100000] [--output throughput]

For each dataset, backbone and training precision (TrainConfig.precision): --warmup untimed
epochs, then the median of --epochs epochs (training and validation timed apart), training
targets per second, and the full-ranking test pass (always scored in float32); then the same
backbone as a CSRec-M student (β = 0.5, T = 3, m = 2) reading a soft-label store (one student per
--stores mode: ``factored`` computes the teachers' ensemble on the fly, exactly; ``topk`` reads
K = 100 precomputed tempered probabilities per target) built from two teachers of its own architecture (initialised, not trained: their accuracy does not
change the student's cost) in the same precision, timed the same way.  Epochs alternate: each
round trains one epoch of every (precision, Base / student) model in turn, so all of them see
the same machine load and their ratios are side by side.  Then one
full-ranking pass over a synthetic catalogue of --eval-items items (bounded memory: scores are
computed for a chunk of sequences at a time).  With --materialised, Base is also trained with the
loss on materialised logits (``model.item_scores`` then :func:`fused_student_loss`, the training
loss before the output layer moved into the fused loss), in the same rounds, for the cost of the
[rows × items] logits and their gradient.  Peak RSS is the process maximum.
Writes bench/results/<--output>.md.
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
from common import DEFAULT_DATA_DIR, markdown_table, peak_rss_mib, random_eval_split, write_result  # noqa: E402
from csrec.methods.config import MethodConfig  # noqa: E402
from csrec.evaluation import evaluate, rank_answers  # noqa: E402
from csrec.methods import build_store  # noqa: E402
from csrec.methods.losses import fused_student_loss  # noqa: E402
from csrec.methods.run import SoftLabelLoss  # noqa: E402
from csrec.models import backbone_names, build_backbone  # noqa: E402
from csrec.training import TrainConfig, train_model  # noqa: E402


def one_epoch(model, data, precision: str, loss_fn=None) -> tuple[float, float, float]:
    """Train and validation wall seconds of one more epoch of ``model`` (a fresh optimiser each
    call), and the CPU seconds of the whole call (train + valid; see the note on shared machines)."""
    kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
    config = TrainConfig(epochs=1, patience=0, progress=False, precision=precision)
    cpu_started = time.process_time()
    log = train_model(model, data, config, **kwargs).history[0]
    return log.seconds_train, log.seconds_valid, time.process_time() - cpu_started


def materialised_logits_loss(model, batch):
    """Base's loss on the whole [rows × items] logits (the output layer outside the fused loss)."""
    reps, targets = model.training_representations(batch.inputs, batch.targets)
    loss, logs, _ = fused_student_loss(model.item_scores(reps), targets - 1, beta=0.0)
    extra = model.extra_loss()
    return (loss if extra is None else loss + extra), logs


def table(rows: list[list], precisions: list[str], args, device) -> str:
    """The Markdown table of ``rows`` with the notes on how they were measured."""
    student_columns = [] if args.no_student else [
        column for store in args.stores.split(",")
        for column in (f"CSRec-M student ({store} store) s per train epoch (vs Base, same precision)",
                       f"CSRec-M student ({store} store) CPU s per epoch (vs Base)")]
    materialised = ["Base on materialised logits: s per train epoch (fused output layer's speed-up)"] if args.materialised else []
    body = markdown_table(["dataset", "backbone", "precision", "s per train epoch", "s per valid pass",
                           "s per epoch (train+valid)", f"speed-up vs {precisions[0]}", "CPU s per epoch (train+valid)",
                           f"CPU speed-up vs {precisions[0]}", "training targets / s", *materialised, *student_columns,
                           "s per test pass", "test sequences"], rows)
    body += ("\n\nBatch 64 sub-sessions, one forward pass per sub-session computes every "
             f"target; device {device}; {torch.get_num_threads()} torch threads; median of {args.epochs} epochs after "
             f"{args.warmup} warm-up epoch(s), the epochs of every model alternating round by round.  The CSRec-M "
             "student reads a store of two teachers in its training precision (factored: the store's product and the "
             "fused loss's chunked teacher softmax, kept for every row after the first epoch where all rows fit in "
             f"SoftLabelLoss's cache of {args.cache_gib:g} GiB (float32 entries, bfloat16 under bf16; the default 1 GiB "
             "holds Last.FM's, not Yelp's); factored:stream: rebuilt for every batch, never kept; "
             "topk: K = 100 stored probabilities per target).  Validation and test passes score in float32.  \"CPU s\" is "
             "the process's CPU time over the whole epoch call (train, valid pass, optimiser set-up): with one torch "
             "thread it leaves out the time the process waited for a core, so on a shared machine it is the steadier "
             "figure; wall seconds are what a user waits on a machine of their own only when nothing else runs.")
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm")
    parser.add_argument("--backbones", default="all")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eval-items", type=int, default=100_000, help="0 skips the synthetic full-ranking pass")
    parser.add_argument("--eval-sequences", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs before the timed ones")
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of TrainConfig.precision values, timed side by side (the first is the speed-up's reference)")
    parser.add_argument("--output", default="throughput", help="result name: bench/results/<output>.md")
    parser.add_argument("--no-student", action="store_true", help="skip the CSRec-M student timing")
    parser.add_argument("--stores", default="factored",
                        help="comma list of soft-label store modes, one CSRec-M student each (factored, topk, dense; "
                             "MODE:stream never keeps the soft labels of all rows, see SoftLabelLoss)")
    parser.add_argument("--cache-gib", type=float, default=TrainConfig().soft_label_cache_gib,
                        help="TrainConfig.soft_label_cache_gib of the students that keep their soft labels")
    parser.add_argument("--materialised", action="store_true",
                        help="also train Base with the loss on materialised [rows × items] logits, side by side")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    backbones = backbone_names() if args.backbones == "all" else args.backbones.split(",")
    # Training picks CUDA when present (TrainConfig.device="auto"); evaluation and the store
    # build follow it, so a GPU run times the GPU end to end.
    device = TrainConfig().torch_device()
    precisions = args.precisions.split(",")
    rows = []
    for name in args.datasets.split(","):
        data = csrec.load_dataset(name, data_dir=args.data_dir)
        for backbone in backbones:
            models = {}  # (precision, role) -> (model, loss function or None)
            for precision in precisions:
                torch.manual_seed(0)
                models[(precision, "base")] = (build_backbone(backbone, data.n_items, data.max_len), None)
                if args.materialised:
                    torch.manual_seed(0)
                    models[(precision, "base-materialised")] = (build_backbone(backbone, data.n_items, data.max_len),
                                                                materialised_logits_loss)
                if not args.no_student:
                    torch.manual_seed(1)
                    teachers = [build_backbone(backbone, data.n_items, data.max_len) for _ in range(2)]
                    for variant in args.stores.split(","):
                        mode, _, how = variant.partition(":")
                        store = build_store(teachers, data, mode, temperature=MethodConfig.temperature, device=device)
                        cache = {"cache_bytes": 0 if how == "stream" else int(args.cache_gib * (1 << 30))}
                        loss = SoftLabelLoss(store, beta=MethodConfig.beta, temperature=MethodConfig.temperature,
                                             precision=precision, **cache)
                        torch.manual_seed(2)
                        models[(precision, f"student-{variant}")] = (build_backbone(backbone, data.n_items, data.max_len),
                                                                     loss)
            seconds = {key: [] for key in models}
            for round_ in range(args.warmup + args.epochs):
                for key, (model, loss) in models.items():
                    train_s, valid_s, cpu_s = one_epoch(model, data, key[0], loss)
                    print(f"{name} {backbone} {key[0]} {key[1]} round {round_}: {train_s:.2f} + {valid_s:.2f} s "
                          f"(CPU {cpu_s:.2f} s)", flush=True)
                    if round_ >= args.warmup:
                        seconds[key].append((train_s, valid_s, cpu_s))
            base_total, base_cpu = {}, {}
            for precision in precisions:
                base = np.array(seconds[(precision, "base")])
                train_s, valid_s, cpu_s = (float(np.median(base[:, i])) for i in range(3))
                base_total[precision], base_cpu[precision] = train_s + valid_s, cpu_s
                test = evaluate(models[(precision, "base")][0], data, "test", device=device)
                student_cells = []
                if args.materialised:
                    old = float(np.median(np.array(seconds[(precision, "base-materialised")])[:, 0]))
                    student_cells.append(f"{old:.2f} ({old / train_s:.2f}×)")
                for mode in [] if args.no_student else args.stores.split(","):
                    student = np.array(seconds[(precision, f"student-{mode}")])
                    s_train, s_cpu = float(np.median(student[:, 0])), float(np.median(student[:, 2]))
                    student_cells += [f"{s_train:.2f} ({100 * (s_train - train_s) / train_s:+.0f}%)",
                                      f"{s_cpu:.2f} ({100 * (s_cpu - cpu_s) / cpu_s:+.0f}%)"]
                rows.append([name, backbone, precision, f"{train_s:.2f}", f"{valid_s:.2f}", f"{train_s + valid_s:.2f}",
                             f"{base_total[precisions[0]] / base_total[precision]:.2f}×", f"{cpu_s:.2f}",
                             f"{base_cpu[precisions[0]] / cpu_s:.2f}×", f"{data.n_train_targets / train_s:,.0f}",
                             *student_cells, f"{test.seconds:.2f}", f"{len(test.ranks):,}"])
                print(rows[-1], flush=True)
            # Written after every backbone, so a long run that is stopped keeps its finished rows.
            write_result(args.output, f"Training and evaluation throughput ({args.datasets})",
                         table(rows, precisions, args, device))
    # Full ranking over a large synthetic catalogue: memory stays bounded by the chunk size.
    body = table(rows, precisions, args, device)
    if args.eval_items > 0:
        n = args.eval_sequences
        split = random_eval_split(n, args.eval_items)
        model = build_backbone("sasrec", args.eval_items, 20).to(device)
        rss_before = peak_rss_mib()
        started = time.perf_counter()
        rank_answers(model, split, device=device)
        big_s = time.perf_counter() - started
        body += (f"\n\nFull ranking over a synthetic catalogue of {args.eval_items:,} items: {n:,} sequences (SASRec) in "
                 f"{big_s:.2f} s ({n / big_s:,.0f} sequences/s); peak RSS {peak_rss_mib():,.0f} MiB for the whole process "
                 f"({rss_before:,.0f} MiB before this pass).")
    body += f"\n\nPeak RSS of the whole run: {peak_rss_mib():,.0f} MiB."
    write_result(args.output, f"Training and evaluation throughput ({args.datasets})", body)


if __name__ == "__main__":
    main()
