"""Command line: ``python -m csrec fit ...``, ``python -m csrec stats ...`` and
``python -m csrec recommend ...``.

Every field of DataConfig, TrainConfig and MethodConfig is a flag (``--max-len 20``,
``--lr 0.001``, ``--beta 0.5``) with the description in :data:`FIELD_HELP`; backbone
hyperparameters go through ``--model key=value``.  Errors raised by the library name Python
parameters (``path=``, ``max_len``); :func:`cli_terms` rewrites them as the flags a command-line
user typed (``--path``, ``--max-len``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import typing
from pathlib import Path

import numpy as np

from csrec import artifacts
from csrec.atomic import write_atomic
from csrec.data.dataset import DATASETS, SYNTHETIC_MAX_LEN, DataConfig, dataset_names, format_stats, load_dataset
from csrec.data.preprocess import WINDOWINGS
from csrec.data.readers import FORMATS, utf8_text
from csrec.errors import CSRecError, DataError
from csrec.methods import METHODS, MethodConfig
from csrec.experiment.protocol import PROTOCOLS
from csrec.methods.config import ENSEMBLES, NOISE_COLUMN_MAX, STORE_MODES, STORE_PRECISIONS
from csrec.methods.losses import KL_DIRECTIONS
from csrec.metrics import summarize
from csrec.models import backbone_names
from csrec.training import BATCH_UNITS, TRAIN_PRECISIONS, TrainConfig

DESCRIPTION = (
    "csrec: confident soft labels for sequential recommenders (Wu et al., TOIS 2024). "
    "Train and test one model (fit), print a dataset's statistics (stats), or ask a saved model "
    "for top-k recommendations (recommend)."
)

#: One description per dataclass field that becomes a flag (tests check that none is missing);
#: the default is appended from the dataclass, except where it is None and the text says what
#: None means.
FIELD_HELP = {
    # DataConfig
    "data_dir": "directory holding the named datasets (default: $CSREC_DATA_DIR, else ./data)",
    "path": "an interaction file to use instead of a named dataset (--dataset is then ignored)",
    "format": "format of --path: csv (header with user_id or session_id, item_id; optional rating, "
    "timestamp), lines (one user per line: uid item item ...), inter (RecBole atomic file); "
    "detected from the extension or the first line when omitted",
    "max_len": "sub-session length L, at least 3 (default: the dataset's value in the paper: "
    + ", ".join(f"{name} {spec.max_len}" for name, spec in DATASETS.items())
    + f", synthetic {SYNTHETIC_MAX_LEN})",
    "windowing": "how a long history is cut into sub-sessions: authors = end-anchored windows plus "
    "a head window that may overlap the next one (the paper's code, its Table 2); disjoint = no "
    "overlap",
    "min_user_interactions": "k-core filter: drop users with fewer interactions, at least 3",
    "min_item_interactions": "k-core filter: drop items with fewer interactions",
    "min_window": "--windowing disjoint keeps a leftover head window of at least this many items",
    "positive_threshold": "a rating at or above this makes an answer positive, for Recall+/NDCG+ "
    "(binary 0/1 ratings: 1 is positive)",
    "cache_dir": "prepared-data cache directory (default: $CSREC_CACHE_DIR, else ~/.cache/csrec)",
    "use_cache": "read and write the prepared-data cache",
    # TrainConfig
    "epochs": "most training epochs",
    "batch_size": "sub-sessions per batch; each contributes all its next-item targets",
    "batch_unit": "what --batch-size counts: whole sub-sessions, or targets (sub-sessions packed to "
    "about that many next-item targets, as the authors' 64 samples per step)",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "patience": "stop after this many epochs without a better validation metric; 0 = never stop early",
    "subset_validation": "a teacher trained on a p-subsample picks its best epoch on that subset's validation "
                         "items (true, the authors' code) or on every sub-session's (false)",
    "select_metric": "validation metric that picks the best epoch",
    "seed": "random seed of the model's initialisation and the batch order",
    "device": "where to train: auto (cuda when available, else cpu), cpu, cuda or cuda:N",
    "precision": "arithmetic of the training step: fp32; bf16 (bfloat16 autocast of the matrix "
    "products; evaluation stays float32); auto (bf16 where the device multiplies bfloat16 natively)",
    "grad_clip": "clip the gradient norm to this value (default: no clipping)",
    "progress": "print one line per epoch to stderr",
    "soft_label_cache_gib": "GiB a soft-label student may use to keep every training target's soft label "
    "between epochs (float32; bfloat16 under bf16 soft-label products) instead of rebuilding it in every "
    "batch; 0 = always rebuild",
    # MethodConfig
    "beta": "β of Eq. 20: weight of the soft-label KL term, in [0, 1]; 0 trains as Base",
    "temperature": "T of Eq. 19: temperature of the soft labels",
    "num_teachers": "m: number of teachers of CSRec-M and CSRec-D",
    "subsample": "p: fraction of sub-sessions each CSRec-D teacher, and CSRec-T's side teacher, "
    "trains on, in (0, 1]",
    "alpha": "α of Eq. 17: CSRec-T's weight of KL(P_g2 ‖ P_g1), in [0, 1]",
    "expectation_term": "CSRec-T: keep Eq. 16's expectation term; --no-expectation-term is the "
    "Fig. 10 ablation",
    "noise_column_max": "CSRec-T: max_k h(k,j) of Eq. 16 computed exactly (the paper) or as the authors' running max",
    "ensemble": "how teachers are combined: logits = mean of logits (Alg. 1-2), probs = mean of "
    "tempered probabilities (the authors' code)",
    "ensemble_weights": "with --ensemble probs: one weight per teacher, comma-separated, e.g. 0.1,0.9 "
    "as the authors (default: equal)",
    "kl_direction": "code = KL(r ‖ P_f) as the authors' code; paper = KL(P_f ‖ r) as Eq. 20",
    "store": "how the teachers' soft labels are kept: factored (each teacher's representations, "
    "exact for any T), dense (float16 logits per target), topk (the --store-top-k largest "
    "probabilities at a fixed T)",
    "store_top_k": "probabilities kept per target with --store topk",
    "store_precision": "arithmetic of the factored store's logit product: auto (bfloat16 where the "
    "hardware does it natively), float32 or bfloat16",
    "teacher_seed": "CSRec-M teacher k trains with seed --teacher-seed + k",
    "subsample_seed": "CSRec-D teacher k draws its sub-sessions with seed --subsample-seed + k",
    "softrec_scale": "SoftRec: the popularity prior's logits span [-scale, scale]",
}

# Flags with a fixed set of values (tests check that each value here passes its validate()).
FIELD_CHOICES = {
    "format": FORMATS,
    "windowing": WINDOWINGS,
    "select_metric": tuple(sorted(summarize(np.zeros(1, dtype=np.int64)))),
    "precision": TRAIN_PRECISIONS,
    "batch_unit": BATCH_UNITS,
    "noise_column_max": NOISE_COLUMN_MAX,
    "ensemble": ENSEMBLES,
    "kl_direction": KL_DIRECTIONS,
    "store": STORE_MODES,
    "store_precision": STORE_PRECISIONS,
}

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

RECOMMEND_FORMATS = ("ids", "jsonl")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        help_text = FIELD_HELP.get(f.name, "")
        if f.default is not None:
            shown = ("on" if f.default else "off") if isinstance(f.default, bool) else f.default
            help_text = f"{help_text} (default: {shown})".lstrip()
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name == "device":
            parser.add_argument(flag, dest=f.name, type=_device, default=None, metavar="{auto,cpu,cuda,cuda:N}", help=help_text)
        elif base in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=base, default=None, choices=FIELD_CHOICES.get(f.name), help=help_text)
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, dest=f.name, type=_float_list, default=None, metavar="X,Y,...", help=help_text)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _device(text: str) -> str:
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_key_values(pairs: list[str] | None, flag: str) -> dict:
    """``["dropout=0.2", "ensemble-weights=[0.1, 0.9]", "name=x"]`` → ``{"dropout": 0.2, ...}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as strings;
    dashes in keys become underscores, as in the dataclass fields they set.  Shared by every
    ``KEY=VALUE`` flag of the command-line tools (``--model``, ``--set``, ``--synthetic``).
    """
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CSRecError(f"{flag} expects key=value, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csrec", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{fit,stats,recommend}")

    fit = sub.add_parser("fit", help="train and test one model (Base, SoftRec or a CSRec variant)",
                         description="Train and test one model; prints the test metrics.")
    _add_dataset_flag(fit)
    fit.add_argument("--backbone", default="gru4rec", type=str.lower, choices=backbone_names(),
                     help="sequential recommender to train (default: gru4rec)")
    fit.add_argument("--method", default="base", choices=METHODS,
                     help="base (cross-entropy), softrec (popularity prior) or a CSRec variant (default: base)")
    fit.add_argument("--protocol", default="csrec", choices=PROTOCOLS,
                     help="training preset: csrec's defaults, or the authors' code (batches of 64 targets, lr 1e-3, "
                          "fixed epochs with the best-validation epoch kept, weighted probability ensemble, "
                          "CSRec-T's running max); flags given explicitly win (default: csrec)")
    fit.add_argument("--model", action="append", metavar="KEY=VALUE",
                     help="backbone hyperparameter, repeatable, e.g. --model embedding_dim=32 --model num_layers=1")
    fit.add_argument("--output", default=None, metavar="FILE",
                     help="write the result JSON here; beside it go the trained model (NAME.model.pt, for "
                     "csrec recommend --model and csrec.load) and the per-sequence test ranks (NAME.npz)")
    _add_dataclass_flags(fit, DataConfig, skip=("name",))
    _add_dataclass_flags(fit, TrainConfig)
    _add_dataclass_flags(fit, MethodConfig, skip=("name",))

    stats = sub.add_parser(
        "stats", help="print a dataset's statistics after preprocessing",
        description="Print a dataset's statistics after preprocessing: one line and a JSON object per "
        "windowing (both authors and disjoint unless --windowing picks one).",
    )
    _add_dataset_flag(stats)
    _add_dataclass_flags(stats, DataConfig, skip=("name",))

    recommend = sub.add_parser(
        "recommend", help="top-k recommendations of a saved model for histories read from a file",
        description="Top-k recommendations of a saved model.  The input holds one history per line: "
        "the user's raw item ids (the ids of the dataset the model was trained on), oldest first, "
        "separated by spaces or commas; blank lines and lines starting with # are skipped.  Output: "
        "one line per history, in input order.",
    )
    recommend.add_argument("--model", required=True, metavar="FILE",
                           help="model file saved by csrec (NAME.model.pt beside a result NAME.json)")
    recommend.add_argument("--input", required=True, metavar="FILE", help="histories, one per line (see above)")
    recommend.add_argument("--k", type=_positive_int, default=10, help="items per list (default: 10)")
    recommend.add_argument("--output", default=None, metavar="FILE", help="write the lists here instead of stdout")
    recommend.add_argument("--output-format", default="ids", choices=RECOMMEND_FORMATS,
                           help='ids: the item ids separated by spaces, best first; jsonl: one JSON object per '
                           'history, {"line": input line, "items": [...], "scores": [...]} (default: ids)')
    recommend.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=True,
                           help="leave the items of a history out of its list (default: on)")
    recommend.add_argument("--unknown", default="error", choices=("error", "skip"),
                           help="an item id the model was not trained on: error stops with its line, "
                           "skip drops it from its history (default: error)")
    recommend.add_argument("--device", default="cpu", type=_device, metavar="{auto,cpu,cuda,cuda:N}",
                           help="where to score (default: cpu)")
    return parser


def _add_dataset_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", choices=dataset_names(),
                        help="named dataset, found under --data-dir (default: synthetic, the embedded "
                        "generated data); use --path for any other file")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stats":
            return _stats(args)
        if args.command == "recommend":
            return _recommend(args)
        return _fit(args)
    except CSRecError as exc:
        flags = {dest: "--" + dest.replace("_", "-") for dest in vars(args) if dest != "command"}  # every flag is spelled so
        print(f"csrec: error: {cli_terms(str(exc), flags)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``csrec recommend ... | head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# --- library wording → command-line wording ----------------------------------------------------------
_NOT_BEFORE = r"(?<![\w./'\"-])"  # not inside a path, a quoted value or a longer name


def cli_terms(message: str, flags: dict[str, str]) -> str:
    """Rewrite the Python parameter names in a library error as command-line flags.

    ``flags`` maps a parameter name to its flag (``{"data_dir": "--data-dir"}``).  Rewritten:
    ``name='value'`` (→ ``--name value``), ``name=`` (→ ``--name``), any name with an underscore,
    and a bare name that opens the message before "must" (``epochs must be at least 1``).  Other
    plain words are left alone: "model" or "path" in a sentence is no parameter.
    """

    def flag(match: re.Match, suffix: str = "") -> str:
        return flags[match[1]] + suffix if match[1] in flags else match[0]

    message = re.sub(_NOT_BEFORE + r"(\w+)='([^']*)'", lambda m: flag(m, f" {m[2]}"), message)
    message = re.sub(_NOT_BEFORE + r"(\w+)=(?![\w'\"\[{])", flag, message)
    message = re.sub(_NOT_BEFORE + r"([a-z]\w*_\w+)(?![\w/'\"-]|\.\w)", flag, message)
    return re.sub(r"^(\w+)(?= (?:\(\w\) )?must\b)", flag, message)


# --- commands -------------------------------------------------------------------------------------
def _collect(args, cls, skip=()) -> dict:
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _stats(args) -> int:
    fields = _collect(args, DataConfig, ("name",))
    windowings = [fields.pop("windowing")] if "windowing" in fields else list(WINDOWINGS)
    stats = {}
    for windowing in windowings:
        stats[windowing] = load_dataset(DataConfig(name=args.dataset, windowing=windowing, **fields)).stats()
        print(format_stats(stats[windowing]))
    print(json.dumps(stats, indent=2))
    return 0


def _fit(args) -> int:
    from csrec.experiment import fit, make_config

    kwargs = {}
    for cls in (DataConfig, TrainConfig, MethodConfig):
        kwargs.update(_collect(args, cls, ("name",)))
    config = make_config(args.dataset, args.backbone, args.method, model=parse_key_values(args.model, "--model") or None,
                         protocol=args.protocol, **kwargs)
    data = load_dataset(config.data)
    print(format_stats(data.stats()), file=sys.stderr)
    result = fit(config=config, data=data)
    print(result.summary())
    print(json.dumps(result.test.metrics, indent=2))
    if args.output:
        path = result.save(args.output)
        print(f"result written to {path} (model in {artifacts.model_path_for(path)}, per-sequence ranks in "
              f"{path.with_suffix('.npz')})", file=sys.stderr)
    return 0


def _recommend(args) -> int:
    device = args.device
    if device == "auto":
        device = TrainConfig(device="auto").torch_device()
    model = artifacts.load(args.model, device=device)
    lines, histories = read_histories(args.input)
    try:
        out = model.recommend(histories, k=args.k, exclude_seen=args.exclude_seen, unknown=args.unknown)
    except artifacts.HistoryError as exc:
        remedy = " (--unknown skip drops such items)" if exc.remedy else ""
        raise CSRecError(f"{args.input}, line {lines[exc.index]}: {exc.reason}{remedy}") from None
    if args.output_format == "jsonl":
        rows = (
            json.dumps({"line": line, "items": items, "scores": [round(s, 6) for s in scores]})
            for line, items, scores in zip(lines, out.items.tolist(), out.scores.tolist())
        )
    else:
        rows = (" ".join(map(str, items)) for items in out.items.tolist())
    text = "".join(row + "\n" for row in rows)
    if args.output:
        write_atomic(args.output, text)
        print(f"{len(histories):,} lists of {args.k} items written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


_INTEGER = re.compile(r"[+-]?\d+")  # stricter than int(), which also takes "1_000" and " 7"


def read_histories(path: str) -> tuple[list[int], list[list[int]]]:
    """(input line of each history, the histories) from a file of one history per line."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    lines, histories = [], []
    with utf8_text(path), open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.replace(",", " ").split()
            if not tokens or tokens[0].startswith("#"):
                continue
            bad = next((t for t in tokens if not _INTEGER.fullmatch(t)), None)
            if bad is not None:
                raise DataError(f"{path}, line {line_number}: non-integer item id {bad!r}")
            histories.append([int(token) for token in tokens])
            lines.append(line_number)
    if not histories:
        raise DataError(f"{path}: no history in the file (one per line: item ids separated by spaces or commas)")
    return lines, histories


if __name__ == "__main__":
    sys.exit(main())
