"""The command line: ``fit`` writes its result, ``stats`` prints statistics, errors exit 2 cleanly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import typing

import numpy as np
import pytest

from csrec.cli import main


def test_fit_end_to_end_writes_result(synthetic_csv, tmp_path, capsys):
    out = tmp_path / "runs" / "fit.json"
    argv = [
        "fit", "--path", str(synthetic_csv), "--backbone", "sasrec", "--epochs", "2", "--batch-size", "32",
        "--lr", "0.005", "--seed", "3", "--device", "cpu", "--no-progress", "--max-len", "12",
        "--model", "embedding_dim=16", "--model", "num_layers=1", "--output", str(out),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "sasrec / base" in captured.out and "NDCG@10" in captured.out
    printed = json.loads(captured.out[captured.out.index("{"):])
    assert "ndcg@10" in printed
    assert "sub-sessions" in captured.err and str(out) in captured.err
    saved = json.loads(out.read_text())
    assert saved["test"] == pytest.approx(printed)
    assert saved["config"]["backbone"] == "sasrec"
    assert saved["config"]["model"]["embedding_dim"] == 16 and saved["config"]["model"]["num_layers"] == 1
    assert saved["config"]["data"]["path"] == str(synthetic_csv) and saved["config"]["data"]["max_len"] == 12
    assert saved["config"]["train"]["lr"] == 0.005 and saved["config"]["train"]["seed"] == 3
    assert saved["config"]["train"]["progress"] is False
    assert saved["epochs_run"] == 2 and saved["dataset"]["max_len"] == 12
    ranks = np.load(out.with_suffix(".npz"))["test_ranks"]
    assert len(ranks) == saved["dataset"]["sub_sessions"]


def test_stats_prints_both_windowings_unless_one_is_chosen(synthetic_csv, capsys):
    assert main(["stats", "--path", str(synthetic_csv), "--max-len", "10", "--min-window", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("interactions (authors windows, max_len 10): ")
    assert lines[1].startswith("interactions (disjoint windows, max_len 10): ")
    stats = json.loads(out[out.index("{"):])
    assert list(stats) == ["authors", "disjoint"]
    assert stats["authors"]["windowing"] == "authors" and stats["disjoint"]["windowing"] == "disjoint"
    assert stats["disjoint"]["leaked_test_targets"] == 0 < stats["authors"]["leaked_test_targets"]
    for windowing, line in zip(stats, lines):
        assert f"{stats[windowing]['sub_sessions']:,} sub-sessions" in line

    assert main(["stats", "--path", str(synthetic_csv), "--max-len", "10", "--windowing", "disjoint", "--min-window", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("interactions (disjoint windows, max_len 10): ")
    assert json.loads(out[out.index("{"):]) == {"disjoint": stats["disjoint"]}


@pytest.mark.realdata
def test_stats_on_lastfm(real_file, capsys):
    data_dir = real_file("lastfm/lastfm_small.csv").parents[1]
    assert main(["stats", "--dataset", "lastfm", "--data-dir", str(data_dir), "--no-use-cache"]) == 0
    authors, disjoint = capsys.readouterr().out.splitlines()[:2]
    assert "authors windows" in authors and "3,173 sub-sessions from 1,090 users, 3,646 items, 57,826 interactions" in authors
    assert "458 test targets" in authors
    assert "disjoint windows" in disjoint and "3,035 sub-sessions" in disjoint and " 0 test targets" in disjoint


@pytest.fixture
def bad_csv(write_file):
    return write_file("bad.csv", "session_id,item_id\n1,2\n1,3,4\n")


@pytest.fixture
def binary_file(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("user_id,item_id,title\n1,2,caf\xe9\n".encode("latin-1"))
    return path


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["stats", "--path", "{bad}"], ["{bad}", "line 3"]),
        (["fit", "--path", "{bad}", "--epochs", "1"], ["{bad}", "line 3"]),
        (["stats", "--path", "{binary}"], ["{binary}, line 2: not UTF-8 text (byte 0xe9"]),
        (["fit", "--path", "{binary}"], ["{binary}, line 2: not UTF-8 text"]),
        (["stats", "--path", "{missing}"], ["{missing}", "no such file"]),
        (["stats", "--max-len", "2"], ["--max-len must be at least 3", "got 2"]),
        (["stats", "--min-user-interactions", "2"], ["--min-user-interactions must be at least 3"]),
        (["stats", "--windowing", "disjoint", "--min-window", "1"], ["--min-window must be at least 3"]),
        (["stats", "--min-item-interactions", "100000"],
         ["removed every interaction", "lower --min-user-interactions / --min-item-interactions"]),
        (["stats", "--dataset", "lastfm", "--data-dir", "{tmp}"],
         ["lastfm_small.csv", "not found", "set by --data-dir or $CSREC_DATA_DIR"]),
        (["fit", "--epochs", "0"], ["--epochs must be at least 1, got 0"]),
        (["fit", "--lr", "0"], ["--lr must be positive"]),
        (["fit", "--beta", "2"], ["--beta must lie in [0, 1]"]),
        (["fit", "--method", "csrec-m", "--num-teachers", "0"], ["--num-teachers (m) must be at least 1"]),
        (["fit", "--method", "csrec-m", "--ensemble-weights", "0.1,0.9"],
         ["--ensemble-weights apply to --ensemble probs only"]),
        (["fit", "--store-top-k", "0"], ["--store-top-k must be at least 1"]),
        (["fit", "--model", "embedding_dim"], ["--model expects key=value", "'embedding_dim'"]),
        (["fit", "--model", "bogus=1"], ["bogus", "embedding_dim"]),
    ],
)
def test_bad_input_is_one_line_in_cli_terms(argv, fragments, bad_csv, binary_file, tmp_path, capsys):
    values = {"bad": str(bad_csv), "binary": str(binary_file), "missing": str(tmp_path / "missing.csv"), "tmp": str(tmp_path)}
    argv = [a.format(**values) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("csrec: error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    for fragment in fragments:
        assert fragment.format(**values) in captured.err, fragment
    python_names = [a.dest for a in _options(argv[0]) if "_" in a.dest]
    assert not [name for name in python_names if re.search(rf"(?<![\w/]){name}\b", captured.err)], captured.err
    assert not re.search(r"\w=[\s)]", captured.err)  # no "pass path=" / "data_dir= or"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", "--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
        (["stats", "--dataset", "nope"], "invalid choice: 'nope' (choose from 'synthetic', 'lastfm'"),
        (["fit", "--backbone", "transformer"], "argument --backbone: invalid choice: 'transformer'"),
        (["fit", "--method", "magic"], "argument --method: invalid choice: 'magic'"),
        (["stats", "--windowing", "sliding"], "invalid choice: 'sliding' (choose from 'authors', 'disjoint')"),
        (["stats", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["fit", "--kl-direction", "up"], "choose from 'code', 'paper'"),
        (["fit", "--ensemble", "median"], "choose from 'logits', 'probs'"),
        (["fit", "--store", "disk"], "choose from 'factored', 'dense', 'topk'"),
        (["fit", "--store-precision", "fp16"], "choose from 'auto', 'float32', 'bfloat16'"),
        (["fit", "--select-metric", "auc"], "argument --select-metric: invalid choice: 'auc'"),
        (["fit", "--precision", "fp16"], "argument --precision: invalid choice: 'fp16' (choose from 'auto', 'bf16', 'fp32')"),
        (["fit", "--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["recommend", "--model", "m.pt", "--input", "h.txt", "--k", "0"], "argument --k: expected a positive integer"),
        (["recommend", "--model", "m.pt", "--input", "h.txt", "--unknown", "ignore"], "choose from 'error', 'skip'"),
        (["recommend", "--input", "h.txt"], "the following arguments are required: --model"),
    ],
)
def test_values_outside_a_fixed_set_are_refused_by_the_parser(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_backbone_names_are_case_insensitive_and_cuda_devices_parse():
    from csrec.cli import build_parser

    args = build_parser().parse_args(["fit", "--backbone", "SASRec", "--device", "cuda:1"])
    assert args.backbone == "sasrec" and args.device == "cuda:1"


def test_unknown_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--no-such-flag", "1"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_ensemble_weights_flag_parses_a_comma_list(capsys):
    from csrec.cli import build_parser

    args = build_parser().parse_args(["fit", "--method", "csrec-m", "--ensemble", "probs", "--ensemble-weights", "0.1,0.9"])
    assert args.ensemble_weights == (0.1, 0.9)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--ensemble-weights", "0.1,x"])
    assert "comma-separated numbers" in capsys.readouterr().err


def test_parse_key_values_reads_json_or_strings_and_names_the_flag():
    from csrec.cli import parse_key_values
    from csrec.errors import CSRecError

    parsed = parse_key_values(["dropout=0.2", "ensemble-weights=[0.1, 0.9]", "windowing=authors",
                               "expectation_term=false", " num_teachers = 3"], "--set")
    assert parsed == {"dropout": 0.2, "ensemble_weights": [0.1, 0.9], "windowing": "authors",
                      "expectation_term": False, "num_teachers": 3}
    assert parse_key_values(None, "--model") == {}
    for bad in ("dropout", "=0.2"):
        with pytest.raises(CSRecError, match=f"--model expects key=value, got '{bad}'"):
            parse_key_values([bad], "--model")


# --- help text ------------------------------------------------------------------------------------
SUBCOMMANDS = ("fit", "stats", "recommend")


def _subparser(command: str) -> argparse.ArgumentParser:
    from csrec.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def _options(command: str) -> list[argparse.Action]:
    return [a for a in _subparser(command)._actions if a.option_strings]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_has_help_text(command):
    for action in _options(command):
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings
        assert not action.help.startswith("(default:"), f"{action.option_strings}: describe it, not only its default"


def test_every_config_field_that_is_a_flag_has_a_description():
    from csrec.cli import FIELD_HELP
    from csrec.data import DataConfig
    from csrec.methods import MethodConfig
    from csrec.training import TrainConfig

    for cls in (DataConfig, TrainConfig, MethodConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name != "name" and not dataclasses.is_dataclass(hints[f.name]):
                assert f.name in FIELD_HELP, f"add a description of {cls.__name__}.{f.name} to FIELD_HELP in csrec/cli.py"


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in SUBCOMMANDS]])
def test_help_renders_without_raw_markup(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: csrec")
    assert "``" not in out and ":class:" not in out and ":data:" not in out


def test_fixed_sets_are_choices_and_each_choice_passes_validation():
    from csrec.cli import FIELD_CHOICES
    from csrec.data import DataConfig
    from csrec.methods import MethodConfig
    from csrec.training import TrainConfig

    fit = {a.dest: a for a in _options("fit")}
    owners = {f.name: cls for cls in (DataConfig, TrainConfig, MethodConfig) for f in dataclasses.fields(cls)}
    for name in ("windowing", "kl_direction", "ensemble", "store", "store_precision", "format", "select_metric", "precision"):
        assert fit[name].choices == FIELD_CHOICES[name], name
        for value in FIELD_CHOICES[name]:
            owners[name](**{name: value}).validate()
    assert fit["dataset"].choices and fit["backbone"].choices and fit["method"].choices
    assert fit["device"].metavar == "{auto,cpu,cuda,cuda:N}"
    assert {"mrr", "ndcg@10", "recall@20"} <= set(FIELD_CHOICES["select_metric"])


def test_cli_terms_rewrites_python_parameters_only():
    from csrec.cli import cli_terms

    flags = {"path": "--path", "data_dir": "--data-dir", "max_len": "--max-len", "ensemble": "--ensemble",
             "ensemble_weights": "--ensemble-weights", "epochs": "--epochs", "model": "--model"}
    assert cli_terms("unknown dataset 'x'; valid: a, b (or pass path=)", flags) == "unknown dataset 'x'; valid: a, b (or pass --path)"
    assert cli_terms("set by data_dir= or $CSREC_DATA_DIR", flags) == "set by --data-dir or $CSREC_DATA_DIR"
    assert cli_terms("max_len must be at least 3, got 2", flags) == "--max-len must be at least 3, got 2"
    assert cli_terms("ensemble_weights apply to ensemble='probs' only", flags) == "--ensemble-weights apply to --ensemble probs only"
    assert cli_terms("epochs must be at least 1, got 0", flags) == "--epochs must be at least 1, got 0"
    untouched = [
        "/data/max_len/path/x.csv: no such file",  # a path
        "unknown dataset 'max_len'",  # a quoted value
        "the model was trained on 'lastfm'",  # plain words
        "max_len.csv, line 3: bad",  # a file name
        "--model expects key=value, got 'x'",
        "unknown parameter(s) embedding_size for backbone 'gru4rec'",  # not a flag
    ]
    for message in untouched:
        assert cli_terms(message, flags) == message


# --- recommend ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A GRU4Rec trained for one epoch on a CSV whose raw item ids are 5000 + 3·i, saved."""
    import torch

    from csrec import artifacts
    from csrec.data import DataConfig, SyntheticConfig, generate_synthetic, load_dataset
    from csrec.models import build_backbone
    from csrec.training import TrainConfig, train_model

    folder = tmp_path_factory.mktemp("recommend")
    frame = generate_synthetic(SyntheticConfig(n_users=120, n_items=60, n_clusters=6, mean_length=14))
    frame = frame.assign(user_id=frame.user, item_id=5000 + 3 * frame.item)[["user_id", "item_id", "rating", "timestamp"]]
    frame.to_csv(folder / "raw.csv", index=False)
    config = DataConfig(path=str(folder / "raw.csv"), use_cache=False)
    data = load_dataset(config)
    torch.manual_seed(0)
    model = build_backbone("gru4rec", data.n_items, data.max_len, {"embedding_dim": 16})
    train_model(model, data, TrainConfig(epochs=1, device="cpu", progress=False))
    path = artifacts.save(folder / "fit.model.pt", model, data, config)
    return path, artifacts.catalogue_item_ids(config)


