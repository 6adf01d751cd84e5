"""Why are CSRec-D's p = 0.8 teachers weaker than Base?  The same two teachers trained under
csrec's default protocol and the authors', with and without early stopping, picking their best
epoch on the subset's validation items or on every sub-session's.

    python bench/teacher_diagnosis.py [--settings default,default-full,default-noes,authors,authors-full]
                                      [--backbone gru4rec] [--data-dir DIR]

Each setting trains CSRec-D's two teachers of Last.FM (model seed 1000, p = 0.8, subsample seeds
2000 and 2001, as ``make_config(..., "csrec-d")`` names them) through the teacher pool that
``bench/lastfm_methods.py`` uses (bench/results/runs/teacher-pool), so a setting that a methods run
already trained costs nothing.  Per setting: each teacher's own test Recall@10 with its best and
last epoch, the test Recall@10 of the two teachers' ensemble (as that protocol's student reads it:
mean of logits for csrec's default, weighted mean of tempered probabilities for the authors'),
and Base under the same protocol (from bench/results/runs/ when ``lastfm_methods.py`` ran it).

Leave-one-out takes each sub-session's test answer from the end of that same sub-session, so a
teacher trained on a p-subsample has seen the earlier items of 80% of the test sub-sessions and
none of the other 20%.  The second table splits each teacher's test Recall@10 into the
sub-sessions of its own subsample and the rest, and the ensemble's by how many of its teachers
saw the sub-session (both, one, none).
Writes bench/results/teacher_diagnosis.md after every setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import csrec  # noqa: E402
from common import DEFAULT_DATA_DIR, RESULTS, markdown_table, write_result  # noqa: E402
from csrec.evaluation import evaluate  # noqa: E402
from csrec.metrics import per_sequence_metrics  # noqa: E402
from csrec.methods import TeacherPool, teacher_specs  # noqa: E402
from csrec.methods.ensemble import TeacherEnsemble  # noqa: E402

#: name → (protocol, TrainConfig overrides, what it changes)
SETTINGS = {
    "default": ("csrec", {"epochs": 200, "patience": 10}, "csrec's default: early stopping (patience 10)"),
    "default-full": ("csrec", {"epochs": 200, "patience": 10, "subset_validation": False},
                     "csrec's default, best epoch on every sub-session's validation item"),
    "default-noes": ("csrec", {"epochs": 80, "patience": 0}, "csrec's default without early stopping (80 epochs)"),
    "authors": ("authors", {}, "the authors' protocol: 80 epochs, no early stopping"),
    "authors-full": ("authors", {"subset_validation": False},
                     "the authors' protocol, best epoch on every sub-session's validation item"),
}


def base_recall(backbone: str, protocol: str) -> str:
    """Base's test Recall@10 (%) under ``protocol`` from lastfm_methods.py's runs on disk."""
    # csrec's default runs are untagged, or tagged "csrec" when rerun beside a variant
    for tag in (["-csrec", ""] if protocol == "csrec" else [f"-{protocol}"]):
        runs = [json.loads(p.read_text()) for p in sorted((RESULTS / "runs").glob(f"lastfm-{backbone}-base{tag}-seed*.json"))]
        if runs:
            break
    else:
        return "(not run here)"
    values = np.array([r["test"]["recall@10"] for r in runs]) * 100
    return f"{values.mean():.2f}" + (f" ± {values.std(ddof=1):.2f} ({len(values)} seeds)" if len(values) > 1 else "")


def run_setting(name: str, backbone: str, data, pool: TeacherPool, data_dir: str) -> dict:
    protocol, overrides, _ = SETTINGS[name]
    config = csrec.make_config("lastfm", backbone, "csrec-d", data_dir=data_dir, protocol=protocol, progress=False,
                               **overrides)
    started = time.perf_counter()
    specs = teacher_specs(config)
    teachers = [pool.get(spec, data, config.train) for spec in specs]
    method = config.method
    ensemble = TeacherEnsemble([t.model for t in teachers], method.ensemble, method.temperature,
                               None if method.ensemble_weights is None else list(method.ensemble_weights))
    device = config.train.torch_device()
    result = evaluate(ensemble, data, "test", device=device)
    seen = np.zeros((len(specs), data.n_sequences), dtype=bool)
    for k, spec in enumerate(specs):
        seen[k, data.subsample(spec.subsample, spec.subsample_seed)] = True
    hits = [_hits(evaluate(t.model, data, "test", device=device).ranks) for t in teachers]
    split = {"teachers": [{"seen": float(h[s].mean() * 100), "unseen": float(h[~s].mean() * 100),
                           "n_unseen": int((~s).sum())} for h, s in zip(hits, seen)]}
    ensemble_hits, seen_by = _hits(result.ranks), seen.sum(axis=0)
    split["ensemble"] = {int(n): [float(ensemble_hits[seen_by == n].mean() * 100), int((seen_by == n).sum())]
                         for n in range(len(specs), -1, -1) if (seen_by == n).any()}
    return {"setting": name, "protocol": protocol, "teachers": [t.info for t in teachers], "ensemble": result.metrics,
            "split": split,
            "ensemble_mode": method.ensemble, "weights": method.ensemble_weights, "wall_s": time.perf_counter() - started,
            "train": {k: getattr(config.train, k) for k in ("lr", "batch_size", "batch_unit", "epochs", "patience",
                                                              "subset_validation")}}


def _hits(ranks: np.ndarray) -> np.ndarray:
    return per_sequence_metrics(ranks, (10,))["recall@10"]


def split_table(results: list[dict]) -> str:
    """Each teacher's test Recall@10 on the sub-sessions it trained on vs the rest, and the ensemble's."""
    rows = []
    for r in results:
        t, e = r["split"]["teachers"], r["split"]["ensemble"]
        rows.append([r["setting"], *[f"{x['seen']:.2f} / {x['unseen']:.2f} ({x['n_unseen']:,})" for x in t],
                     *[f"{e[n][0]:.2f} ({e[n][1]:,})" if n in e else "" for n in (2, 1, 0)]])
    return markdown_table(["setting", "teacher 1: seen / unseen sub-sessions (n unseen)", "teacher 2",
                           "ensemble: seen by both (n)", "seen by one", "seen by neither"], rows)


def table(results: list[dict], backbone: str) -> str:
    rows = []
    for r in results:
        t = r["teachers"]
        train = r["train"]
        stopping = f"patience {train['patience']}" if train["patience"] else f"none ({train['epochs']} epochs, best kept)"
        rows.append([
            r["setting"], r["protocol"], f"lr {train['lr']:g}, {train['batch_size']} {train['batch_unit']}", stopping,
            "subset" if train["subset_validation"] else "all sub-sessions",
            *[f"{x['test']['recall@10'] * 100:.2f} ({x['best_epoch']}/{x['epochs_run']})" for x in t],
            f"{r['ensemble']['recall@10'] * 100:.2f}", base_recall(backbone, r["protocol"]),
            f"{sum(x['seconds'] for x in t):.0f}",
        ])
    body = markdown_table(["setting", "protocol", "optimisation", "early stopping", "best epoch picked on",
                           "teacher 1 test Recall@10 % (best/run epochs)", "teacher 2", "ensemble test Recall@10 %",
                           "Base test Recall@10 %, same protocol", "teachers' training s (when trained here)"], rows)
    return body + (f"\n\n{backbone}, Last.FM; CSRec-D's teachers: model seed 1000, p = 0.8 subsamples with seeds 2000 "
                   "and 2001.  The ensemble is what that protocol's student reads: csrec's default the mean of logits, "
                   "the authors' the 0.5/0.5 mean of softmax(e / 3).  Training seconds are the pool's record of the "
                   "run that trained the teacher (a machine shared with other jobs).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    parser.add_argument("--backbone", default="gru4rec")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--pool", default=str(RESULTS / "runs" / "teacher-pool"))
    args = parser.parse_args()
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"teacher_diagnosis.py: unknown setting {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
    data = csrec.load_dataset("lastfm", data_dir=args.data_dir)
    pool = TeacherPool(args.pool)
    results = []
    for name in names:
        results.append(run_setting(name, args.backbone, data, pool, args.data_dir))
        print(json.dumps({k: results[-1][k] for k in ("setting", "ensemble")}), flush=True)
        body = (table(results, args.backbone) + "\n\nTest Recall@10 % split by whether the teacher trained on the "
                "sub-session whose last item is the test answer (leave-one-out: the earlier items of the same "
                "sub-session are its training targets):\n\n" + split_table(results))
        write_result("teacher_diagnosis", "CSRec-D's p = 0.8 teachers under each protocol (Last.FM)", body)


if __name__ == "__main__":
    main()
