"""``csrec.fit``: one experiment (data → teachers → student → test) in one process, no Ray.

:func:`make_config` turns flat keywords (any DataConfig, TrainConfig or MethodConfig field) into an
:class:`~csrec.methods.config.ExperimentConfig`; :func:`fit` runs it and returns a :class:`FitResult`,
which keeps the trained student: :meth:`FitResult.save` writes it beside the result JSON, and
:func:`csrec.load` reads it back for recommendations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from csrec import artifacts
from csrec.atomic import atomic_path, write_atomic
from csrec.data.dataset import DataConfig, SequenceData, load_dataset
from csrec.errors import ConfigError
from csrec.evaluation import EvalResult, evaluate
from csrec.experiment.protocol import protocol_settings
from csrec.methods import MethodConfig, run_method
from csrec.methods.config import ExperimentConfig
from csrec.models.base import BackboneConfig, SequentialRecommender, make_backbone_config
from csrec.training import TrainConfig


@dataclass
class FitResult:
    config: ExperimentConfig
    dataset: dict  # preprocessing statistics
    test: EvalResult
    valid: EvalResult
    best_epoch: int
    epochs_run: int
    history: list[dict]
    timings: dict[str, float]
    teachers: list[dict] = field(default_factory=list)  # each teacher's own metrics (Table 5)
    ensemble: dict | None = None  # the teachers' ensemble's own test metrics (its soft labels as a recommender)
    environment: dict = field(default_factory=dict)
    # The trained student (its best epoch's weights) and the prepared data it was trained on: what
    # save() needs to write a loadable model.  Neither goes into to_dict().
    student: SequentialRecommender | None = field(default=None, repr=False, compare=False)
    data: SequenceData | None = field(default=None, repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, float]:
        return self.test.metrics

    def summary(self) -> str:
        m = self.test.metrics
        return (
            f"{self.config.data.name} / {self.config.backbone} / {self.config.method.name}: "
            f"test Recall@10 {m['recall@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  "
            f"(best epoch {self.best_epoch} of {self.epochs_run}, {self.timings['total_s']:.1f}s)"
        )

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "dataset": self.dataset,
            "test": self.test.metrics,
            "valid": self.valid.metrics,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "history": self.history,
            "timings": self.timings,
            "teachers": self.teachers,
            "ensemble": self.ensemble,
            "environment": self.environment,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result JSON and, beside it, the trained student (``NAME.model.pt``, see
        :func:`csrec.artifacts.model_path_for`) and the per-sequence test ranks (``.npz``), each
        atomically.  ``csrec.load(NAME.model.pt)`` reads the model back.

        The model is written first: it checks that ``config.data`` prepared the data the student
        was trained on, so a result whose config does not describe its data saves nothing.  A
        FitResult built without a student (not by :func:`fit`) saves the JSON and ranks only.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.student is not None:
            model_path = artifacts.model_path_for(path)
            if self.data is None:
                raise ConfigError(f"{model_path}: cannot save the model without the data it was trained on (FitResult.data)")
            try:
                artifacts.save(model_path, self.student, self.data, self.config.data)
            except ConfigError as exc:
                raise ConfigError(
                    f"{model_path}: cannot save the model: {exc} (fit(data=...) was given data that "
                    "config.data does not prepare)"
                ) from None
        write_atomic(path, json.dumps(self.to_dict(), indent=2, default=_jsonable))
        arrays = {"test_ranks": self.test.ranks, "test_positive": self.test.positive, "valid_ranks": self.valid.ranks}
        if self.test.true_ranks is not None:
            arrays["test_true_ranks"] = self.test.true_ranks
        with atomic_path(path.with_suffix(".npz")) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path


def make_config(
    dataset: str = "synthetic", backbone: str = "gru4rec", method: str = "base", *,
    model: dict | BackboneConfig | None = None, protocol: str = "csrec", **kwargs,
) -> ExperimentConfig:
    """Build an ExperimentConfig from a dataset/backbone/method and flat keyword arguments.

    Keywords may be any field of DataConfig, TrainConfig or MethodConfig (the same names the
    CLI takes), or whole configs as ``data=``, ``train=``, ``method_config=``.  ``protocol``
    ("csrec" or "authors", see :mod:`csrec.experiment.protocol`) presets the training and
    ensemble parameters; a keyword given explicitly wins over the preset.
    """
    num_teachers = kwargs.get("num_teachers", MethodConfig.num_teachers)
    kwargs = {**protocol_settings(protocol, backbone, method, num_teachers), **kwargs}
    data = kwargs.pop("data", None) or DataConfig(name=dataset)
    train = kwargs.pop("train", None) or TrainConfig()
    method_config = kwargs.pop("method_config", None) or MethodConfig(name=method)
    fields = {
        "data": {f.name for f in dataclasses.fields(DataConfig)} - {"name"},
        "train": {f.name for f in dataclasses.fields(TrainConfig)},
        "method": {f.name for f in dataclasses.fields(MethodConfig)} - {"name"},
    }
    updates: dict[str, dict] = {"data": {}, "train": {}, "method": {}}
    for key, value in kwargs.items():
        owner = next((o for o, names in fields.items() if key in names), None)
        if owner is None:
            valid = sorted(set().union(*fields.values()))
            raise ConfigError(f"unknown parameter {key!r}; valid parameters: {', '.join(valid)}")
        updates[owner][key] = value
    data = dataclasses.replace(data, **updates["data"])
    train = dataclasses.replace(train, **updates["train"])
    method_config = dataclasses.replace(method_config, **updates["method"])
    model_config = model if isinstance(model, BackboneConfig) or model is None else make_backbone_config(backbone, model)
    if model_config is None:
        make_backbone_config(backbone)  # validates the name early
    config = ExperimentConfig(data=data, backbone=backbone.lower(), model=model_config, method=method_config, train=train)
    config.data.validate()
    config.train.validate()
    config.method.validate()
    return config


def fit(
    dataset: str = "synthetic", backbone: str = "gru4rec", method: str = "base", *,
    config: ExperimentConfig | None = None, data: SequenceData | None = None, pool=None, **kwargs,
) -> FitResult:
    """Train and test one model.  Returns metrics, per-sequence ranks, config and timings.

    >>> result = csrec.fit("synthetic", "gru4rec", epochs=2)        # doctest: +SKIP
    >>> result.metrics["ndcg@10"]                                    # doctest: +SKIP

    ``pool`` (a :class:`csrec.methods.TeacherPool`) lets several fits share trained teachers.
    """
    config = config or make_config(dataset, backbone, method, **kwargs)
    started = time.perf_counter()
    data = data if data is not None else load_dataset(config.data)
    t_data = time.perf_counter() - started
    device = config.train.torch_device()
    outcome = run_method(config, data, pool=pool)
    t0 = time.perf_counter()
    test = evaluate(outcome.student, data, "test", device=device)
    t_test = time.perf_counter() - t0
    valid = evaluate(outcome.student, data, "valid", device=device)
    history = [dataclasses.asdict(h) for h in outcome.train.history]
    epochs_run = len(history)
    train_s = sum(h["seconds_train"] for h in history)
    valid_s = sum(h["seconds_valid"] for h in history)
    timings = {
        "data_s": t_data,
        "teachers_s": outcome.teacher_seconds,
        "soft_labels_s": outcome.soft_label_seconds,
        "student_s": outcome.train.seconds,
        "train_epoch_s": train_s / max(epochs_run, 1),
        "valid_pass_s": valid_s / max(epochs_run, 1),
        "test_pass_s": t_test,
        "total_s": time.perf_counter() - started,
    }
    return FitResult(
        config=config, dataset=data.stats(), test=test, valid=valid, best_epoch=outcome.train.best_epoch,
        epochs_run=epochs_run, history=history, timings=timings, teachers=outcome.teachers,
        ensemble=outcome.ensemble, environment=environment(device), student=outcome.student, data=data,
    )


def environment(device: torch.device | str = "cpu") -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "device": str(device),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark, MiB (its whole life: a reused worker's
    figure covers every task it ran)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
