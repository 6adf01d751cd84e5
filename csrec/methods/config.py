"""The configs of one experiment: the method's hyperparameters, named as in the paper (α, β, T, m,
p), and :class:`ExperimentConfig`, which joins them with the data, backbone and training configs.

Every default of a method parameter is written here once; the search space and the ablations read
them from :class:`MethodConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from csrec.data.dataset import DataConfig
from csrec.errors import ConfigError
from csrec.methods.losses import KL_DIRECTIONS
from csrec.models.base import BackboneConfig, make_backbone_config
from csrec.training import TrainConfig

METHODS = ("base", "softrec", "csrec-m", "csrec-d", "csrec-t")
ENSEMBLES = ("logits", "probs")
STORE_MODES = ("factored", "dense", "topk")
NOISE_COLUMN_MAX = ("exact", "running")
STORE_PRECISIONS = ("auto", "float32", "bfloat16")


# The paper's symbols for the hyperparameters a method has (tables, figures, reports).
SYMBOLS = {"beta": "β", "temperature": "T", "num_teachers": "m", "subsample": "p", "alpha": "α"}


def value_text(value) -> str:
    """A hyperparameter value as tables and progress lines print it (floats to 3 significant digits)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def method_hyperparameters(method: str) -> tuple[str, ...]:
    """The hyperparameters that shape ``method`` (and that a sweep searches), in a fixed order."""
    if method == "base":
        return ()
    out = ["beta", "temperature"]
    if method in ("csrec-m", "csrec-d"):
        out.append("num_teachers")
    if method in ("csrec-d", "csrec-t"):
        out.append("subsample")
    if method == "csrec-t":
        out.append("alpha")
    return tuple(out)


@dataclass
class MethodConfig:
    name: str = "base"
    beta: float = 0.5  # β, Eq. 20: weight of the KL term for the student (0 = Base CE)
    temperature: float = 3.0  # T, Eq. 19
    num_teachers: int = 2  # m, CSRec-M / CSRec-D
    subsample: float = 0.8  # p, CSRec-D teachers and CSRec-T's side teacher
    alpha: float = 0.5  # α, Eq. 17 (paper convention: α weighs KL(P_g2 ‖ P_g1))
    expectation_term: bool = True  # CSRec-T: keep Eq. 16's expectation term (False: Fig. 10 ablation)
    noise_column_max: str = "exact"  # CSRec-T's max_k h̃_{k,j}: "exact" (Eq. 16) | "running" (authors' code)
    ensemble: str = "logits"  # "logits": mean of logits (Alg. 1–2); "probs": mean of tempered probs (authors' code)
    ensemble_weights: tuple[float, ...] | None = None  # "probs" only: one weight per teacher (authors: 0.1, 0.9)
    kl_direction: str = "code"  # "code": KL(r ‖ P_f) as the authors' code; "paper": KL(P_f ‖ r) as Eq. 20
    store: str = "factored"  # soft-label store: factored | dense | topk
    store_top_k: int = 100
    store_precision: str = "auto"  # factored store's logit product: auto (follows TrainConfig.precision) | float32 | bfloat16
    teacher_seed: int = 1000  # teacher k of CSRec-M trains with seed teacher_seed + k
    subsample_seed: int = 2000  # teacher k of CSRec-D samples its subset with subsample_seed + k
    softrec_scale: float = 5.0  # SoftRec prior logits span [-scale, scale]

    def validate(self) -> None:
        if self.name not in METHODS:
            raise ConfigError(f"unknown method {self.name!r}; valid methods: {', '.join(METHODS)}")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"beta must lie in [0, 1], got {self.beta}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.num_teachers < 1:
            raise ConfigError(f"num_teachers (m) must be at least 1, got {self.num_teachers}")
        if not 0.0 < self.subsample <= 1.0:
            raise ConfigError(f"subsample (p) must lie in (0, 1], got {self.subsample}")
        if self.ensemble not in ENSEMBLES:
            raise ConfigError(f"unknown ensemble {self.ensemble!r}; valid: {', '.join(ENSEMBLES)}")
        if self.ensemble_weights is not None:
            weights = tuple(float(w) for w in self.ensemble_weights)
            if self.ensemble != "probs":
                raise ConfigError("ensemble_weights apply to ensemble='probs' only (the logit mean of Alg. 1–2 is unweighted)")
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ConfigError(f"ensemble_weights must be non-negative with a positive sum, got {list(weights)}")
            self.ensemble_weights = weights
        if self.noise_column_max not in NOISE_COLUMN_MAX:
            raise ConfigError(f"unknown noise_column_max {self.noise_column_max!r}; valid: {', '.join(NOISE_COLUMN_MAX)}")
        if self.kl_direction not in KL_DIRECTIONS:
            raise ConfigError(f"unknown kl_direction {self.kl_direction!r}; valid: {', '.join(KL_DIRECTIONS)}")
        if self.store not in STORE_MODES:
            raise ConfigError(f"unknown store {self.store!r}; valid: {', '.join(STORE_MODES)}")
        if self.store_precision not in STORE_PRECISIONS:
            raise ConfigError(f"unknown store_precision {self.store_precision!r}; valid: {', '.join(STORE_PRECISIONS)}")
        if self.store_top_k < 1:
            raise ConfigError(f"store_top_k must be at least 1, got {self.store_top_k}")

    @property
    def uses_soft_labels(self) -> bool:
        return self.name != "base" and self.beta > 0


#: Seed index k of an experiment shifts its teachers' seeds by k times this (see ExperimentConfig.replicate).
REPLICATE_SEED_STRIDE = 100


@dataclass
class ExperimentConfig:
    """One experiment: data, backbone (and its config), method, training."""

    data: DataConfig = field(default_factory=DataConfig)
    backbone: str = "gru4rec"
    model: BackboneConfig | None = None  # None: the backbone's paper defaults
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def resolved_model(self) -> BackboneConfig:
        return self.model if self.model is not None else make_backbone_config(self.backbone)

    def replicate(self, index: int) -> "ExperimentConfig":
        """The same experiment under seed index ``index`` (0: this one): the student's seed + index and
        every teacher's model and subsample seeds + REPLICATE_SEED_STRIDE · index, so each seed has
        teachers of its own (m ≤ 4 teachers use seeds teacher_seed … teacher_seed + 3)."""
        if index < 0:
            raise ConfigError(f"seed index must be >= 0, got {index}")
        if index == 0:
            return self
        shift = REPLICATE_SEED_STRIDE * index
        method = dataclasses.replace(self.method, teacher_seed=self.method.teacher_seed + shift,
                                     subsample_seed=self.method.subsample_seed + shift)
        return dataclasses.replace(self, method=method, train=dataclasses.replace(self.train, seed=self.train.seed + index))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["model"] = dataclasses.asdict(self.resolved_model())
        return out
