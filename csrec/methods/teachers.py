"""Teachers (paper §3.2): what identifies one, how it is trained, and a pool that trains each once.

A :class:`TeacherSpec` names a teacher completely: backbone and its config, seed, optional
p-subsample and its seed, and for CSRec-T's main teacher g1 also α, the expectation-term switch
and its side teacher g2.  Together with the dataset fingerprint and the training settings it
hashes to a stable key, so a :class:`TeacherPool` (a directory) trains each distinct teacher
once and every later method, trial or rerun reuses it: CSRec-M with m = 3 reuses the two
teachers of m = 2; CSRec-D and CSRec-T's side teacher share p-subsample teachers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from csrec.atomic import atomic_path
from csrec.data.dataset import SequenceData
from csrec.evaluation import evaluate
from csrec.methods.config import NOISE_COLUMN_MAX, MethodConfig
from csrec.methods.losses import fused_robust_teacher_loss, widen
from csrec.models.base import SequentialRecommender, build_backbone
from csrec.training import Batch, StaleTrainingState, TrainConfig, train_model

if TYPE_CHECKING:
    from csrec.methods.config import ExperimentConfig


@dataclass(frozen=True)
class TeacherSpec:
    backbone: str
    model: tuple  # sorted (name, value) pairs of the backbone config
    seed: int
    subsample: float | None = None  # p: train on ⌊p·N⌋ sub-sessions (CSRec-D, CSRec-T's g2)
    subsample_seed: int | None = None
    robust: bool = False  # CSRec-T main teacher g1 (Eq. 17–18) instead of plain CE
    alpha: float | None = None
    expectation_term: bool = True
    side: "TeacherSpec | None" = None  # g2, for the robust teacher
    noise_column_max: str = "exact"  # robust teacher: NoiseMatrix's max_k h̃_{k,j}, exact | running

    def describe(self) -> str:
        parts = [self.backbone, f"seed={self.seed}"]
        if self.subsample is not None:
            parts.append(f"p={self.subsample}/seed={self.subsample_seed}")
        if self.robust:
            running = ", running max" if self.noise_column_max == "running" else ""
            parts.append(f"robust(alpha={self.alpha}, expectation={self.expectation_term}{running})")
        return " ".join(parts)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["model"] = dict(self.model)
        if self.noise_column_max == "exact":
            del out["noise_column_max"]  # the default leaves the keys of existing pools unchanged
            if self.robust:
                # The exact column max of a large catalogue is floored by the batch's own rows
                # (NoiseMatrix.column_max); robust teachers trained before that get other keys.
                out["column_max_floor"] = "batch"
        if self.side is not None:
            out["side"] = self.side.to_dict()
        return out

    def key(self, data_fingerprint: str, train: TrainConfig) -> str:
        """Stable id of the trained teacher: spec + data + the training settings that matter."""
        payload = {
            "spec": self.to_dict(),
            "data": data_fingerprint,
            "train": _train_key_fields(train),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _train_key_fields(train: TrainConfig) -> dict:
    """The training settings that shape a teacher.  Options added later enter only when set away
    from the setting that existed before them, so earlier pools keep their keys; precision enters
    as what it resolves to (``auto`` is bf16 on one machine and fp32 on another)."""
    fields = {k: v for k, v in dataclasses.asdict(train).items() if k not in ("seed", "device", "progress", "soft_label_cache_gib")}
    fields.pop("precision", None)
    if train.resolved_precision() == "bf16":
        fields["precision"] = "bf16"
    if fields.get("batch_unit") == "sequences":
        del fields["batch_unit"]
    if fields.get("subset_validation", True):
        fields.pop("subset_validation", None)
    return fields


def teacher_specs(config: "ExperimentConfig") -> list[TeacherSpec]:
    """The teachers a method needs, in order (the student reads their ensemble)."""
    method = config.method
    model = tuple(sorted(dataclasses.asdict(config.resolved_model()).items()))
    spec = lambda **kw: TeacherSpec(backbone=config.backbone, model=model, **kw)  # noqa: E731
    if method.name == "csrec-m":
        return [spec(seed=method.teacher_seed + k) for k in range(method.num_teachers)]
    if method.name == "csrec-d":
        # As the authors: one model seed, teachers differ by their data subset.
        return [spec(seed=method.teacher_seed, subsample=method.subsample, subsample_seed=method.subsample_seed + k)
                for k in range(method.num_teachers)]
    if method.name == "csrec-t":
        side = spec(seed=method.teacher_seed, subsample=method.subsample, subsample_seed=method.subsample_seed)
        return [spec(seed=method.teacher_seed + 1, robust=True, alpha=method.alpha,
                     expectation_term=method.expectation_term, side=side,
                     noise_column_max=method.noise_column_max)]
    return []


# --- CSRec-T's noise model h (Eq. 10–11) --------------------------------------------------------
RUNNING_MAX_START = -10.0  # the authors' initial running max


class NoiseMatrix(nn.Module):
    """h̃ = M·N, a low-rank |I|×|I| matrix: h̃_{i,j} scores observing i when j is preferred.

    ``max_k h̃_{k,j}`` (Eq. 16), ``column_max="exact"`` (the paper's formula): the arg-max row of
    every column is found with a chunked pass over the full matrix, and the max itself is
    recomputed from those rows so gradients flow through it.  When |I|² exceeds ``exact_limit``
    the arg-max is refreshed once per ``refresh_every`` steps instead of every step; in between,
    the max is that of the stale arg-max rows and the batch's own rows h̃_{i,·}.  Without the
    batch's rows the stale value can fall below h̃_{i,j}, and Eq. 16's inner term below log|I|:
    the loss then has no floor, and the teacher learns to push it down instead of fitting the data
    (on Yelp, 20,033 items, a GRU4Rec teacher collapsed to a near one-hot softmax; BENCHMARKS §3).
    ``column_max="running"`` is the authors' code (``PriorPreferModel.py``): the column max over
    the batch's observed rows, element-wise maxed with a detached running max of all earlier
    batches (starting at −10, never decreased), so gradient flows only where the batch sets a new
    max.
    """

    def __init__(self, n_items: int, dim: int = 64, exact_limit: int = 1 << 25, refresh_every: int = 50,
                 column_max: str = "exact"):
        super().__init__()
        if column_max not in NOISE_COLUMN_MAX:
            raise ValueError(f"unknown column_max {column_max!r}; valid: {', '.join(NOISE_COLUMN_MAX)}")
        self.column_max_mode = column_max
        self.register_buffer("running_max", torch.full((n_items,), RUNNING_MAX_START), persistent=False)
        self.observed = nn.Parameter(torch.empty(n_items, dim))  # M
        self.preferred = nn.Parameter(torch.empty(n_items, dim))  # Nᵀ
        nn.init.kaiming_uniform_(self.observed, a=2)  # as the authors' PriorPreferModel
        nn.init.kaiming_uniform_(self.preferred, a=2)
        self.refresh_every = 1 if n_items * n_items <= exact_limit else refresh_every
        self._argmax: torch.Tensor | None = None
        self._steps = 0

    def get_extra_state(self) -> dict:
        """The column max's bookkeeping, saved with the parameters so resumed training continues it."""
        return {"running_max": self.running_max.detach().clone(), "argmax": self._argmax, "steps": self._steps}

    def set_extra_state(self, state: dict) -> None:
        self.running_max = state["running_max"].to(self.observed.device)
        self._argmax = None if state["argmax"] is None else state["argmax"].to(self.observed.device)
        self._steps = int(state["steps"])

    def rows(self, observed_items: torch.Tensor) -> torch.Tensor:
        """h̃_{i,·} for each 0-based observed item i: [N, n_items]."""
        return self.observed[observed_items] @ self.preferred.t()

    @torch.no_grad()
    def column_argmax(self, chunk: int = 1 << 18) -> torch.Tensor:
        """argmax_k h̃_{k,j} for every column j, a block of columns at a time.

        Each block is h̃ᵀ's rows [columns, n] (the preferred side times the observed table), so the
        argmax runs along contiguous memory, and a block of 2^18 floats stays in cache: about 30%
        faster on CPU than blocks of h̃'s rows reduced along their first dimension.
        """
        n = self.observed.shape[0]
        best_row = torch.empty(n, dtype=torch.long, device=self.observed.device)
        step = max(1, chunk // n)
        for lo in range(0, n, step):
            best_row[lo : lo + step] = (self.preferred[lo : lo + step] @ self.observed.t()).argmax(1)
        return best_row

    def column_max(self, h_rows: torch.Tensor | None = None) -> torch.Tensor:
        """max_k h̃_{k,j} for every column j (``h_rows``: this batch's h̃_{i,·}, for "running")."""
        if self.column_max_mode == "running":
            if h_rows is None:
                raise ValueError("the running column max needs the batch's rows h̃_{i,·}")
            current = torch.maximum(widen(h_rows).amax(0), self.running_max.to(widen(h_rows).dtype))
            self.running_max = current.detach()
            return current
        if self._argmax is None or self._steps % self.refresh_every == 0:
            self._argmax = self.column_argmax()
        self._steps += 1
        from_rows = (self.observed[self._argmax] * self.preferred).sum(-1)
        if self.refresh_every == 1 or h_rows is None:
            return from_rows  # refreshed this step: the max over every row
        return torch.maximum(from_rows, widen(h_rows).amax(0))


class RobustTeacherLoss:
    """ℓ_t of Eq. 18 for g1 against a frozen side teacher g2, as a training-loop loss."""

    def __init__(self, side: SequentialRecommender, noise: NoiseMatrix | None, alpha: float):
        self.side, self.noise, self.alpha = side, noise, alpha
        for p in side.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """What resumed training needs besides the model and optimiser: the noise model (g2 is frozen)."""
        return {"noise": None if self.noise is None else self.noise.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.noise is not None:
            self.noise.load_state_dict(state["noise"])

    def __call__(self, model: SequentialRecommender, batch: Batch):
        reps, targets = model.training_representations(batch.inputs, batch.targets)
        self.side.eval()
        with torch.no_grad():
            side_reps, _ = self.side.training_representations(batch.inputs, batch.targets)
            side_logits = self.side.item_scores(side_reps)
        h_rows = h_max = None
        if self.noise is not None:
            h_rows = self.noise.rows(targets - 1)
            h_max = self.noise.column_max(h_rows)
        loss, logs = fused_robust_teacher_loss(model.item_scores(reps), side_logits, targets - 1, h_rows, h_max,
                                               self.alpha)
        extra = model.extra_loss()
        return (loss if extra is None else loss + extra), logs


# --- training and the pool -----------------------------------------------------------------------
@dataclass
class TrainedTeacher:
    spec: TeacherSpec
    key: str
    model: SequentialRecommender
    info: dict  # metrics (valid/test incl. + and −), best epoch, seconds, spec


def train_teacher(
    spec: TeacherSpec, data: SequenceData, train: TrainConfig, side: SequentialRecommender | None = None,
    on_epoch=None, *, sequence_subset=None, prepare=None, state_path=None,
) -> TrainedTeacher:
    """Train one teacher from scratch, or from ``state_path`` if an interrupted run left one there
    (see :func:`csrec.training.train_model`; the side teacher of a robust one must be given).

    Data-parallel training (:mod:`csrec.sweep.teachers`) plugs in here: ``sequence_subset``
    replaces the teacher's own training sequences (one rank's share), and ``prepare(model,
    params)`` runs once the model and its trainable parameters exist (to average gradients
    across ranks, or to load a checkpoint).
    """
    train = dataclasses.replace(train, seed=spec.seed)
    torch.manual_seed(spec.seed)
    model = build_backbone(spec.backbone, data.n_items, data.max_len, dict(spec.model))
    subset = data.subsample(spec.subsample, spec.subsample_seed) if spec.subsample is not None else None
    loss_fn, params = None, None
    if spec.robust:
        if side is None:
            raise ValueError("a robust (CSRec-T) teacher needs its trained side teacher")
        side.to(train.torch_device())
        noise = (NoiseMatrix(data.n_items, dict(spec.model).get("embedding_dim", 64), column_max=spec.noise_column_max)
                 if spec.expectation_term else None)
        if noise is not None:
            noise.to(train.torch_device())
        loss_fn = RobustTeacherLoss(side, noise, spec.alpha)
        params = list(model.parameters()) + (list(noise.parameters()) if noise is not None else [])
    if prepare is not None:
        prepare(model, params or list(model.parameters()))
    kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
    outcome = train_model(model, data, train, sequence_subset=subset if sequence_subset is None else sequence_subset,
                          params=params, on_epoch=on_epoch, label=f"teacher {spec.describe()}",
                          state_path=state_path, **kwargs)
    device = train.torch_device()
    info = {
        "spec": spec.to_dict(),
        "best_epoch": outcome.best_epoch,
        "epochs_run": len(outcome.history),
        "seconds": outcome.seconds,  # every epoch's, a resumed teacher's earlier ones too
        "valid": evaluate(model, data, "valid", device=device).metrics,
        "test": evaluate(model, data, "test", device=device).metrics,
    }
    return TrainedTeacher(spec=spec, key=spec.key(data.fingerprint, train), model=model, info=info)


class TeacherPool:
    """Trained teachers by key, in memory and (with ``directory``) on disk, so each trains once.

    ``trained_here`` counts the teachers this pool object trained (vs. loaded), for reports.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, TrainedTeacher] = {}
        self.trained_here: list[str] = []

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"teacher-{key}.pt"

    def partial_path(self, key: str) -> Path | None:
        """Where a teacher in training keeps its resumable state (removed once the teacher is saved)."""
        return None if self.directory is None else self.directory / "partial" / f"teacher-{key}.state.pt"

    def train(self, spec: TeacherSpec, data: SequenceData, train: TrainConfig,
              side: SequentialRecommender | None = None, on_epoch=None) -> TrainedTeacher:
        """Train ``spec`` (not saved: see :meth:`save`), continuing an interrupted run of it if one left its state.

        ``on_epoch(EpochLog)`` is called after each epoch trained here (progress reports)."""
        partial = self.partial_path(spec.key(data.fingerprint, train))
        try:
            return train_teacher(spec, data, train, side=side, on_epoch=on_epoch, state_path=partial)
        except StaleTrainingState as stale:  # left by another csrec version or setting: start over
            warnings.warn(f"training the teacher from scratch: {stale}", stacklevel=2)
            partial.unlink(missing_ok=True)
            return train_teacher(spec, data, train, side=side, on_epoch=on_epoch, state_path=partial)

    def has(self, spec: TeacherSpec, data: SequenceData, train: TrainConfig) -> bool:
        key = spec.key(data.fingerprint, train)
        path = self.path(key)
        return key in self._memory or (path is not None and path.is_file())

    def get(self, spec: TeacherSpec, data: SequenceData, train: TrainConfig) -> TrainedTeacher:
        key = spec.key(data.fingerprint, train)
        if key in self._memory:
            return self._memory[key]
        path = self.path(key)
        if path is not None and path.is_file():
            teacher = self._load(path, spec, key, data)
        else:
            side = self.get(spec.side, data, train).model if spec.robust else None
            teacher = self.train(spec, data, train, side=side)
            self.trained_here.append(key)
            if path is not None:
                self.save(teacher)
        self._memory[key] = teacher
        return teacher

    def save(self, teacher: TrainedTeacher) -> Path:
        path = self.path(teacher.key)
        assert path is not None
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a checkpoint
            torch.save({"state": teacher.model.state_dict(), "info": teacher.info}, tmp)
        partial = self.partial_path(teacher.key)
        partial.unlink(missing_ok=True)
        try:
            partial.parent.rmdir()  # only when no other teacher is in training here
        except OSError:
            pass
        return path

    def _load(self, path: Path, spec: TeacherSpec, key: str, data: SequenceData) -> TrainedTeacher:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        model = build_backbone(spec.backbone, data.n_items, data.max_len, dict(spec.model))
        model.load_state_dict(payload["state"])
        return TrainedTeacher(spec=spec, key=key, model=model, info=payload["info"])


def store_fingerprint(config: "ExperimentConfig", data: SequenceData) -> str:
    """Identifies a soft-label store: the teachers, ensembling and store mode (T only when fixed)."""
    method: MethodConfig = config.method
    keys = [s.key(data.fingerprint, config.train) for s in teacher_specs(config)]
    fixed_t = method.store == "topk" or (method.store == "dense" and method.ensemble == "probs")
    payload = {
        "teachers": keys, "method": method.name, "ensemble": method.ensemble, "store": method.store,
        "weights": list(method.ensemble_weights) if method.ensemble_weights is not None else None,
        "top_k": method.store_top_k if method.store == "topk" else None,
        "temperature": method.temperature if fixed_t else None,
        "softrec_scale": method.softrec_scale if method.name == "softrec" else None,
        "data": data.fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
