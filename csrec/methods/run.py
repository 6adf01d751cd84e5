"""Run a method end to end: teachers (if any), soft labels, then the student."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from csrec.data.dataset import SequenceData
from csrec.models.base import SequentialRecommender, build_backbone
from csrec.training import TrainOutcome, cross_entropy_loss, train_model

if TYPE_CHECKING:
    from csrec.api import ExperimentConfig


@dataclass
class MethodOutcome:
    student: SequentialRecommender
    train: TrainOutcome
    teachers: list[dict] = field(default_factory=list)
    teacher_seconds: float = 0.0
    soft_label_seconds: float = 0.0


def run_method(config: "ExperimentConfig", data: SequenceData) -> MethodOutcome:
    import torch

    torch.manual_seed(config.train.seed)
    student = build_backbone(config.backbone, data.n_items, data.max_len, config.resolved_model())
    outcome = train_model(student, data, config.train, cross_entropy_loss, label=f"{config.backbone} student")
    return MethodOutcome(student=student, train=outcome)
