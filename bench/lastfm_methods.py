"""Base, SoftRec and CSRec-M/D/T students on Last.FM, next to the paper's Table 3.

    python bench/lastfm_methods.py [--backbones gru4rec,sasrec] [--methods base,...] [--seeds 3]
                                   [--beta 0.5] [--temperature 3] [--rerun]
                                   [--model KEY=VALUE ...] [--patience 10] [--tag NAME]
                                   [--protocol authors --tag authors]
                                   [--set ensemble=logits --tag authors-logits]

Base and CSRec-M run with several seeds (mean ± std); seed index i trains the student with seed
2022 + i and CSRec-M's teachers with seeds 1000 + 10·i + k.  SoftRec, CSRec-D and CSRec-T run
once.  Teachers live in one on-disk pool, so CSRec-T's side teacher is CSRec-D's first teacher.

Each run's result is kept as bench/results/runs/lastfm-<backbone>-<method>-seed<seed>.json; a run
whose JSON exists with the same β, T and α is read back instead of rerun (``--rerun`` forces it),
so the script can be resumed and invoked per backbone.  The table in
bench/results/lastfm_methods.md covers every backbone with runs on disk at this setting.

A variant of the defaults (``--model dropout=0.2``, ``--patience 20``, ``--protocol authors``: the
authors' batches, lr, epoch counts without early stopping, ensemble weights and CSRec-T max, see
csrec.experiment.protocol; ``--set KEY=VALUE`` for any other training or method parameter, such as
one of the preset's choices undone) needs a ``--tag``: its runs
are kept as lastfm-<backbone>-<method>-<tag>-seed<seed>.json and tabulated into
bench/results/lastfm_methods_<tag>.md, beside (never mixed with) the default setting's.
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
from csrec.cli import parse_key_values  # noqa: E402
from csrec.errors import CSRecError  # noqa: E402
from csrec.experiment.protocol import PROTOCOLS  # noqa: E402
from csrec.methods.config import MethodConfig  # noqa: E402
from csrec.methods import TeacherPool  # noqa: E402
from csrec.methods.run import run_method  # noqa: E402,F401
from csrec.report.paper import METHODS, paper_table3  # noqa: E402

# Paper Table 3, Last.FM: (Recall@10, NDCG@10) in % per backbone and method.
PAPER = paper_table3("lastfm")
MULTI_SEED = ("base", "csrec-m")


def run_path(backbone: str, method: str, seed: int, tag: str = "") -> Path:
    return RESULTS / "runs" / f"lastfm-{backbone}-{method}{'-' + tag if tag else ''}-seed{seed}.json"


def same_setting(saved: dict, args: argparse.Namespace) -> bool:
    method = saved["config"]["method"]
    train = saved["config"]["train"]
    if train["patience"] != args.resolved["patience"] or train.get("batch_unit", "sequences") != args.resolved["batch_unit"]:
        return False
    if any(saved["config"]["model"].get(k) != v for k, v in args.model.items()):
        return False
    sections = [saved["config"][name] for name in ("train", "method", "data")]
    if any(next((s[k] for s in sections if k in s), None) != _jsonable(v) for k, v in args.settings.items()):
        return False
    return (method["name"] == "base" or
            (abs(method["beta"] - args.beta) < 1e-9 and abs(method["temperature"] - args.temperature) < 1e-9
             and abs(method["alpha"] - args.alpha) < 1e-9))


def _jsonable(value):
    """A --set value as a saved config holds it (tuples come back from JSON as lists)."""
    return json.loads(json.dumps(value))


def _key_values(pairs: list[str], flag: str) -> dict:
    try:
        return parse_key_values(pairs, flag)
    except CSRecError as exc:
        raise SystemExit(f"lastfm_methods.py: {exc}") from None


def load_run(path: Path, args: argparse.Namespace) -> dict | None:
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return saved if same_setting(saved, args) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="gru4rec,sasrec")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds for Base and CSRec-M")
    parser.add_argument("--beta", type=float, default=MethodConfig.beta)
    parser.add_argument("--temperature", type=float, default=MethodConfig.temperature)
    parser.add_argument("--alpha", type=float, default=MethodConfig.alpha)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default: 200; the protocol's own count)")
    parser.add_argument("--rerun", action="store_true", help="rerun runs whose JSON is already on disk")
    parser.add_argument("--tabulate-only", action="store_true", help="run nothing; rebuild the table from the runs on disk")
    parser.add_argument("--pool", default=str(RESULTS / "runs" / "teacher-pool"))
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="backbone hyperparameter for every run (repeatable; needs --tag)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: 10; the protocol's own)")
    parser.add_argument("--protocol", default="csrec", choices=PROTOCOLS, help="training preset (default: csrec)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="training or method parameter for every run, e.g. ensemble=logits (repeatable; needs --tag)")
    parser.add_argument("--tag", default="", help="name of a variant setting (its own run files and table)")
    args = parser.parse_args()
    args.model = _key_values(args.model, "--model")
    args.settings = _key_values(args.settings, "--set")
    if (args.model or args.settings or args.patience not in (None, 10) or args.protocol != "csrec") and not args.tag:
        raise SystemExit("lastfm_methods.py: --model / --set / --patience / --protocol other than the defaults need a --tag")
    explicit = {k: v for k, v in (("epochs", args.epochs), ("patience", args.patience)) if v is not None}
    if args.protocol == "csrec":
        explicit = {"epochs": 200, "patience": 10, **explicit}
    explicit = {**explicit, **args.settings}
    args.overrides = explicit
    try:
        resolved = csrec.make_config("lastfm", "gru4rec", "base", protocol=args.protocol, **explicit).train
    except CSRecError as exc:
        raise SystemExit(f"lastfm_methods.py: --set: {exc}") from None
    args.resolved = {"patience": resolved.patience, "batch_unit": resolved.batch_unit, "lr": resolved.lr,
                     "batch_size": resolved.batch_size, "epochs": resolved.epochs}
    pool = TeacherPool(args.pool)
    data = None
    for backbone in [] if args.tabulate_only else args.backbones.split(","):
        for method in args.methods.split(","):
            for i in range(args.seeds if method in MULTI_SEED else 1):
                path = run_path(backbone, method, 2022 + i, args.tag)
                if not args.rerun and load_run(path, args) is not None:
                    print(f"{path.name}: on disk, not rerun", flush=True)
                    continue
                if data is None:
                    data = csrec.load_dataset("lastfm", data_dir=args.data_dir)
                config = csrec.make_config(
                    "lastfm", backbone, method, data_dir=args.data_dir, seed=2022 + i, protocol=args.protocol,
                    beta=args.beta, temperature=args.temperature, alpha=args.alpha, teacher_seed=1000 + 10 * i,
                    model=args.model or None, progress=False, **args.overrides,
                )
                result = csrec.fit(config=config, data=data, pool=pool)
                result.save(path)
                print(result.summary(), flush=True)
    write_table(args)


def write_table(args: argparse.Namespace) -> None:
    """Tabulate every backbone's runs on disk at this β, T, α (those of other settings are left out)."""
    backbones = list(dict.fromkeys(args.backbones.split(",") + list(PAPER)))
    rows = []
    for backbone in backbones:
        for method in METHODS:
            runs = []
            for i in range(64):
                saved = load_run(run_path(backbone, method, 2022 + i, args.tag), args)
                if saved is None:
                    break
                runs.append(saved)
            if not runs:
                continue
            recall = np.array([r["test"]["recall@10"] for r in runs]) * 100
            ndcg = np.array([r["test"]["ndcg@10"] for r in runs]) * 100
            fmt = lambda v: f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else "")  # noqa: E731
            paper = PAPER.get(backbone, {}).get(method)
            teachers = runs[0]["teachers"]
            rows.append([
                backbone, method, len(runs), fmt(recall), fmt(ndcg),
                "" if paper is None else paper[0], "" if paper is None else paper[1],
                "; ".join(f"{t['test']['recall@10'] * 100:.2f}" for t in teachers),
                "" if not runs[0].get("ensemble") else f"{runs[0]['ensemble']['recall@10'] * 100:.2f}",
                f"{np.mean([r['timings']['train_epoch_s'] for r in runs]):.1f}",
                f"{np.mean([r['timings']['total_s'] for r in runs]):.0f}",
            ])
    body = markdown_table(["backbone", "method", "seeds", "Recall@10 %", "NDCG@10 %", "paper Recall@10",
                           "paper NDCG@10", "teachers' own test Recall@10 %",
                           "teachers' ensemble test Recall@10 %", "student s per train epoch",
                           "wall s per run (teachers trained in it incl.)"], rows)
    variant = "".join(f", {k} = {v}" for k, v in {**args.model, **args.settings}.items())
    train = args.resolved
    if args.protocol == "authors":
        protocol = ("the authors' protocol (csrec.experiment.protocol): weighted probability ensemble "
                    "(CSRec-M GRU4Rec 0.1/0.9, SASRec 0.2/0.8, CSRec-D 0.5/0.5), CSRec-T's running max, KL(r ‖ P_f); "
                    f"lr {train['lr']:g}, batches of about {train['batch_size']} targets, the backbone's fixed epoch count "
                    "without early stopping, the best-validation epoch kept. ")
    else:
        protocol = ("logit-mean ensemble, KL(r ‖ P_f) as the authors' code, factored soft-label store; "
                    f"lr {train['lr']:g}, {train['batch_size']} sub-sessions per batch, early stopping "
                    f"(patience {train['patience']}) on validation NDCG@10. ")
    body += (f"\n\nSetting: β = {args.beta}, T = {args.temperature}, α = {args.alpha}, m = 2, p = 0.8{variant}, "
             + protocol +
             "Seed i: student seed 2022 + i, CSRec-M teachers 1000 + 10·i + k. "
             "Teachers come from one pool: a run reuses teachers an earlier run trained, so wall time "
             "counts only the teachers trained in that run.")
    title = "Last.FM, Base / SoftRec / CSRec-M/D/T students vs the paper's Table 3"
    if args.tag:
        write_result(f"lastfm_methods_{args.tag}", f"{title} (variant {args.tag})", body)
    else:
        write_result("lastfm_methods", title, body)


if __name__ == "__main__":
    main()
