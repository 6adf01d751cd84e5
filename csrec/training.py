"""The training loop shared by teachers and students.

One forward pass per batch of whole sub-sessions computes every next-item target of every
sub-session (causal backbones).  This optimises the same set of (prefix → next item) targets as
the authors' one-prefix-per-sample loader, at a fraction of the cost.  The loss is a pluggable
function of (model, batch), so the CSRec student, the CSRec-T teacher and Base CE share the loop.

Validation NDCG@10 is computed after every epoch; training stops after ``patience`` epochs
without improvement and the best weights are restored before the single test pass.

Training is resumable: with ``state_path``, :func:`train_model` writes its whole state after every
epoch (weights, optimiser, the loss's own state, best epoch and weights, history and every random
generator) and a later call that finds the file continues after that epoch.  On CPU the resumed run
ends with the same weights, bit for bit, as one that was never stopped, so an interrupted Yelp-sized
trial or teacher loses at most one epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from csrec.atomic import atomic_path
from csrec.data.dataset import SequenceData
from csrec.errors import ConfigError
from csrec.evaluation import evaluate
from csrec.methods.losses import fused_output_loss
from csrec.models.base import SequentialRecommender
from csrec.models.precision import autocast, resolve_precision


TRAIN_PRECISIONS = ("auto", "bf16", "fp32")
BATCH_UNITS = ("sequences", "targets")


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 64  # sub-sessions per batch (each contributes all its next-item targets)
    # What batch_size counts: "sequences" (whole sub-sessions) or "targets" (whole sub-sessions
    # packed until about batch_size next-item targets, the authors' 64 samples per step).
    batch_unit: str = "sequences"
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation metric before stopping; 0 = never stop
    select_metric: str = "ndcg@10"  # validation metric that picks the best epoch
    seed: int = 2022
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto | bf16 | fp32: bf16 autocasts the training step's matrix products (float32 weights,
    # optimiser state and loss reductions; evaluation always scores in float32); auto = bf16
    # where the device multiplies bfloat16 natively (csrec.models.precision), else fp32.
    precision: str = "fp32"
    grad_clip: float | None = None
    # A model trained on a subset of the sub-sessions (CSRec-D's teachers, CSRec-T's side
    # teacher) picks its best epoch on the validation items of that subset (True, the authors'
    # code) or of every sub-session (False).
    subset_validation: bool = True
    progress: bool = True
    # Memory (GiB) a soft-label student may spend keeping every training target's soft label
    # between epochs instead of rebuilding it from the teachers in every batch
    # (csrec.methods.run.SoftLabelLoss); 0 = always rebuild.  A resource, like device: it does
    # not enter a teacher's pool key, and a saved state may continue under another value.
    soft_label_cache_gib: float = 1.0

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.batch_unit not in BATCH_UNITS:
            raise ConfigError(f"unknown batch_unit {self.batch_unit!r}; valid: {', '.join(BATCH_UNITS)}")
        if self.precision not in TRAIN_PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; valid: {', '.join(TRAIN_PRECISIONS)}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")
        if not 0 <= self.soft_label_cache_gib < math.inf:
            raise ConfigError(f"soft_label_cache_gib must be a finite number >= 0, got {self.soft_label_cache_gib}")
        from csrec.metrics import summarize

        valid_metrics = sorted(summarize(np.zeros(1, dtype=np.int64)))
        if self.select_metric not in valid_metrics:
            raise ConfigError(f"unknown select_metric {self.select_metric!r}; valid: {', '.join(valid_metrics)}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_precision(self) -> str:
        """``"bf16"`` or ``"fp32"`` on this config's device."""
        return resolve_precision(self.precision, self.torch_device())


@dataclass
class Batch:
    """A batch of training sub-sessions; ``rows`` locates each target in the flat target order."""

    sequences: torch.Tensor  # int64 [B]: sub-session indices
    inputs: torch.Tensor  # int64 [B, T]
    targets: torch.Tensor  # int64 [B, T] (0 = no target)
    rows: torch.Tensor  # int64 [N]: flat training-target index of each target, row-major order


