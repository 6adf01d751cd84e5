"""The Tune trial: one student configuration, reported epoch by epoch, tested once at the end.

The trial builds its ExperimentConfig from the sweep cell's base config plus the sampled method
parameters, maps the prepared data and its soft-label store from the object store (building the
store itself only if nobody has; see :mod:`csrec.sweep.stores`), and calls
:func:`csrec.methods.run_method`.  Every epoch it reports the validation metrics
(``valid/<metric>``) and ``valid/best_ndcg@10`` (the best so far: what ASHA and Optuna read)
with a small checkpoint.  When training ends (best weights restored), it computes the test
metrics once, reports them as ``test/<metric>`` in a final result with ``final=True``, and saves
the per-sequence ranks (``ranks.npz``) and the best student weights in the trial directory and
in the final checkpoint.

A trial restored from its final checkpoint (the driver was killed after the trial finished and
before Tune recorded that) returns at once: a finished trial is never trained again.

Retries and resumed sweeps: every epoch's checkpoint carries the student's whole training state
(``training_state.pt``: weights, optimiser, best epoch, random generators; see
:func:`csrec.training.train_model`), so a retried or restored trial continues after its last
reported epoch and ends with the weights an uninterrupted trial ends with.  A checkpoint without
that file (written before it existed) restarts the student from scratch with the same seed and
skips re-reporting the epochs it already covers, so the iteration count seen by the schedulers
stays consistent.  ``attempts.log`` records, per attempt, where it started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ray import tune

from csrec.data.dataset import SequenceData
from csrec.evaluation import evaluate
from csrec.experiment.fit import peak_rss_mib
from csrec.experiment.protocol import protocol_settings
from csrec.methods import run_method
from csrec.methods.config import ExperimentConfig
from csrec.methods.teachers import TeacherPool
from csrec.metrics import per_sequence_metrics
from csrec.search.space import PARAMS
from csrec.training import StaleTrainingState
from csrec.sweep.stores import fetch_store

METRIC = "valid/best_ndcg@10"
#: The student's training state in each epoch checkpoint (csrec.training.train_model's state file).
TRAINING_STATE_FILE = "training_state.pt"
#: The trial parameter of a seed replicate: its seed index (see ExperimentConfig.replicate).
REPLICATE = "replicate"
MODE = "max"


@dataclass
class FailWhen:
    """Fault injection (tests, chaos checks): raise in every trial whose params match, at ``epoch``.

    With ``once`` (a file path visible to the trials) it raises only the first time: the marker
    file records that it did, so the retry succeeds.  A sweep takes one or a list of these.
    """

    params: dict
    epoch: int = 1
    once: str | None = None

    def __call__(self, params: dict, epoch: int) -> None:
        if epoch != self.epoch or any(params.get(k) != v for k, v in self.params.items()):
            return
        if self.once is not None:
            marker = Path(self.once)
            if marker.exists():
                return
            marker.write_text(f"failed once at epoch {epoch}\n")
        raise RuntimeError(f"injected failure at epoch {epoch} for {self.params}")


@dataclass
class SweepContext:
    """What every trial of one sweep cell shares (small; travels with ``tune.with_parameters``)."""

    base: ExperimentConfig
    pool_dir: str
    sweep: str
    trial_cpus: float = 1.0
    fault: object | None = None
    protocol: str = "csrec"

    def config_for(self, params: dict) -> ExperimentConfig:
        updates = {k: params[k] for k in PARAMS if k in params and params[k] is not None}
        if "num_teachers" in updates:
            updates["num_teachers"] = int(updates["num_teachers"])
            # A preset's per-teacher ensemble weights are for its own m (the authors': 2 teachers,
            # equal weights otherwise); weights the user gave are left to fail validation loudly.
            base = self.base
            preset = protocol_settings(self.protocol, base.backbone, base.method.name, base.method.num_teachers)
            if base.method.ensemble_weights is not None and \
                    tuple(base.method.ensemble_weights) == tuple(preset.get("ensemble_weights") or ()):
                updates["ensemble_weights"] = protocol_settings(
                    self.protocol, base.backbone, base.method.name, updates["num_teachers"]).get("ensemble_weights")
        for k in ("beta", "temperature", "subsample", "alpha"):
            if k in updates:
                updates[k] = float(updates[k])
        method = dataclasses.replace(self.base.method, **updates)
        method.validate()
        return dataclasses.replace(self.base, method=method).replicate(int(params.get(REPLICATE) or 0))


def work_dir(trial_id: str | None) -> Path:
    """Where a trial keeps its training state between epochs (on the machine that runs it)."""
    return Path(tempfile.gettempdir()) / f"csrec-trial-{trial_id or os.getpid()}"


def drop_training_states(trial_id: str, trial_path: str | os.PathLike | None) -> None:
    """Delete the training states a finished or stopped trial left (its working copy, on this
    machine, and its last checkpoint's): nothing resumes such a trial, and each is several times
    the model's size."""
    shutil.rmtree(work_dir(trial_id), ignore_errors=True)
    if not trial_path or "://" in str(trial_path) or not Path(trial_path).is_dir():
        return
    for path in Path(trial_path).rglob(TRAINING_STATE_FILE):
        path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` with ``source``'s bytes: a hard link where the filesystem allows (no copy), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _trial_dir() -> Path | None:
    try:
        path = tune.get_context().get_trial_dir()
    except Exception:  # noqa: BLE001
        return None
    return Path(path) if path and "://" not in str(path) else None


def _write_artifacts(directory: Path, student, test, valid, payload: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"test_ranks": test.ranks, "test_positive": test.positive, "valid_ranks": valid.ranks}
    if test.true_ranks is not None:
        arrays["test_true_ranks"] = test.true_ranks
    for name, vector in per_sequence_metrics(test.ranks, ks=(10,)).items():
        arrays[f"test_{name}"] = vector
    np.savez_compressed(directory / "ranks.npz", **arrays)
    torch.save(student.state_dict(), directory / "student.pt")
    (directory / "trial_result.json").write_text(json.dumps(payload, indent=1, default=str))


def run_trial(params: dict, *, ctx: SweepContext, data: SequenceData, registry) -> None:
    """Tune function trainable (wrapped with ``tune.with_parameters`` by the sweep)."""
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(ctx.trial_cpus)))
    config = ctx.config_for(params)
    reported_epochs = 0
    trial_dir = _trial_dir()
    if trial_dir is not None:
        trial_dir.mkdir(parents=True, exist_ok=True)
    # The student's training state lives here between epochs (each checkpoint carries a copy).  Not
    # in the trial's directory, whose files Tune uploads as artifacts at every report; named by the
    # trial, because a trial stopped early ends without its clean-up and the driver removes it then.
    work = work_dir(tune.get_context().get_trial_id())
    shutil.rmtree(work, ignore_errors=True)  # an earlier attempt's: the checkpoint says where to go on
    work.mkdir(parents=True)
    state_path = work / TRAINING_STATE_FILE
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state_file = Path(directory) / "state.json"
            state = json.loads(state_file.read_text()) if state_file.is_file() else {}
            saved = Path(directory) / TRAINING_STATE_FILE
            if saved.is_file() and not state.get("final"):
                shutil.copyfile(saved, state_path)
        if state.get("final"):
            # The trial finished (its final result went with this checkpoint) but the driver was
            # killed before Tune recorded it as terminated: nothing left to train or report.
            shutil.rmtree(work, ignore_errors=True)
            return
        reported_epochs = int(state.get("epoch", 0))
    def log_attempt(text: str) -> None:  # one line per attempt: retries and resumes are visible after the fact
        if trial_dir is not None:
            with open(trial_dir / "attempts.log", "a") as handle:
                handle.write(f"{time.time():.3f} pid={os.getpid()} {text}\n")

    attempt = ("resumed after epoch" if state_path.is_file() else "replays to epoch") if reported_epochs else "starts at epoch"
    log_attempt(f"{attempt} {reported_epochs or 1}")

    store = infos = None
    event = {"store": "none", "fingerprint": "", "teachers": []}
    if config.method.uses_soft_labels:
        who = tune.get_context().get_trial_id() or ""
        store, infos, event = fetch_store(registry, config, data, ctx.pool_dir, sweep=ctx.sweep, who=who)
    teachers_trained = sum(1 for r in event["teachers"] if r.get("trained"))
    # Mapped from the object store (not built here): read-only shared-memory pages, no copy.
    zero_copy = store is not None and event["store"] == "hit" and not any(
        a.flags.writeable for a in store.arrays.values())
    setup_s = time.perf_counter() - started
    common = {"store_event": event["store"], "store_fingerprint": event["fingerprint"],
              "teachers_trained_here": teachers_trained, "setup_s": setup_s,
              "store_zero_copy": zero_copy, "store_bytes": 0 if store is None else int(store.nbytes)}

    def on_epoch(log) -> None:
        for fault in ctx.fault if isinstance(ctx.fault, (list, tuple)) else [ctx.fault]:
            if fault is not None:
                fault(params, log.epoch)
        if log.epoch <= reported_epochs:
            return  # a retry replays epochs its checkpoint already reported
        metrics = {"epoch": log.epoch, "train_loss": log.train_loss, METRIC: log.best_value,
                   "best_epoch": log.best_epoch, "final": False, "peak_rss_mib": peak_rss_mib(), **common}
        metrics.update({f"valid/{k}": v for k, v in log.valid.items()})
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "state.json").write_text(json.dumps({"epoch": log.epoch, "best": log.best_value}))
            _link_or_copy(state_path, Path(directory) / TRAINING_STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    def train():
        return run_method(config, data, pool=TeacherPool(ctx.pool_dir), store=store, teacher_infos=infos,
                          on_epoch=on_epoch, state_path=state_path)

    try:
        try:
            outcome = train()
        except StaleTrainingState as stale:
            # Saved under another configuration (the sweep was resumed with different settings):
            # train from scratch, replaying the epochs already reported, and say so.
            state_path.unlink(missing_ok=True)
            log_attempt(f"replays to epoch {reported_epochs} ({stale})")
            outcome = train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = config.train.torch_device()
    test = evaluate(outcome.student, data, "test", device=device)
    valid = evaluate(outcome.student, data, "valid", device=device)
    final = {
        "epoch": len(outcome.train.history), "final": True, METRIC: outcome.train.best_value,
        "best_epoch": outcome.train.best_epoch, "epochs_run": len(outcome.train.history),
        "stopped_early": outcome.train.stopped_early, "trial_s": time.perf_counter() - started,
        "student_s": outcome.train.seconds, "peak_rss_mib": peak_rss_mib(), **common,
    }
    final.update({f"valid/{k}": v for k, v in valid.metrics.items()})
    final.update({f"test/{k}": v for k, v in test.metrics.items()})
    payload = {"params": params, "config": config.to_dict(), "metrics": final, "teachers": outcome.teachers}
    if trial_dir is not None:
        _write_artifacts(trial_dir, outcome.student, test, valid, payload)
    with tempfile.TemporaryDirectory() as directory:
        _write_artifacts(Path(directory), outcome.student, test, valid, payload)
        Path(directory, "state.json").write_text(json.dumps({"epoch": final["epoch"], "final": True}))
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(directory))
