"""The teacher pool on Ray: each distinct teacher is trained once per storage location.

Teachers live in a :class:`csrec.methods.TeacherPool` directory (``<storage_path>/teachers``),
keyed by :meth:`TeacherSpec.key`.  Three routes fill it, and all three go through
:func:`ensure_teacher`, which takes a per-teacher file lock and re-checks the pool, so no
teacher is ever trained twice, whoever asks for it and however many ask at once:

* :func:`train_teachers` (the driver, before trials start): the missing teachers of a list of
  configs, concurrently, as plain Ray tasks (``num_gpus=1`` when the cluster has GPUs).  A
  1-worker TorchTrainer costs about 20 s to start on a small box, a Ray task 1–3 s, so plain
  tasks are the default; the measured submit→start overhead is returned and printed.
* the same with ``teacher_workers > 1``: one data-parallel ``TorchTrainer`` per teacher
  (:func:`train_teacher_torchtrainer`), checkpointed under ``<storage_path>/train_runs/<key>``
  so a rerun resumes it.
* a student trial whose teachers are not in the pool (Optuna's m, p and α are only known once a
  trial samples them) trains them in its own process through :func:`ensure_teachers`.

Every trained teacher also gets a small ``teacher-<key>.json`` beside its ``.pt`` with who
trained it, where (Ray node id, host, pid), for which sweep, and how long it took.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
import torch

from csrec.atomic import atomic_path, write_atomic
from csrec.data.dataset import SequenceData, load_dataset
from csrec.experiment.fit import peak_rss_mib
from csrec.methods import TeacherPool, TeacherSpec, teacher_specs, train_teacher
from csrec.methods.teachers import TrainedTeacher
from csrec.search.config import Resources
from csrec.sweep.runtime import node_id, resolve_resources
from csrec.training import StaleTrainingState, TrainConfig


# --- locks and records ---------------------------------------------------------------------------
@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True):
    """An exclusive ``flock`` on ``path``; yields whether it was acquired (always True if blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def info_path(pool_dir: str | os.PathLike, key: str) -> Path:
    return Path(pool_dir) / f"teacher-{key}.json"


def read_teacher_records(pool_dir: str | os.PathLike) -> list[dict]:
    """The sidecar records of every teacher trained into ``pool_dir`` by this layer."""
    out = []
    for path in sorted(Path(pool_dir).glob("teacher-*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _where() -> dict:
    return {"node_id": node_id(), "hostname": socket.gethostname(), "pid": os.getpid()}


def _save_teacher(pool: TeacherPool, teacher: TrainedTeacher, record: dict) -> None:
    teacher.info.update({k: v for k, v in record.items() if k not in ("spec",)})
    pool.save(teacher)
    write_atomic(info_path(pool.directory, teacher.key), json.dumps(record, indent=1, default=str))


# --- training one teacher, exactly once ----------------------------------------------------------
def ensure_teacher(
    pool_dir: str | os.PathLike,
    spec: TeacherSpec,
    data: SequenceData,
    train: TrainConfig,
    *,
    trained_by: str = "driver",
    sweep: str = "",
    blocking: bool = True,
    progress: "TeacherProgress | None" = None,
) -> dict | None:
    """Make sure ``spec`` is in the pool; returns a record (``trained`` says whether it trained here).

    A robust teacher's side teacher is ensured first.  Non-blocking: returns None when another
    process holds the teacher's lock (it is being trained elsewhere).  ``progress`` hears when a
    teacher starts training here, how its epochs go and when it is done (:class:`TeacherProgress`).
    """
    pool = TeacherPool(pool_dir)
    key = spec.key(data.fingerprint, train)
    record = {"key": key, "describe": spec.describe(), "trained": False, "trained_by": trained_by, "sweep": sweep}
    if pool.has(spec, data, train):
        return record
    if spec.robust:
        ensure_teacher(pool_dir, spec.side, data, train, trained_by=trained_by, sweep=sweep, blocking=True,
                       progress=progress)
    waited = time.perf_counter()
    with file_lock(Path(pool_dir) / "locks" / f"{key}.lock", blocking=blocking) as acquired:
        if not acquired:
            return None
        waited = time.perf_counter() - waited
        if pool.has(spec, data, train):  # trained by whoever held the lock before us
            return dict(record, waited_s=waited)
        side = pool.get(spec.side, data, train).model if spec.robust else None
        partial = pool.partial_path(key)
        on_epoch = None if progress is None else progress.start(
            spec.describe(), train.epochs, resumed=partial is not None and partial.is_file())
        teacher = pool.train(spec, data, dataclasses.replace(train, progress=False), side=side, on_epoch=on_epoch)
        if progress is not None:
            progress.done(spec.describe(), teacher.info["seconds"], teacher.info["valid"].get("ndcg@10"))
        record.update(
            trained=True, seconds=teacher.info["seconds"], finished_at=time.time(),
            valid_ndcg10=teacher.info["valid"].get("ndcg@10"), spec=spec.to_dict(), peak_rss_mib=peak_rss_mib(),
            **_where(),
        )
        _save_teacher(pool, teacher, record)
    return record


def ensure_teachers(
    pool_dir: str | os.PathLike, specs: list[TeacherSpec], data: SequenceData, train: TrainConfig,
    *, trained_by: str = "trial", sweep: str = "", progress: "TeacherProgress | None" = None,
) -> list[dict]:
    """Ensure several teachers cooperatively: first train those nobody else is training, then wait."""
    records: dict[int, dict] = {}
    for i, spec in enumerate(specs):
        rec = ensure_teacher(pool_dir, spec, data, train, trained_by=trained_by, sweep=sweep, blocking=False,
                             progress=progress)
        if rec is not None:
            records[i] = rec
    for i, spec in enumerate(specs):
        if i not in records:
            if progress is not None:
                progress.waiting(spec.describe())
            records[i] = ensure_teacher(pool_dir, spec, data, train, trained_by=trained_by, sweep=sweep,
                                        progress=progress)
    return [records[i] for i in range(len(specs))]


class TeacherProgress:
    """Progress of the teachers a trial trains itself, as notes to ``send(note: dict)``.

    A note is ``{"teacher": description, "event": "started" | "epoch" | "done" | "waiting", ...}``;
    epoch notes (epoch, epochs, best validation NDCG@10 and its epoch, seconds since this start) go
    at most every ``every_s`` seconds per teacher (a resumed teacher's first one at once), the
    others always.  The sweep sends them to the driver,
    which prints them beside the trial's own lines: on real data a teacher trains for most of an
    hour before its student's first epoch.
    """

    def __init__(self, send, every_s: float = 120.0, clock=time.monotonic):
        self._send, self.every_s, self.clock = send, every_s, clock

    def send(self, note: dict) -> None:
        """Pass ``note`` on; a receiver that fails (e.g. a driver of an older csrec, without the
        method) silences the progress, never the training."""
        if self._send is None:
            return
        try:
            self._send(note)
        except Exception as error:  # noqa: BLE001 - progress is informative only
            warnings.warn(f"teacher progress not reported: {type(error).__name__}: {error}", stacklevel=2)
            self._send = None

    def start(self, teacher: str, epochs: int, resumed: bool = False):
        """Note the start (``resumed``: from the state an interrupted run saved); returns the
        ``on_epoch`` callback for the teacher's training.  A resumed teacher's first epoch is noted
        at once: it says where the training picked up."""
        started = last = self.clock()
        self.send({"teacher": teacher, "event": "started", "epochs": epochs, "resumed": resumed})
        first = resumed

        def on_epoch(log) -> None:
            nonlocal last, first
            now = self.clock()
            if now - last < self.every_s and not first:
                return
            first = False
            last = now
            self.send({"teacher": teacher, "event": "epoch", "epoch": log.epoch, "epochs": epochs,
                       "best": log.best_value, "best_epoch": log.best_epoch, "seconds": now - started})

        return on_epoch

    def done(self, teacher: str, seconds: float, valid_ndcg10: float | None) -> None:
        self.send({"teacher": teacher, "event": "done", "seconds": seconds, "best": valid_ndcg10})

    def waiting(self, teacher: str) -> None:
        self.send({"teacher": teacher, "event": "waiting"})


def progress_line(note: dict) -> str:
    """The driver's text for a :class:`TeacherProgress` note."""
    teacher, event = note.get("teacher", "?"), note.get("event")
    best = note.get("best")
    best = "–" if best is None else f"{best:.4f}"
    if event == "started":
        how = "found the state an interrupted run saved, resuming" if note.get("resumed") else "training"
        return f"teacher {teacher}: {how} (at most {note.get('epochs', '–')} epochs)"
    if event == "epoch":
        return (f"teacher {teacher}: epoch {note.get('epoch')}/{note.get('epochs')}  valid NDCG@10 best so far "
                f"{best} (epoch {note.get('best_epoch')}), {note.get('seconds', 0.0):.0f}s")
    if event == "done":
        return f"teacher {teacher}: trained in {note.get('seconds', 0.0):.0f}s, valid NDCG@10 {best}"
    if event == "waiting":
        return f"teacher {teacher}: waiting, being trained elsewhere"
    return f"teacher {teacher}: {event}"


# --- which teachers a set of configs needs ------------------------------------------------------
def collect_teacher_specs(configs, data_by_fingerprint: dict[str, SequenceData] | None = None, load=None):
    """Distinct (spec, data, train) triples of ``configs``, by key; side teachers before robust ones.

    ``load(DataConfig) -> SequenceData`` loads the data (default: :func:`load_dataset`).
    """
    load = load or load_dataset
    cache: dict[str, SequenceData] = {}
    seen: dict[str, tuple] = {}
    for config in configs:
        cache_key = json.dumps(dataclasses.asdict(config.data), sort_keys=True, default=str)
        if cache_key not in cache:
            cache[cache_key] = load(config.data)
        data = cache[cache_key]
        train = dataclasses.replace(config.train, progress=False)
        for spec in teacher_specs(config):
            for s in ([spec.side] if spec.robust else []) + [spec]:
                key = s.key(data.fingerprint, train)
                if key not in seen:
                    seen[key] = (s, data, train)
    plain = [v for v in seen.values() if not v[0].robust]
    robust = [v for v in seen.values() if v[0].robust]
    return plain + robust


# --- Ray task route --------------------------------------------------------------------------------
#: The ``who`` of the progress notes teacher tasks send (the trials' notes carry their trial id).
TASK_NOTES = "teacher-task"


@ray.remote(max_retries=1)
def _teacher_task(pool_dir, spec, data, train, sweep, submitted_at, threads, notes, *_after):
    started = time.time()
    torch.set_num_threads(max(1, int(threads)))
    progress = None if notes is None else TeacherProgress(lambda note: notes.note.remote(TASK_NOTES, note))
    record = ensure_teacher(pool_dir, spec, data, train, trained_by="ray-task", sweep=sweep, progress=progress)
    record["launch_overhead_s"] = started - submitted_at
    record.setdefault("node_id", node_id())
    return record


@dataclass
class TeacherReport:
    """What :func:`train_teachers` did: every needed teacher's record, and the timings."""

    records: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    route: str = "ray-task"

    @property
    def trained(self) -> list[dict]:
        return [r for r in self.records if r.get("trained")]

    @property
    def reused(self) -> list[dict]:
        return [r for r in self.records if not r.get("trained")]

    @property
    def launch_overheads(self) -> list[float]:
        return [r["launch_overhead_s"] for r in self.records if "launch_overhead_s" in r]

    def summary(self) -> str:
        over = self.launch_overheads
        nodes = sorted({r.get("node_id", "")[:8] for r in self.trained})
        text = (
            f"teachers: {len(self.records)} needed, {len(self.trained)} trained, {len(self.reused)} reused "
            f"({self.route}, {self.wall_s:.1f}s wall"
        )
        if over:
            # Submission to start: the wait for a free CPU when teachers outnumber them, then the start-up.
            text += f"; submitted to started mean {np.mean(over):.2f}s max {max(over):.2f}s (queue + launch)"
        if self.trained:
            train_s = [r.get("seconds", 0.0) for r in self.trained]
            text += f"; training mean {np.mean(train_s):.2f}s; nodes {','.join(nodes)}"
        return text + ")"


def train_teachers(
    configs,
    pool_dir: str | os.PathLike,
    resources: Resources | dict | None = None,
    *,
    sweep: str = "",
    storage_path: str | os.PathLike | None = None,
    data_refs: dict[str, ray.ObjectRef] | None = None,
    verbose: bool = True,
    notes=None,
) -> TeacherReport:
    """Train the missing teachers of ``configs`` concurrently on Ray; skip those already pooled.

    ``data_refs`` (fingerprint → ObjectRef of the SequenceData) lets tasks map the data from the
    object store instead of reading the data files on their node.  ``notes``: an actor with
    ``note(who, note)`` and ``notes_since(seq)`` (the sweep's store registry); the tasks send their
    :class:`TeacherProgress` there and, when ``verbose``, the driver prints it (a teacher on real
    data trains for most of an hour).
    """
    started = time.perf_counter()
    resources = resolve_resources(resources)
    triples = collect_teacher_specs(configs)
    pool = TeacherPool(pool_dir)
    report = TeacherReport(route="ray-task" if resources.teacher_workers <= 1 else "torchtrainer")
    missing = []
    for spec, data, train in triples:
        if pool.has(spec, data, train):
            report.records.append({"key": spec.key(data.fingerprint, train), "describe": spec.describe(), "trained": False})
        else:
            missing.append((spec, data, train))
    if missing and resources.teacher_workers <= 1:
        reader = _NoteReader(notes) if verbose and notes is not None else None  # before the tasks' first notes
        refs: dict[str, ray.ObjectRef] = {}
        data_refs = dict(data_refs or {})
        for spec, data, train in missing:
            if data.fingerprint not in data_refs:
                data_refs[data.fingerprint] = ray.put(data)
            after = []
            if spec.robust:
                side_key = spec.side.key(data.fingerprint, train)
                if side_key in refs:
                    after.append(refs[side_key])  # Ray schedules the robust teacher after its side teacher
            task = _teacher_task.options(num_cpus=resources.teacher_cpus, num_gpus=resources.teacher_gpus)
            refs[spec.key(data.fingerprint, train)] = task.remote(
                str(pool_dir), spec, data_refs[data.fingerprint], train, sweep, time.time(),
                resources.teacher_cpus, notes if verbose else None, *after,
            )
        if verbose:  # teachers can take most of an hour each on real data: say what is going on
            print(f"[csrec.sweep] training {len(refs)} teacher(s) ({len(report.records)} already in the pool)", flush=True)
        pending = {ref: key for key, ref in refs.items()}
        by_key = {}
        try:
            while pending:
                # A timeout, so that Ctrl-C reaches Python within a second instead of waiting for a
                # teacher that may take most of an hour.
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if reader is not None:
                    reader.print_new()
                if not done:
                    continue
                record = ray.get(done[0])
                by_key[pending.pop(done[0])] = record
                if verbose:
                    print(f"[csrec.sweep] teacher {record.get('describe')} {_trained_line(record)} "
                          f"({len(by_key)}/{len(refs)})", flush=True)
        except KeyboardInterrupt:
            # The teachers in flight stop now; each keeps its last finished epoch in the pool's partial/.
            for ref in pending:
                ray.cancel(ref, force=True)
            if verbose:
                print(f"[csrec.sweep] interrupted: {len(by_key)} of {len(refs)} teacher(s) finished and pooled; "
                      f"{len(pending)} stopped, each to continue after its last finished epoch", flush=True)
            raise
        if reader is not None:
            reader.print_new(wait_s=5.0)  # the last notes (a teacher's start may come after its own end)
        report.records.extend(by_key[key] for key in refs)  # in submission order, whatever finished first
    elif missing:
        storage = Path(storage_path or Path(pool_dir).parent) / "train_runs"
        for wave in ([m for m in missing if not m[0].robust], [m for m in missing if m[0].robust]):
            if not wave:
                continue
            with ThreadPoolExecutor(max_workers=len(wave)) as executor:
                futures = [
                    executor.submit(train_teacher_torchtrainer, spec, data, train, pool_dir, resources,
                                    storage_path=storage, sweep=sweep)
                    for spec, data, train in wave
                ]
                report.records.extend(f.result() for f in futures)
    report.wall_s = time.perf_counter() - started
    if verbose and report.trained:  # all reused: nothing worth a line
        print(f"[csrec.sweep] {report.summary()}", flush=True)
    return report


class NoteFeed:
    """The progress notes an actor (the store registry) received since the last read, fetched
    without ever blocking the caller (except ``wait_s``) or raising: a request goes out, and its
    answer is taken on a later call once it has come."""

    def __init__(self, start: int = 0):
        self.read, self.pending = start, None

    def fetch(self, notes, wait_s: float = 0.0) -> list[dict]:
        try:
            if self.pending is None:
                self.pending = notes.notes_since.remote(self.read)
            ready, _ = ray.wait([self.pending], timeout=wait_s)
            if not ready:
                return []
            new = ray.get(self.pending)
        except Exception:  # noqa: BLE001 - progress lines are informative only
            self.pending = None
            return []
        self.pending = None
        self.read += len(new)
        return new

    def __getstate__(self):  # pickled with a Tune callback: never an ObjectRef of this driver
        return {**self.__dict__, "pending": None}


class _NoteReader:
    """Prints the teacher tasks' progress notes as they arrive.

    It starts at the notes there are now: the registry lives as long as the driver, and earlier
    cells' teachers sent theirs to it too."""

    def __init__(self, notes):
        self.notes = notes
        try:
            self.feed = NoteFeed(start=ray.get(notes.note_count.remote(), timeout=30))
        except Exception:  # noqa: BLE001 - progress lines are informative only
            self.notes = None

    def print_new(self, wait_s: float = 0.0) -> None:
        if self.notes is None:
            return
        for note in self.feed.fetch(self.notes, wait_s):
            if note.get("who") == TASK_NOTES and note.get("event") != "done":  # "done": the record's own line
                print(f"[csrec.sweep] {progress_line(note)}", flush=True)


def _trained_line(record: dict) -> str:
    if not record.get("trained"):
        return "was trained elsewhere meanwhile"
    peak = record.get("peak_rss_mib")
    return (f"trained in {record.get('seconds', 0.0):.0f}s, valid NDCG@10 {record.get('valid_ndcg10', 0.0):.4f}"
            + (f", peak RSS {peak:,.0f} MiB" if peak is not None else ""))


# --- TorchTrainer route (multi-worker teachers) --------------------------------------------------
def _torch_teacher_loop(cfg: dict) -> dict | None:
    """Ray Train worker: one teacher, data-parallel over ``world`` workers (gloo/NCCL all-reduce).

    Each rank trains (:func:`csrec.methods.train_teacher`) on an equal share of the teacher's
    training sub-sessions and the gradients are averaged after every backward pass, so all ranks
    take identical optimiser steps.  With more than one worker, early stopping is off (ranks must
    run the same number of steps) and each rank picks its best epoch on its share of the
    validation sequences; rank 0's model is saved into the pool.  After every epoch each rank puts
    its whole training state (:func:`csrec.training.train_model`'s ``state_path`` file: weights,
    optimiser, loss state, best epoch, history and random generators) into the run's Train
    checkpoint as ``rank<r>.state.pt``; a restarted run hands each rank its file back and training
    continues after that epoch as if it had never stopped.
    """
    from ray import train as ray_train

    loop_started = time.time()
    context = ray_train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(cfg["threads"])))
    data: SequenceData = ray.get(cfg["data"])  # an ObjectRef nested in the config: not resolved by Ray
    spec: TeacherSpec = cfg["spec"]
    train: TrainConfig = cfg["train"]
    pool = TeacherPool(cfg["pool_dir"])
    key = spec.key(data.fingerprint, train)
    record = {"key": key, "describe": spec.describe(), "trained": False, "trained_by": "torchtrainer",
              "sweep": cfg["sweep"], "workers": world, "launch_overhead_s": loop_started - cfg["submitted_at"]}
    if pool.has(spec, data, train):
        ray_train.report({"epoch": 0, "skipped": 1})
        return record if rank == 0 else None
    if torch.cuda.is_available():
        # Train shows every worker all GPUs of its node; "cuda" must mean this worker's own one.
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())

    state_name = f"rank{rank}.state.pt"
    state_path = Path(tempfile.gettempdir()) / f"csrec-teacher-{key}-{state_name}"
    _restore_rank_state(ray_train.get_checkpoint(), state_name, state_path)

    def prepare(model, params) -> None:
        if world > 1:
            _average_gradients(params, world)

    def on_epoch(log) -> None:
        metrics = {"epoch": log.epoch, "train_loss": log.train_loss, "valid_ndcg@10": log.valid.get("ndcg@10", 0.0)}
        # Every rank reports (it is a barrier) and adds its own state file to the epoch's checkpoint.
        with tempfile.TemporaryDirectory() as directory:
            shutil.copyfile(state_path, Path(directory) / state_name)
            ray_train.report(metrics, checkpoint=ray_train.Checkpoint.from_directory(directory))

    shard = None
    local_train = dataclasses.replace(train, progress=False)
    if world > 1:
        subset = data.subsample(spec.subsample, spec.subsample_seed) if spec.subsample is not None else None
        shard = _rank_shard(data, subset, spec.seed, rank, world)
        local_train = dataclasses.replace(local_train, patience=0)
    side = pool.get(spec.side, data, train).model if spec.robust else None
    try:
        teacher = train_teacher(spec, data, local_train, side=side, on_epoch=on_epoch, sequence_subset=shard,
                                prepare=prepare, state_path=state_path)
    except StaleTrainingState as stale:  # saved by another csrec version or setting (on every rank alike)
        warnings.warn(f"training the teacher from scratch: {stale}", stacklevel=2)
        state_path.unlink(missing_ok=True)
        teacher = train_teacher(spec, data, local_train, side=side, on_epoch=on_epoch, sequence_subset=shard,
                                prepare=prepare, state_path=state_path)
    state_path.unlink(missing_ok=True)
    if rank != 0:
        return None
    teacher = dataclasses.replace(teacher, key=key, model=teacher.model.cpu())
    record.update(trained=True, seconds=teacher.info["seconds"], finished_at=time.time(),
                  valid_ndcg10=teacher.info["valid"].get("ndcg@10"), spec=spec.to_dict(), peak_rss_mib=peak_rss_mib(),
                  **_where())
    with file_lock(Path(cfg["pool_dir"]) / "locks" / f"{key}.lock"):
        if not pool.has(spec, data, train):
            _save_teacher(pool, teacher, record)
    return record


