"""Starting or joining Ray, the resources a sweep asks for, and small helpers shared by the layer.

Ray 2.60 facts this module encodes (``../shared/notes/ray-2.60-notes.md``):

* The dashboard stays on: Train's placement-group cleaner needs the State API, and without it
  a stopped trial that runs a TorchTrainer leaks its placement group and hangs the sweep (§1.4).
* A local ``ray.init()`` turns token authentication on and writes ``~/.ray/auth_token``; a
  driver that later joins a ``ray start`` cluster with ``address=...`` must then run with
  ``RAY_AUTH_MODE=token`` (§3).  :func:`init_ray` sets it when a token is available and the
  variable is unset, which also works against a cluster with authentication disabled.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import ray

log = logging.getLogger("csrec.sweep")

#: Fail fast instead of retrying forever when a Train worker group cannot be scheduled (§1.2).
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60")
#: Trials checkpoint every epoch (cheap JSON); Tune's "snapshotting too often" warning is noise here.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).expanduser().is_file():
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    log_to_driver: bool = False,
    quiet: bool = True,
) -> float:
    """Start a local Ray runtime, or join the cluster at ``address``; returns the seconds it took.

    Reuses an already initialised runtime.  ``log_to_driver=False`` (default) keeps trial and
    teacher output out of the console: errors still reach the driver through Tune.
    """
    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    kwargs: dict = {"log_to_driver": log_to_driver, "include_dashboard": True}
    if quiet:
        kwargs["logging_level"] = logging.WARNING
    if address:
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            os.environ["RAY_AUTH_MODE"] = "token"  # see the module docstring
        kwargs.pop("include_dashboard")  # the cluster's head owns the dashboard
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory, **kwargs)
    return time.perf_counter() - started


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


def node_id() -> str:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray
        return ""


@dataclass
class Resources:
    """What one trial and one teacher may use.  ``None`` GPUs: 1 when the cluster has GPUs, else 0.

    ``teacher_workers > 1`` trains each pre-trained teacher data-parallel with a TorchTrainer
    (about 20 s of start-up each on a small box); 1 (default) trains it as a plain Ray task.
    """

    trial_cpus: float = 1.0
    trial_gpus: float | None = None
    teacher_cpus: float = 1.0
    teacher_gpus: float | None = None
    teacher_workers: int = 1
    max_concurrent_trials: int | None = None

    @classmethod
    def from_any(cls, value: "Resources | dict | None") -> "Resources":
        if value is None:
            return cls()
        if isinstance(value, Resources):
            return value
        aliases = {"cpu": "trial_cpus", "gpu": "trial_gpus", "cpus": "trial_cpus", "gpus": "trial_gpus"}
        known = {f.name for f in fields(cls)}
        out = {}
        for key, val in dict(value).items():
            name = aliases.get(key.lower(), key)
            if name not in known:
                raise ValueError(f"unknown resource {key!r}; valid: cpu, gpu, {', '.join(sorted(known))}")
            out[name] = val
        return cls(**out)

    def resolved(self) -> "Resources":
        gpus = cluster_gpus()
        default_gpu = 1.0 if gpus > 0 else 0.0
        return Resources(
            trial_cpus=self.trial_cpus,
            trial_gpus=default_gpu if self.trial_gpus is None else self.trial_gpus,
            teacher_cpus=self.teacher_cpus,
            teacher_gpus=default_gpu if self.teacher_gpus is None else self.teacher_gpus,
            teacher_workers=self.teacher_workers,
            max_concurrent_trials=self.max_concurrent_trials,
        )


@dataclass
class Clock:
    """Named wall-clock sections, for the timings a sweep reports."""

    sections: dict[str, float] = field(default_factory=dict)

    def time(self, name: str):
        clock = self

        class _Section:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                clock.sections[name] = clock.sections.get(name, 0.0) + time.perf_counter() - self.started

        return _Section()
