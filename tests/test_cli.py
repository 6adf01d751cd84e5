"""The command line: ``fit`` writes its result, ``stats`` prints statistics, errors exit 2 cleanly."""

from __future__ import annotations

import json

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


def test_stats_prints_statistics(synthetic_csv, capsys):
    assert main(["stats", "--path", str(synthetic_csv), "--max-len", "10", "--windowing", "disjoint", "--min-window", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("interactions (disjoint windows, max_len 10): ")
    stats = json.loads(out[out.index("{"):])
    assert stats["windowing"] == "disjoint" and stats["max_len"] == 10 and stats["leaked_test_targets"] == 0
    assert f"{stats['sub_sessions']:,} sub-sessions" in out


@pytest.mark.realdata
def test_stats_on_lastfm(real_file, capsys):
    data_dir = real_file("lastfm/lastfm_small.csv").parents[1]
    assert main(["stats", "--dataset", "lastfm", "--data-dir", str(data_dir), "--no-use-cache"]) == 0
    out = capsys.readouterr().out
    assert "3,173 sub-sessions from 1,090 users, 3,646 items, 57,826 interactions" in out
    assert "458 test targets" in out


@pytest.fixture
def bad_csv(write_file):
    return write_file("bad.csv", "session_id,item_id\n1,2\n1,3,4\n")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["stats", "--path", "{bad}"], ["{bad}", "line 3"]),
        (["fit", "--path", "{bad}", "--epochs", "1"], ["{bad}", "line 3"]),
        (["stats", "--path", "{missing}"], ["{missing}", "no such file"]),
        (["fit", "--dataset", "nope"], ["unknown dataset 'nope'", "lastfm"]),
        (["stats", "--dataset", "nope"], ["unknown dataset 'nope'", "lastfm"]),
        (["fit", "--backbone", "transformer"], ["unknown backbone 'transformer'", "gru4rec, narm, nextitnet, sasrec"]),
        (["fit", "--method", "magic"], ["unknown method 'magic'", "csrec-t"]),
        (["stats", "--max-len", "2"], ["max_len", "2"]),
        (["stats", "--windowing", "sliding"], ["'sliding'", "authors, disjoint"]),
        (["fit", "--epochs", "0"], ["epochs"]),
        (["fit", "--model", "embedding_dim"], ["key=value", "'embedding_dim'"]),
        (["fit", "--model", "bogus=1"], ["bogus", "embedding_dim"]),
        (["stats", "--dataset", "lastfm", "--data-dir", "{tmp}"], ["lastfm_small.csv", "not found"]),
    ],
)
def test_bad_input_exits_2_without_traceback(argv, fragments, bad_csv, tmp_path, capsys):
    values = {"bad": str(bad_csv), "missing": str(tmp_path / "missing.csv"), "tmp": str(tmp_path)}
    argv = [a.format(**values) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("csrec: error: ")
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    for fragment in fragments:
        assert fragment.format(**values) in captured.err, fragment


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
