"""Soft-label store modes: bytes per row, the student's extra time per epoch, error vs exact.

    python bench/softlabel_store.py [--datasets lastfm,yelp] [--teacher-epochs 5]

Two GRU4Rec teachers (CSRec-M, m = 2, logit-mean ensemble) are trained for --teacher-epochs
epochs, then each store mode is built and compared with the exact soft label softmax(e / T)
computed in float64 from the teachers' own outputs.  Two times are reported: the time to rebuild
softmax(e / T) for one epoch's batches ("read"), and a whole student epoch with the store against
a Base student epoch in the same process (what a user waits for).  The factored store is read
with both logit products (float32, bfloat16).  For Yelp, the dense mode (|I| float16 per row,
9 GB in all) is built and read on the first --dense-rows rows only (no student epoch); its bytes
per row are exact either way.
Writes bench/results/softlabel_store.md.
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
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402
from csrec.methods import MethodConfig, TeacherPool, build_store, teacher_specs  # noqa: E402
from csrec.methods.run import SoftLabelLoss  # noqa: E402
from csrec.methods.softlabels import SoftLabelStore  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.training import BatchMaker, TrainConfig, train_model  # noqa: E402

TEMPERATURES = (1.0, 3.0, 9.0)


def exact_probs(store: SoftLabelStore, rows: np.ndarray, temperature: float) -> torch.Tensor:
    reps = torch.from_numpy(store.arrays["reps"][:, rows]).double()
    tables = torch.from_numpy(store.arrays["tables"]).double()
    e = torch.bmm(reps, tables.transpose(1, 2)).mean(0)
    return torch.softmax(e / temperature, -1)


def mean_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    p, q = p.double(), q.double().clamp_min(1e-300)
    return float(torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p)).sum(-1).mean())


def epoch_read_seconds(store: SoftLabelStore, maker: BatchMaker, temperature: float, max_rows: int | None,
                       precision: str = "float32") -> float:
    """Seconds to rebuild softmax(e / T) for one epoch's batches (what a student adds per epoch)."""
    rng = np.random.default_rng(0)
    total = 0.0
    for batch in maker.batches(rng):
        rows = batch.rows if max_rows is None else batch.rows % max_rows
        started = time.perf_counter()
        with torch.no_grad():
            store.teacher_probs(rows, temperature, precision)
        total += time.perf_counter() - started
    return total


