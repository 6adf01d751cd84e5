"""Scale: a synthetic dataset of over 1M interactions and 50k items through the whole pipeline.

    python bench/scale.py [--users 60000] [--items 60000] [--mean-length 20] [--backbone gru4rec]
                          [--precision fp32] [--output scale]

The defaults keep 50,546 items and 1.56M interactions after 5-core filtering (the generator's
long tail loses about a sixth of the catalogue; 50,000 / 50,000 keeps only 42k items).

Wall and CPU seconds and peak RSS after each stage (CPU seconds are the process's own: with one
torch thread they leave out the time it waited for a core on a shared machine): preprocessing, one teacher epoch, building the factored
soft-label store (m = 2 teachers; the second teacher is a copy, since only the store's size and
build time matter here), one CSRec student epoch, one full-ranking test pass.  Nothing holds a
dense sequences × items matrix: training scores one batch of targets at a time, the store keeps
m·d floats per row, evaluation ranks a bounded chunk of sequences at a time.
``--precision`` is TrainConfig.precision for both epochs (the student's soft-label product
follows it).  Writes bench/results/<--output>.md (default scale.md).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

import csrec  # noqa: E402
from common import markdown_table, peak_rss_mib, write_result  # noqa: E402
from csrec.methods.config import MethodConfig  # noqa: E402
from csrec.data import SyntheticConfig  # noqa: E402
from csrec.evaluation import evaluate  # noqa: E402
from csrec.methods import SoftLabelLoss, build_store  # noqa: E402
from csrec.models import build_backbone  # noqa: E402
from csrec.training import TrainConfig, train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=60_000)
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--mean-length", type=float, default=20.0)
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="fp32", help="TrainConfig.precision: fp32, bf16 or auto")
    parser.add_argument("--output", default="scale", help="result name: bench/results/<output>.md")
    args = parser.parse_args()
    rows = []

    cpu = [time.process_time()]

    def stage(name: str, started: float, note: str = "") -> None:
        now = time.process_time()
        rows.append([name, f"{time.perf_counter() - started:.1f}", f"{now - cpu[0]:.1f}", f"{peak_rss_mib():,.0f}", note])
        cpu[0] = now
        print(rows[-1], flush=True)

    started = time.perf_counter()
    synthetic = SyntheticConfig(n_users=args.users, n_items=args.items, n_clusters=64, mean_length=args.mean_length)
    data = csrec.load_dataset(csrec.DataConfig(name="synthetic", synthetic=synthetic, use_cache=False))
    s = data.stats()
    stage("preprocess (generate, 5-core, windows)", started,
          f"{s['interactions']:,} interactions, {s['items']:,} items, {s['sub_sessions']:,} sub-sessions, {s['train_targets']:,} targets")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = TrainConfig(epochs=1, patience=0, batch_size=args.batch_size, progress=False, precision=args.precision)
    teacher = build_backbone(args.backbone, data.n_items, data.max_len)
    started, cpu[0] = time.perf_counter(), time.process_time()
    train_model(teacher, data, train)
    stage("one teacher epoch (train + valid pass)", started)
    started, cpu[0] = time.perf_counter(), time.process_time()
    store = build_store([teacher, copy.deepcopy(teacher)], data, "factored", device=device)
    stage("build factored soft-label store (m = 2)", started,
          f"{store.nbytes / 2**20:,.0f} MiB, {store.bytes_per_row():.0f} B/row (dense fp16 would be "
          f"{data.n_train_targets * data.n_items * 2 / 2**30:,.0f} GiB)")
    student = build_backbone(args.backbone, data.n_items, data.max_len)
    started, cpu[0] = time.perf_counter(), time.process_time()
    train_model(student, data, train, SoftLabelLoss(store, beta=MethodConfig.beta, temperature=MethodConfig.temperature, precision=args.precision))
    stage("one CSRec student epoch (train + valid pass)", started)
    started, cpu[0] = time.perf_counter(), time.process_time()
    evaluate(student, data, "test", device=device)
    stage("one full-ranking test pass", started, f"{data.n_sequences:,} sequences × {data.n_items:,} items")
    body = markdown_table(["stage", "seconds", "CPU seconds", "peak RSS so far (MiB)", "notes"], rows)
    body += (f"\n\nBackbone {args.backbone}, batch {args.batch_size} sub-sessions, device {device}, training precision "
             f"{args.precision} ({train.resolved_precision()} here), {torch.get_num_threads()} torch thread(s).")
    write_result(args.output, f"Scale: {s['interactions']:,} interactions, {s['items']:,} items ({train.resolved_precision()})", body)


if __name__ == "__main__":
    main()