def test_recommend_prints_one_list_per_history_as_the_python_api(saved_model, write_file, capsys):
    from csrec import artifacts

    path, ids = saved_model
    histories = [ids[:3].tolist(), ids[10:30].tolist(), [int(ids[7])]]
    text = "# comment line\n" + " ".join(map(str, histories[0])) + "\n\n" + ",".join(map(str, histories[1])) + "\n" + f"{ids[7]}\n"
    source = write_file("histories.txt", text)
    assert main(["recommend", "--model", str(path), "--input", str(source), "--k", "5"]) == 0
    printed = [[int(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()]
    expected = artifacts.load(path).recommend(histories, k=5)
    assert printed == expected.items.tolist()
    assert all(not set(row) & set(h) for row, h in zip(printed, histories))

    out = source.with_name("top.jsonl")
    argv = ["recommend", "--model", str(path), "--input", str(source), "--k", "3", "--no-exclude-seen",
            "--output-format", "jsonl", "--output", str(out)]
    assert main(argv) == 0
    assert f"3 lists of 3 items written to {out}" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 4, 5]
    shown = artifacts.load(path).recommend(histories, k=3, exclude_seen=False)
    assert [r["items"] for r in rows] == shown.items.tolist()
    np.testing.assert_allclose([r["scores"] for r in rows], shown.scores, atol=1e-6)


@pytest.mark.parametrize(
    "text, extra, fragments",
    [
        ("{a} {b}\n\n{a} 1 {b}\n", [], ["{input}, line 3: item 1 is not in the model's catalogue", "(--unknown skip drops such items)"]),
        ("{a} {b}\n1 2\n", ["--unknown", "skip"], ["{input}, line 2: no item of the model's catalogue"]),
        ("{a} {b}\n{a} x7\n", [], ["{input}, line 2: non-integer item id 'x7'"]),
        ("{a} 1_000\n", [], ["{input}, line 1: non-integer item id '1_000'"]),
        ("{a} 2.5\n", [], ["{input}, line 1: non-integer item id '2.5'"]),
        ("# nothing\n\n", [], ["{input}: no history in the file"]),
        ("{a}\n", ["--k", "100000"], ["--k must be between 1 and the catalogue size"]),
        ("{a}\n", ["--model", "{missing}"], ["{missing}: no such model file"]),
        ("{a}\n", ["--model", "{input}"], ["{input}: not a readable csrec model file"]),
    ],
)
def test_recommend_errors_name_the_file_and_line(saved_model, write_file, tmp_path, capsys, text, extra, fragments):
    path, ids = saved_model
    source = write_file("in.txt", text.format(a=ids[0], b=ids[1]))
    values = {"input": str(source), "missing": str(tmp_path / "none.model.pt")}
    argv = ["recommend", "--model", str(path), "--input", str(source), *[a.format(**values) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("csrec: error: ") and err.count("\n") == 1
    for fragment in fragments:
        assert fragment.format(**values) in err, err


def test_recommend_reports_an_undecodable_input_file(saved_model, tmp_path, capsys):
    path, _ = saved_model
    source = tmp_path / "in.txt"
    source.write_bytes(b"5003 5006\n\xff\xfe5\n")
    assert main(["recommend", "--model", str(path), "--input", str(source)]) == 2
    assert f"{source}, line 2: not UTF-8 text (byte 0xff" in capsys.readouterr().err