class LossFunction(Protocol):
    def __call__(self, model: SequentialRecommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


def cross_entropy_loss(model: SequentialRecommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """ℓ_ce: softmax cross-entropy of every next-item target over all real items (Base)."""
    reps, targets = model.training_representations(batch.inputs, batch.targets)
    loss, logs, _ = fused_output_loss(reps, *model.output_layer(), targets - 1, beta=0.0)
    extra = model.extra_loss()
    if extra is not None:
        loss = loss + extra
    return loss, logs


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    valid: dict[str, float]
    seconds_train: float
    seconds_valid: float
    best_epoch: int
    best_value: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    best_epoch: int
    best_value: float
    history: list[EpochLog]
    seconds: float
    stopped_early: bool


class BatchMaker:
    """Turns the training split into shuffled batches without per-sample Python work."""

    def __init__(self, data: SequenceData, sequence_subset: np.ndarray | None, batch_size: int, device: torch.device,
                 unit: str = "sequences"):
        inputs, targets = data.train_arrays()
        counts = data.train_target_counts()
        subset = np.arange(data.n_sequences) if sequence_subset is None else np.asarray(sequence_subset)
        subset = subset[counts[subset] > 0]  # sub-sessions too short to have a training target
        self.subset = subset
        self.inputs = torch.as_tensor(inputs, device=device)
        self.targets = torch.as_tensor(targets, device=device)
        self.target_offsets = torch.as_tensor(data.train_target_offsets(), device=device)
        self.counts = torch.as_tensor(counts, device=device)
        self.batch_size = batch_size
        self.unit = unit
        self.device = device
        self.host_counts = counts
        self.n_targets = int(counts[subset].sum())

    def __len__(self) -> int:
        """Batches per epoch (by targets, an upper bound: a sub-session longer than B spans a batch)."""
        total = self.n_targets if self.unit == "targets" else len(self.subset)
        return math.ceil(total / self.batch_size)

    def batches(self, rng: np.random.Generator):
        order = rng.permutation(self.subset)
        for lo, hi in self.bounds(order):
            yield self.make(torch.as_tensor(order[lo:hi], device=self.device))

    def bounds(self, order: np.ndarray) -> list[tuple[int, int]]:
        """(start, end) positions in ``order`` of each batch.

        By targets, a sub-session joins batch ⌊(targets of the sub-sessions before it) / B⌋:
        batches hold B targets on average and never more than one sub-session past B, no
        sub-session is split, and the plan is a few vectorised operations per epoch.
        """
        if self.unit == "sequences":
            return [(lo, min(lo + self.batch_size, len(order))) for lo in range(0, len(order), self.batch_size)]
        before = np.cumsum(self.host_counts[order]) - self.host_counts[order]
        starts = np.flatnonzero(np.diff(before // self.batch_size, prepend=-1))
        ends = np.append(starts[1:], len(order))
        return list(zip(starts.tolist(), ends.tolist()))

    def make(self, sequences: torch.Tensor) -> Batch:
        counts = self.counts[sequences]
        width = int(counts.max())  # trim padding columns no sequence in the batch uses
        inputs = self.inputs[sequences, :width]
        targets = self.targets[sequences, :width]
        # Row-major positions of the targets, matching training_representations' order.
        starts = torch.repeat_interleave(self.target_offsets[sequences], counts)
        within = torch.arange(int(counts.sum()), device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return Batch(sequences=sequences, inputs=inputs, targets=targets, rows=starts + within)


def train_model(
    model: SequentialRecommender,
    data: SequenceData,
    config: TrainConfig,
    loss_fn: LossFunction = cross_entropy_loss,
    sequence_subset: np.ndarray | None = None,
    params: list[torch.nn.Parameter] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    label: str = "train",
    state_path: str | os.PathLike | None = None,
    state_identity: dict | None = None,
) -> TrainOutcome:
    """Train ``model`` in place with early stopping on validation; restores the best weights.

    ``sequence_subset`` restricts training (and, with ``config.subset_validation``, validation) to
    those sub-sessions (CSRec-D).
    ``params`` are the parameters to optimise (default: the model's; CSRec-T adds its noise model,
    whose state travels with the loss: a loss with ``state_dict``/``load_state_dict`` is resumed too).
    ``state_path``: after every epoch (before ``on_epoch``) the training state is written there
    atomically; if the file exists when training starts, training continues after its epoch
    (``on_epoch`` is called only for the epochs run in this call).  The file is left in place.
    ``state_identity``: what else the saved state must have been trained under (the experiment's
    configuration and data, say); a state saved under anything else raises :class:`StaleTrainingState`.
    """
    config.validate()
    device = config.torch_device()
    precision = config.resolved_precision()
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    batches = BatchMaker(data, sequence_subset, config.batch_size, device, config.batch_unit)
    valid_split = data.eval_split("valid")
    if sequence_subset is not None and config.subset_validation:
        valid_split = _take(valid_split, np.asarray(sequence_subset))
    params = params or list(model.parameters())
    optimiser = _adam(params, config, device)
    best_value, best_epoch, best_state = -math.inf, 0, None
    history: list[EpochLog] = []
    started = time.perf_counter()
    stopped_early = False
    state_path = Path(state_path) if state_path is not None else None
    identity = _state_identity(config, sequence_subset, state_identity)
    first_epoch, earlier_seconds = 1, 0.0
    if state_path is not None and state_path.is_file():
        state = _read_state(state_path, identity)
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            if state["loss"] is not None:
                loss_fn.load_state_dict(state["loss"])
        except (RuntimeError, ValueError, KeyError, AttributeError) as error:
            raise StaleTrainingState(f"{state_path}: the saved training state does not fit this model ({error}); "
                                     "delete the file to train from scratch") from None
        best_value, best_epoch, best_state = state["best_value"], state["best_epoch"], state["best_state"]
        history = [EpochLog(**entry) for entry in state["history"]]
        _set_random_state(rng, state["random"], device)
        first_epoch, earlier_seconds = state["epoch"] + 1, state["seconds"]
        # Stopped, or out of epochs, at the saved epoch: nothing left to train.
        stopped_early = bool(config.patience) and state["epoch"] - best_epoch >= config.patience
        if config.progress:
            print(f"[{label}] resumed after epoch {state['epoch']} from {state_path}", file=sys.stderr, flush=True)
    for epoch in range(first_epoch, config.epochs + 1):
        if stopped_early:
            break
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        extra_sums: dict[str, float] = {}
        for batch in batches.batches(rng):
            with autocast(precision, device):  # the forward only; backward follows its dtypes
                loss, logs = loss_fn(model, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimiser.step()
            total += float(loss.detach())
            count += 1
            for key, value in logs.items():
                extra_sums[key] = extra_sums.get(key, 0.0) + value
        t1 = time.perf_counter()
        valid = evaluate(model, data, "valid", device=device, eval_split=valid_split).metrics
        t2 = time.perf_counter()
        value = valid[config.select_metric]
        if value > best_value:
            best_value, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        log = EpochLog(
            epoch=epoch, train_loss=total / max(count, 1), valid=valid, seconds_train=t1 - t0,
            seconds_valid=t2 - t1, best_epoch=best_epoch, best_value=best_value,
            extra={k: v / max(count, 1) for k, v in extra_sums.items()},
        )
        history.append(log)
        if config.progress:
            print(
                f"[{label}] epoch {epoch:3d}/{config.epochs}  loss {log.train_loss:.4f}  "
                f"valid {config.select_metric} {value:.4f}  best {best_value:.4f} @ {best_epoch}  "
                f"({t1 - t0:.1f}s + {t2 - t1:.1f}s)",
                file=sys.stderr, flush=True,
            )
        if state_path is not None:
            _write_state(state_path, {
                "version": TRAINING_STATE_VERSION, "identity": identity, "epoch": epoch,
                "seconds": earlier_seconds + time.perf_counter() - started,
                "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                "loss": loss_fn.state_dict() if hasattr(loss_fn, "state_dict") else None,
                "best_value": best_value, "best_epoch": best_epoch, "best_state": best_state,
                "history": [dataclasses.asdict(entry) for entry in history], "random": _random_state(rng, device),
            })
        if on_epoch is not None:
            on_epoch(log)
        if config.patience and epoch - best_epoch >= config.patience:
            stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    optimiser.zero_grad(set_to_none=True)  # a trained model carries no stale gradients
    seconds = earlier_seconds + time.perf_counter() - started
    return TrainOutcome(best_epoch, best_value, history, seconds, stopped_early)


# --- the resumable training state --------------------------------------------------------------
#: Format of the file ``train_model(state_path=...)`` writes (bumped when its content changes).
TRAINING_STATE_VERSION = 1
#: TrainConfig fields a resumed run may change: how long it trains, where, and what it prints.
_RESUMABLE_CHANGES = ("epochs", "patience", "device", "progress", "soft_label_cache_gib")


class StaleTrainingState(ConfigError):
    """A ``state_path`` file that this training run cannot continue (another run's, or unreadable)."""


def _adam(params: list[torch.nn.Parameter], config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam, fused (one kernel per parameter instead of a dozen passes) where torch has it for ``device``.

    The item tables are most of a backbone's parameters, and the unfused update streams each of
    them through memory about ten times per batch: a tenth of a Yelp epoch on CPU.  The fused
    update is the same algorithm; its float rounding differs, so a run is repeatable under one
    setting, and a saved optimiser state loads under either.
    """
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


_FREED_MEMORY_KEPT = False


def keep_freed_memory() -> None:
    """Keep freed memory in the process (glibc) instead of handing it back to the OS after each batch.

    Every batch allocates and frees a few buffers of megabytes (logit chunks, item-table gradients).
    By default glibc serves blocks that size with fresh ``mmap`` pages and returns them on free, so
    each batch page-faults its buffers in again; on CPU that costs about a quarter of a Yelp epoch.
    Raising the mmap and trim thresholds keeps those pages mapped for reuse (peak RSS is unchanged:
    the same buffers are reused, not added).  Process-wide and idempotent; a no-op without glibc.
    """
    global _FREED_MEMORY_KEPT
    if _FREED_MEMORY_KEPT or not sys.platform.startswith("linux"):
        return
    _FREED_MEMORY_KEPT = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        # Older glibc caps the mmap threshold at 32 MiB and refuses more (returns 0).
        if not libc.mallopt(M_MMAP_THRESHOLD, 1 << 30):
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # musl or another libc: keep its defaults
        pass


def _state_identity(config: TrainConfig, sequence_subset, extra: dict | None) -> dict:
    """What a saved state must match to be continued: the training configuration (less what may
    change between calls; the precision as it resolves), the training sub-sessions, and the caller's."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESUMABLE_CHANGES}
    fields["precision"] = config.resolved_precision()
    subset = None
    if sequence_subset is not None:
        subset = hashlib.sha256(np.ascontiguousarray(np.asarray(sequence_subset, dtype=np.int64)).tobytes()).hexdigest()
    return {"config": fields, "subset": subset, "caller": extra or {}}


def _random_state(rng: np.random.Generator, device: torch.device) -> dict:
    # Only the training device's CUDA generator: a state may be continued where other GPUs are visible.
    return {
        "batches": rng.bit_generator.state, "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_random_state(rng: np.random.Generator, state: dict, device: torch.device) -> None:
    rng.bit_generator.state = state["batches"]
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_state(path: Path, state: dict) -> None:
    for attempt in range(2):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(path) as tmp:  # an interruption leaves the previous epoch's state whole
                torch.save(state, tmp)
            return
        except FileNotFoundError:  # the directory was removed under us (a shared pool's partial/)
            if attempt:
                raise


def _read_state(path: Path, identity: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise StaleTrainingState(f"{path}: not a readable training state ({type(error).__name__}: {error}); "
                                 "delete it to train from scratch") from None
    if not isinstance(state, dict) or state.get("version") != TRAINING_STATE_VERSION:
        raise StaleTrainingState(
            f"{path}: training state of another format (version {state.get('version') if isinstance(state, dict) else '?'}, "
            f"expected {TRAINING_STATE_VERSION}); delete it to train from scratch")
    saved = dict(state.get("identity", {}))
    # A state saved before a TrainConfig option existed was trained as that option's default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    saved["config"] = {**{k: defaults[k] for k in identity["config"] if k in defaults}, **saved.get("config", {})}
    if saved != identity:
        changed = sorted(k for k in set(saved.get("config", {})) | set(identity["config"])
                         if saved.get("config", {}).get(k) != identity["config"].get(k))
        if saved.get("subset") != identity["subset"]:
            changed.append("training sub-sessions")
        if saved.get("caller") != identity["caller"]:
            changed.append(", ".join(sorted(identity["caller"])) or "caller's identity")
        raise StaleTrainingState(f"{path}: saved by a different training run (differs in: {', '.join(changed)}); "
                                 "delete it to train from scratch")
    return state


def _take(split, index: np.ndarray):
    from csrec.data.dataset import EvalSplit

    return EvalSplit(
        inputs=split.inputs[index], lengths=split.lengths[index], targets=split.targets[index],
        positive=split.positive[index],
        true_targets=None if split.true_targets is None else split.true_targets[index],
    )
