"""The sweep's typed config and the ``sweeps/grid.py`` command line that builds it (no Ray)."""

from __future__ import annotations

import pytest

from csrec.errors import ConfigError
from csrec.search import GridConfig, SweepConfig


def test_grid_config_rejects_bad_ablation_arguments():
    run = ["--smoke", "--storage-path", "unused"]
    with pytest.raises(ConfigError, match="unknown ablation teacher"):
        GridConfig.from_argv(run + ["--ablation", "teacher"])
    with pytest.raises(ConfigError, match="--grace-period must be at least 1 epoch, got 0"):
        GridConfig.from_argv(run + ["--grace-period", "0"])
    with pytest.raises(ConfigError, match="the expectation ablation sweeps csrec-t"):
        GridConfig.from_argv(run + ["--ablation", "expectation", "--methods", "csrec-m,csrec-d"])
    with pytest.raises(ConfigError, match="varies num_teachers: do not fix it with --set"):
        GridConfig.from_argv(run + ["--ablation", "teachers", "--set", "num_teachers=3"])
    with pytest.raises(ConfigError, match="unknown dataset lastfmm"):
        GridConfig.from_argv(["--datasets", "lastfmm"])


def test_grid_config_of_the_smoke_command_line():
    config = GridConfig.from_argv(["--smoke", "--backbones", "gru4rec", "--set", "beta=0.5", "--epochs", "3"])
    assert config.datasets == ("synthetic",) and config.backbones == ("gru4rec",) and config.num_samples == 2
    assert config.epochs == 3 and config.storage_path == "runs/sweep-smoke"
    assert config.command == "python sweeps/grid.py --smoke --backbones gru4rec --set beta=0.5 --epochs 3"
    cells = config.cells()
    assert [c.method for c in cells] == ["base", "softrec", "csrec-m", "csrec-d", "csrec-t"]
    assert all(c.fixed == ("beta",) and c.overrides["beta"] == 0.5 for c in cells)
    assert cells[2].expected_trials == 2 and cells[0].expected_trials == 1
    assert config.data_config("synthetic").synthetic.n_users == 120
    # A later invocation on the same run directory repeats the data and budget, not the method parameters.
    assert config.carried_argv() == ["--smoke", "--epochs", "3"]


def test_grid_model_flags_set_backbone_hyperparameters_for_all_or_one_backbone():
    """--model KEY=VALUE reaches every backbone's cells, --model BACKBONE.KEY=VALUE one backbone's;
    a field a backbone lacks, or a backbone not in the grid, is a ConfigError naming it."""
    config = GridConfig.from_argv(["--datasets", "lastfm", "--backbones", "gru4rec,bert4rec",
                                   "--model", "embedding_dim=32", "--model", "bert4rec.attention-dropout=0.2"])
    models = {c.backbone: c.model for c in config.cells()}
    assert models == {"gru4rec": {"embedding_dim": 32}, "bert4rec": {"embedding_dim": 32, "attention_dropout": 0.2}}
    assert config.carried_argv() == ["--model", "embedding_dim=32", "--model", "bert4rec.attention-dropout=0.2"]
    assert GridConfig.from_argv(["--datasets", "lastfm", "--backbones", "gru4rec"]).cells()[0].model is None
    with pytest.raises(ConfigError, match=r"attention_dropout for backbone 'gru4rec'.*BACKBONE\.KEY=VALUE"):
        GridConfig.from_argv(["--datasets", "lastfm", "--backbones", "gru4rec,bert4rec", "--model", "attention_dropout=0.2"])
    with pytest.raises(ConfigError, match="sasrec is not among the grid's backbones"):
        GridConfig.from_argv(["--datasets", "lastfm", "--backbones", "gru4rec", "--model", "sasrec.dropout=0.1"])
    with pytest.raises(ConfigError, match=r"\(bert4rec\): mask_prob must lie in \[0, 1\], got 2"):  # values too
        GridConfig.from_argv(["--datasets", "lastfm", "--backbones", "bert4rec", "--model", "mask_prob=2"])
    # An ablation command on a subset of the backbones carries only the flags that concern it.
    assert config.carried_argv(["gru4rec"]) == ["--model", "embedding_dim=32"]


def test_sweep_config_checks_its_search():
    with pytest.raises(ValueError, match="unknown search"):
        SweepConfig(search="random")
    with pytest.raises(ValueError, match="both fixed"):
        SweepConfig(grid={"beta": [0.5]}, overrides={"beta": 0.25})
    assert SweepConfig(grid={"beta": (0.25, 0.5)}).search == "grid"


@pytest.mark.parametrize("options,message", [
    ({"schedule": "fast"}, "unknown schedule 'fast'"), ({"batch_size": 0}, "--batch-size must be"),
    ({"seeds": 0}, "--seeds must be"), ({"seeds": 2.5}, "--seeds must be"), ({"protocol": "x"}, "unknown protocol"),
])
def test_cell_and_grid_check_the_same_sweep_options(options, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**options)
    with pytest.raises(ValueError, match=message):
        GridConfig(datasets=("synthetic",), backbones=("gru4rec",), **options)


def test_every_grid_option_has_help_and_fixed_sets_have_choices():
    from csrec.search import grid_parser
    from csrec.search.config import VERBOSITY
    from csrec.search.space import SEARCHES

    actions = {a.dest: a for a in grid_parser()._actions}
    missing = sorted(dest for dest, a in actions.items() if not (a.help or "").strip())
    assert missing == []
    assert tuple(actions["search"].choices) == SEARCHES
    assert tuple(actions["verbose"].choices) == tuple(VERBOSITY)
    for dest in ("datasets", "backbones", "methods"):  # comma lists: the valid names are in the help
        assert "all, or a comma list of" in actions[dest].help


def test_verbosity_and_resume_flags():
    run = ["--smoke", "--storage-path", "unused"]
    assert GridConfig.from_argv(run).verbose == 0 and SweepConfig().verbose == 0  # quiet by default
    assert GridConfig.from_argv(run + ["--verbose"]).verbose == 1
    assert GridConfig.from_argv(run + ["--verbose", "2"]).verbose == 2
    config = GridConfig.from_argv(run + ["--resume-or-start"])
    assert config.resume_or_start and not config.resume
    assert all(cell.resume == "auto" for cell in config.cells())
    with pytest.raises(SystemExit):  # argparse: not allowed together
        GridConfig.from_argv(run + ["--resume", "--resume-or-start"])
    with pytest.raises(SystemExit):
        GridConfig.from_argv(run + ["--resume", "--fresh"])
    with pytest.raises(ConfigError, match="exclude each other"):
        GridConfig(datasets=("synthetic",), backbones=("gru4rec",), resume=True, resume_or_start=True)


def test_cpus_per_teacher_reaches_the_teachers_resources():
    config = GridConfig.from_argv(["--smoke", "--cpus-per-teacher", "2"])
    assert config.resources.teacher_cpus == 2 and config.resources.trial_cpus == 1
    assert GridConfig.from_argv(["--smoke"]).resources.teacher_cpus == 1
