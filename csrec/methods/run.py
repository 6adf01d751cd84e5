"""Run a method end to end in one process: teachers → soft-label store → student.

The two expensive inputs can be supplied from outside, which is how the Ray layer plugs in
without this module knowing about Ray: ``pool`` (trained teachers, e.g. trained concurrently
beforehand) and ``store`` (a soft-label store, e.g. mapped from the object store).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from csrec.data.dataset import SequenceData
from csrec.errors import ConfigError
from csrec.evaluation import evaluate
from csrec.methods.ensemble import TeacherEnsemble
from csrec.methods.losses import fused_output_loss, popularity_logits, student_loss_from_teacher_probs
from csrec.methods.softlabels import SoftLabelStore, build_store, prior_store
from csrec.methods.teachers import TeacherPool, store_fingerprint, teacher_specs
from csrec.models.base import SequentialRecommender, build_backbone
from csrec.models.precision import CANONICAL, resolve_precision
from csrec.training import Batch, EpochLog, TrainOutcome, cross_entropy_loss, train_model

if TYPE_CHECKING:
    from csrec.methods.config import ExperimentConfig


@dataclass
class MethodOutcome:
    student: SequentialRecommender
    train: TrainOutcome
    teachers: list[dict] = field(default_factory=list)
    teacher_seconds: float = 0.0
    soft_label_seconds: float = 0.0
    store_bytes: int = 0
    ensemble: dict | None = None  # the teachers' ensemble's own test metrics (csrec.methods.ensemble)


#: A student keeps the teachers' tempered soft labels of every training target in memory when they
#: take at most this many bytes (TrainConfig.soft_label_cache_gib's default): Last.FM's 48,307 ×
#: 3,646 fit (704 MB in float32), Yelp's 229,449 × 20,033 do not (18.4 GB; 9.2 GB in bfloat16).
SOFT_LABEL_CACHE_BYTES = 1 << 30


class SoftLabelLoss:
    """The student's loss, Eq. 19–20, with soft labels read from a store by training-target row.

    For the code's KL direction the teachers' tempered softmax is read chunk by chunk inside the
    fused loss (:func:`fused_output_loss`), so no [rows × items] tensor exists at once;
    ``precision`` is the store product's arithmetic (csrec.models.precision spellings).

    The teachers are frozen, so a row's soft label at this T is the same in every epoch.  When all
    rows fit in ``cache_bytes``, the first call computes them once, in row order, and every later
    read is a row lookup instead of the teachers' product and softmax (the store's own
    ``teacher_probs``); otherwise every batch rebuilds its rows.  The cache is float32 (the same
    values as rebuilding), or bfloat16 when ``precision`` is bfloat16 (spelled out: the caller
    resolves ``"auto"``), that is when the student trains in bf16: the cache then takes half the
    memory (Yelp's fits in 9.2 GB) and each probability is rounded to 8 significant bits
    (relative error ≤ 2⁻⁹), far below what the bf16 training step itself rounds.
    """

    def __init__(self, store: SoftLabelStore, beta: float, temperature: float, direction: str = "code",
                 precision: str = "float32", cache_bytes: int = SOFT_LABEL_CACHE_BYTES):
        self.store, self.beta, self.temperature, self.direction = store, beta, temperature, direction
        self.precision = precision
        # Σ r log r of each store row at this T: a constant of the student, computed on a row's
        # first visit and reused by later epochs (only the loss value needs it, not the gradient).
        self._r_log_r = torch.zeros(store.n_rows, dtype=torch.float64)
        self._r_log_r_known = torch.zeros(store.n_rows, dtype=torch.bool)
        self.seconds_reading = 0.0  # time spent rebuilding soft labels (benchmarks report it)
        self.cache_dtype = torch.bfloat16 if CANONICAL.get(precision) == "bf16" else torch.float32
        self.cache_bytes = self.cache_dtype.itemsize * store.n_rows * store.n_items
        # A prior store's rows are one shared vector: nothing to gain from a per-row copy.
        self.caches = store.mode != "prior" and self.cache_bytes <= cache_bytes
        self._cache: torch.Tensor | None = None

    def __call__(self, model: SequentialRecommender, batch: Batch):
        reps, targets = model.training_representations(batch.inputs, batch.targets)
        columns = targets - 1
        if self.direction == "code" and self.beta > 0.0:
            rows = batch.rows
            cpu_rows = rows.cpu()
            known = bool(self._r_log_r_known[cpu_rows].all())
            cached = self._r_log_r[cpu_rows].to(device=reps.device, dtype=torch.float32) if known else None
            loss, logs, r_log_r = fused_output_loss(reps, *model.output_layer(), columns, self.beta,
                                                    self.reader(rows), cached)
            if not known:
                self._r_log_r[cpu_rows] = r_log_r.double().cpu()
                self._r_log_r_known[cpu_rows] = True
        else:  # the paper's KL direction needs log r: whole soft labels, then the plain loss
            with torch.no_grad():
                probs = self.reader(batch.rows)(0, len(batch.rows)).float()  # a bfloat16 cache's rows widened
            loss, logs = student_loss_from_teacher_probs(model.item_scores(reps), columns, probs, self.beta,
                                                         self.direction)
        extra = model.extra_loss()
        return (loss if extra is None else loss + extra), logs

    def reader(self, rows: torch.Tensor):
        """``teacher_probs(lo, hi)`` for the fused loss: rows lo..hi of ``rows`` from the store, timed."""
        if self.caches and self._cache is None:
            self._cache = self._all_rows(rows.device)

        def teacher_probs(lo: int, hi: int) -> torch.Tensor:
            started = time.perf_counter()
            if self._cache is not None:
                probs = self._cache.index_select(0, rows[lo:hi])
            else:
                probs = self.store.teacher_probs(rows[lo:hi], self.temperature, self.precision)
            self.seconds_reading += time.perf_counter() - started
            return probs

        return teacher_probs

    def _all_rows(self, device: torch.device, chunk_elements: int = 1 << 22) -> torch.Tensor:
        """Every row's soft label at this T, [n_rows × n_items] in ``cache_dtype``, built in row chunks."""
        started = time.perf_counter()
        n_rows, n_items = self.store.n_rows, self.store.n_items
        cache = torch.empty(n_rows, n_items, dtype=self.cache_dtype, device=device)
        step = max(1, chunk_elements // max(n_items, 1))
        for lo in range(0, n_rows, step):
            hi = min(lo + step, n_rows)
            cache[lo:hi] = self.store.teacher_probs(torch.arange(lo, hi, device=device), self.temperature,
                                                    self.precision)
        self.seconds_reading += time.perf_counter() - started
        return cache


def build_method_store(config: "ExperimentConfig", data: SequenceData, pool: TeacherPool,
                       score_ensemble: bool = False) -> tuple[SoftLabelStore, list[dict]]:
    """Train (or fetch) the method's teachers and build its soft-label store."""
    method = config.method
    fingerprint = store_fingerprint(config, data)
    if method.name == "softrec":
        counts = torch.as_tensor(data.item_counts()[1:])
        prior = popularity_logits(counts, method.softrec_scale).numpy()
        return prior_store(prior, data.n_train_targets, fingerprint), []
    specs = teacher_specs(config)
    weights = method.ensemble_weights
    if weights is not None and len(weights) != len(specs):
        raise ConfigError(f"ensemble_weights has {len(weights)} weights but {method.name} has {len(specs)} teachers")
    teachers = [pool.get(spec, data, config.train) for spec in specs]
    store = build_store(
        [t.model for t in teachers], data, mode=method.store, ensemble=method.ensemble,
        temperature=method.temperature, top_k=method.store_top_k, device=config.train.torch_device(),
        fingerprint=fingerprint, weights=None if weights is None else list(weights),
    )
    if score_ensemble:  # one test pass through every teacher: only where a result reports it (csrec.fit)
        ensemble = TeacherEnsemble([t.model for t in teachers], method.ensemble, method.temperature, weights)
        store.meta["ensemble_test"] = evaluate(ensemble, data, "test", device=config.train.torch_device()).metrics
    infos = [dict(t.info, key=t.key, role="main" if t.spec.robust else "teacher") for t in teachers]
    for t in teachers:
        if t.spec.robust:  # CSRec-T: report the side teacher g2 too (Table 5 lists every teacher)
            side = pool.get(t.spec.side, data, config.train)
            infos.append(dict(side.info, key=side.key, role="side"))
    return store, infos


def run_method(
    config: "ExperimentConfig",
    data: SequenceData,
    pool: TeacherPool | None = None,
    store: SoftLabelStore | None = None,
    teacher_infos: list[dict] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    state_path=None,
) -> MethodOutcome:
    """Train ``config``'s student (teachers and soft labels first, from ``pool`` or trained).

    ``state_path`` makes the student's training resumable (:func:`csrec.training.train_model`).
    """
    method = config.method
    pool = pool if pool is not None else TeacherPool()
    teacher_seconds = soft_label_seconds = 0.0
    infos = list(teacher_infos or [])
    loss_fn = cross_entropy_loss
    if method.uses_soft_labels:
        if store is None:
            started = time.perf_counter()
            # Teachers first (timed apart from the store build), then the store.
            for spec in teacher_specs(config):
                pool.get(spec, data, config.train)
            teacher_seconds = time.perf_counter() - started
            started = time.perf_counter()
            store, infos = build_method_store(config, data, pool, score_ensemble=True)
            soft_label_seconds = time.perf_counter() - started
        if store.n_rows != data.n_train_targets:
            raise ValueError(f"soft-label store has {store.n_rows} rows but the data has {data.n_train_targets} training targets")
        # The store's product follows the training precision unless the method pins its own.
        store_precision = config.train.precision if method.store_precision == "auto" else method.store_precision
        store_precision = resolve_precision(store_precision, config.train.torch_device())
        loss_fn = SoftLabelLoss(store, method.beta, method.temperature, method.kl_direction, store_precision,
                                cache_bytes=int(config.train.soft_label_cache_gib * (1 << 30)))
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed % (2**32))
    student = build_backbone(config.backbone, data.n_items, data.max_len, config.resolved_model())
    label = f"{config.backbone} {method.name} student"
    # A saved state continues only the same experiment on the same data (epochs, patience and
    # device may change: TrainConfig's own check).
    identity = {"experiment": {k: v for k, v in config.to_dict().items() if k not in ("train", "data")},
                "data": data.fingerprint}
    outcome = train_model(student, data, config.train, loss_fn, on_epoch=on_epoch, label=label,
                          state_path=state_path, state_identity=identity)
    return MethodOutcome(
        student=student, train=outcome, teachers=infos, teacher_seconds=teacher_seconds,
        soft_label_seconds=soft_label_seconds, store_bytes=0 if store is None else store.nbytes,
        ensemble=None if store is None else store.meta.get("ensemble_test"),
    )