def student_epoch_seconds(data, store: SoftLabelStore | None, precision: str = "float32", repeats: int = 1) -> float:
    """Train seconds of one GRU4Rec student epoch (Base when ``store`` is None; else β and T at their defaults)."""
    best = float("inf")
    for _ in range(repeats):
        torch.manual_seed(0)
        student = build_backbone("gru4rec", data.n_items, data.max_len)
        defaults = MethodConfig()
        loss = None if store is None else SoftLabelLoss(store, beta=defaults.beta, temperature=defaults.temperature,
                                                        precision=precision)
        kwargs = {} if loss is None else {"loss_fn": loss}
        best = min(best, train_model(student, data, TrainConfig(epochs=1, progress=False), **kwargs).history[0].seconds_train)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,yelp")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--dense-rows", type=int, default=20000)
    parser.add_argument("--sample-rows", type=int, default=4000, help="rows on which the error is measured")
    parser.add_argument("--repeats", type=int, default=2, help="student epochs timed per store (the fastest is kept)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    pool = TeacherPool(RESULTS / "runs" / "teacher-pool")
    rows_out = []
    for name in args.datasets.split(","):
        data = csrec.load_dataset(name, data_dir=args.data_dir)
        config = csrec.make_config(name, "gru4rec", "csrec-m", data_dir=args.data_dir, epochs=args.teacher_epochs,
                                   patience=0, progress=False)
        teachers = [pool.get(s, data, config.train).model for s in teacher_specs(config)]
        maker = BatchMaker(data, None, 64, torch.device("cpu"))
        n_rows = data.n_train_targets
        sample = np.random.default_rng(0).choice(n_rows, size=min(args.sample_rows, n_rows), replace=False)
        factored = build_store(teachers, data, "factored")
        # (label, fixed T or None, store, precision of the read)
        modes = [("factored", None, factored, "float32"), ("factored", None, factored, "bfloat16")]
        dense_rows = n_rows if name == "lastfm" else min(args.dense_rows, n_rows)
        for t in TEMPERATURES:
            for k in (10, 100):
                modes.append((f"topk K={k}", t, build_store(teachers, data, "topk", temperature=t, top_k=k), "float32"))
        dense = build_store(teachers, data, "dense") if dense_rows == n_rows else _dense_prefix(factored, dense_rows)
        modes.append(("dense float16", None, dense, "float32"))
        base_epoch = student_epoch_seconds(data, None, repeats=args.repeats)
        for label, fixed_t, store, precision in modes:
            limit = None if label != "dense float16" or dense_rows == n_rows else dense_rows
            # A whole student epoch at T = 3 (what a user waits for), where the store covers every row.
            epoch = None
            if limit is None and (fixed_t is None or fixed_t == 3.0) and label != "topk K=10":
                epoch = student_epoch_seconds(data, store, precision, repeats=args.repeats)
            for t in TEMPERATURES if fixed_t is None else (fixed_t,):
                rows = sample if limit is None else sample[sample < limit]
                exact = exact_probs(factored, rows, t)
                approx = store.teacher_probs(torch.as_tensor(rows), t, precision)
                read = epoch_read_seconds(store, maker, t, limit, precision)
                bytes_per_row = (data.n_items * 2.0) if label == "dense float16" else store.bytes_per_row()
                show_epoch = epoch is not None and t == 3.0
                rows_out.append([
                    name, label, precision if label == "factored" else "", f"{t:g}", f"{bytes_per_row:,.0f}",
                    f"{100 * bytes_per_row / (data.n_items * 2):.1f}%", f"{mean_kl(exact, approx):.2e}",
                    f"{read:.2f}", f"{100 * read / base_epoch:.0f}%",
                    f"{epoch:.2f}" if show_epoch else "", f"{100 * (epoch - base_epoch) / base_epoch:+.0f}%" if show_epoch else "",
                ])
                print(rows_out[-1], flush=True)
        rows_out.append([name, f"(Base student epoch {base_epoch:.2f} s, {n_rows:,} rows, {data.n_items:,} items)",
                         "", "", "", "", "", "", "", "", ""])
    body = markdown_table(["dataset", "store", "product", "T", "bytes per row", "vs dense fp16", "mean KL(exact ‖ store)",
                           "read s per epoch", "read vs Base epoch", "student epoch s (T = 3)",
                           "student epoch vs Base"], rows_out)
    body += (f"\n\nTeachers: 2 × GRU4Rec trained {args.teacher_epochs} epochs (logit-mean ensemble). Exact = float64 "
             "softmax(e/T) from the teachers' representations; the error is averaged over "
             f"{args.sample_rows} random training targets. Dense stores ensembled logits as float16 (any T). "
             "\"Read\" is the time to rebuild softmax(e/T) for one epoch's batches; \"student epoch\" is a whole "
             "GRU4Rec student training epoch with β = 0.5, T = 3 (the fastest of "
             f"{args.repeats}), against the fastest of {args.repeats} Base epochs in the same process. "
             "\"product\" is the factored store's logit arithmetic (MethodConfig.store_precision; "
             "\"auto\" picks bfloat16 on hardware with native support, as here).")
    write_result("softlabel_store", "Soft-label store modes", body)


def _dense_prefix(factored: SoftLabelStore, n_rows: int) -> SoftLabelStore:
    """A dense float16 store of the first n_rows rows (built like build_store's dense mode)."""
    rows = torch.arange(n_rows)
    reps = torch.from_numpy(factored.arrays["reps"][:, :n_rows]).float()
    e = torch.bmm(reps, torch.from_numpy(factored.arrays["tables"]).float().transpose(1, 2)).mean(0)
    meta = dict(factored.meta, n_rows=n_rows)
    del rows
    return SoftLabelStore("dense", {"values": e.numpy().astype(np.float16)}, meta)


if __name__ == "__main__":
    main()