def _rank_shard(data: SequenceData, subset, seed: int, rank: int, world: int) -> np.ndarray:
    """This rank's equal share of the teacher's training sequences (every rank runs the same steps)."""
    candidates = np.arange(data.n_sequences) if subset is None else np.asarray(subset)
    candidates = candidates[data.train_target_counts()[candidates] > 0]
    order = np.random.default_rng(seed).permutation(candidates)
    per_rank = len(order) // world
    return np.sort(order[rank * per_rank : (rank + 1) * per_rank])


def _average_gradients(params, world: int) -> None:
    """All-reduce each gradient as soon as it is accumulated: the ranks take identical optimiser steps."""
    import torch.distributed as dist

    def average(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(world)

    for p in params:
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(average)


def _restore_rank_state(checkpoint, state_name: str, state_path: Path) -> None:
    """Put this rank's training state from a restarted run's last checkpoint at ``state_path`` (or, with
    no checkpoint, remove a stale file of an earlier run there: the checkpoint is what counts)."""
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            if (Path(directory) / state_name).is_file():
                with atomic_path(state_path) as partial:
                    shutil.copyfile(Path(directory) / state_name, partial)
                return
    state_path.unlink(missing_ok=True)


def train_teacher_torchtrainer(
    spec: TeacherSpec, data: SequenceData, train: TrainConfig, pool_dir: str | os.PathLike,
    resources: Resources | dict | None = None, *, storage_path: str | os.PathLike, sweep: str = "",
) -> dict:
    """Train one teacher as a Ray Train run (``resources.teacher_workers`` workers).

    The run is named after the teacher key under ``storage_path``, so rerunning it after a crash
    resumes from its last checkpoint (Train V2 resumes a run of the same name automatically).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = resolve_resources(resources)
    key = spec.key(data.fingerprint, train)
    use_gpu = bool(resources.teacher_gpus)
    per_worker = {"CPU": resources.teacher_cpus}
    if use_gpu:
        per_worker["GPU"] = resources.teacher_gpus
    trainer = TorchTrainer(
        _torch_teacher_loop,
        train_loop_config={
            "spec": spec, "train": train, "pool_dir": str(pool_dir), "sweep": sweep, "threads": resources.teacher_cpus,
            "data": ray.put(data), "submitted_at": time.time(),
        },
        scaling_config=ScalingConfig(num_workers=max(1, resources.teacher_workers), use_gpu=use_gpu,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(
            name=f"teacher-{key}", storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=1, controller_failure_limit=0),
        ),
    )
    submitted = time.time()
    result = trainer.fit()
    record = result.return_value or {"key": key, "describe": spec.describe(), "trained": False}
    record["fit_s"] = time.time() - submitted
    return record
