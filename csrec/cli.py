"""Command line: ``python -m csrec fit ...`` and ``python -m csrec stats ...``.

Every field of DataConfig, TrainConfig and MethodConfig is a flag (``--max-len 20``,
``--lr 0.001``, ``--beta 0.5``); backbone hyperparameters go through ``--model key=value``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from csrec.data.dataset import DataConfig, dataset_names, format_stats, load_dataset
from csrec.errors import CSRecError
from csrec.methods import METHODS, MethodConfig
from csrec.models import backbone_names
from csrec.training import TrainConfig


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif base in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=base, default=None, help=f"default: {f.default!r}")
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, dest=f.name, type=_float_list, default=None, help="comma-separated numbers")


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


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
    parser = argparse.ArgumentParser(prog="csrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train and test one model (Base, SoftRec or a CSRec variant)")
    fit.add_argument("--dataset", default="synthetic", help=f"one of: {', '.join(dataset_names())}")
    fit.add_argument("--backbone", default="gru4rec", help=f"one of: {', '.join(backbone_names())}")
    fit.add_argument("--method", default="base", help=f"one of: {', '.join(METHODS)}")
    fit.add_argument("--model", action="append", metavar="KEY=VALUE", help="backbone hyperparameter override")
    fit.add_argument("--output", default=None, help="result JSON path (ranks go to the .npz beside it)")
    _add_dataclass_flags(fit, DataConfig, skip=("name",))
    _add_dataclass_flags(fit, TrainConfig)
    _add_dataclass_flags(fit, MethodConfig, skip=("name",))

    stats = sub.add_parser("stats", help="print a dataset's statistics after preprocessing")
    stats.add_argument("--dataset", default="synthetic", help=f"one of: {', '.join(dataset_names())}")
    _add_dataclass_flags(stats, DataConfig, skip=("name",))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stats":
            return _stats(args)
        return _fit(args)
    except CSRecError as exc:
        print(f"csrec: error: {exc}", file=sys.stderr)
        return 2


def _collect(args, cls, skip=()) -> dict:
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _stats(args) -> int:
    data = load_dataset(DataConfig(name=args.dataset, **_collect(args, DataConfig, ("name",))))
    print(format_stats(data.stats()))
    print(json.dumps(data.stats(), indent=2))
    return 0


def _fit(args) -> int:
    from csrec.experiment import fit, make_config

    kwargs = {}
    for cls in (DataConfig, TrainConfig, MethodConfig):
        kwargs.update(_collect(args, cls, ("name",)))
    config = make_config(args.dataset, args.backbone, args.method, model=parse_key_values(args.model, "--model") or None, **kwargs)
    data = load_dataset(config.data)
    print(format_stats(data.stats()), file=sys.stderr)
    result = fit(config=config, data=data)
    print(result.summary())
    print(json.dumps(result.test.metrics, indent=2))
    if args.output:
        path = result.save(args.output)
        print(f"result written to {path} (per-sequence ranks in {path.with_suffix('.npz')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
