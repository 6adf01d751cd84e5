"""Starting or joining Ray, the resources a sweep asks for, and small helpers shared by the layer.

Ray 2.60 facts this module encodes (``../shared/notes/ray-2.60-notes.md``):

* The dashboard stays on: Train's placement-group cleaner needs the State API, and without it
  a stopped trial that runs a TorchTrainer leaks its placement group and hangs the sweep (§1.4).
* A local ``ray.init()`` turns token authentication on and writes ``~/.ray/auth_token``; a
  driver that later joins a ``ray start`` cluster with ``address=...`` must then run with
  ``RAY_AUTH_MODE=token`` (§3).  :func:`init_ray` sets it when a token is available and the
  variable is unset, which also works against a cluster with authentication disabled.
* A local ``ray.init()`` warns that it turned token authentication on; that is the secure default
  a local runtime should have, not something to act on, so the warning is kept out of the output.
* ``ray.init(address=HOST:PORT)`` with nothing listening there retries the GCS for minutes,
  logging a warning every few seconds; :func:`init_ray` first tries a plain TCP connection with a
  short timeout and raises :class:`ClusterUnreachable` (one line) when nothing answers.
* ``ray.init()`` makes SIGTERM exit the driver at once (``sys.exit``): a sweep stopped by a batch
  scheduler or ``kill`` printed no word on how to go on and left its teachers running.
  :func:`init_ray` makes SIGTERM stop the sweep as Ctrl-C does instead (KeyboardInterrupt).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray._private import ray_constants

from csrec.errors import ConfigError, CSRecError
from csrec.search.config import Resources

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


#: Seconds a TCP connection to a cluster's GCS may take before the cluster counts as unreachable.
PROBE_TIMEOUT_S = 3.0
_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
#: Seconds a local Ray runtime's dashboard may take to start (``RAY_DASHBOARD_STARTUP_TIMEOUT_S`` overrides).
DASHBOARD_STARTUP_TIMEOUT_S = 600


class ClusterUnreachable(CSRecError):
    """No Ray cluster answers at the address a sweep was asked to join."""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for ``auto`` and the like."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_address(address: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`ClusterUnreachable` when nothing accepts a TCP connection at ``address``'s port.

    ``None`` (a local runtime) and ``auto`` (Ray finds the cluster itself) are not probed.
    """
    target = _host_port(address) if address else None
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
    start = "ray start --head" if "://" in address else f"ray start --head --port={target[1]}"
    raise ClusterUnreachable(
        f"no Ray cluster at --address {address} (connecting to {target[0]}:{target[1]}: {reason}); start one "
        f"with `{start}` on that machine, or drop --address to run on a local Ray runtime"
    )


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
    check_address(address)
    started = time.perf_counter()
    kwargs: dict = {"log_to_driver": log_to_driver, "include_dashboard": True}
    if quiet:
        kwargs["logging_level"] = logging.WARNING
    if address:
        if "RAY_AUTH_MODE" not in os.environ and _token_available():
            os.environ["RAY_AUTH_MODE"] = "token"  # see the module docstring
        kwargs.pop("include_dashboard")  # the cluster's head owns the dashboard
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ClusterUnreachable(
                f"cannot join the Ray cluster at --address {address} ({first}); start one with `ray start --head`, "
                f"or drop --address to run on a local Ray runtime") from None
    else:
        if "RAY_DASHBOARD_STARTUP_TIMEOUT_S" not in os.environ:
            # Ray reads this once, at import, and gives the dashboard 60 s, then fails ray.init. A sweep
            # started at low priority beside a running one (the two cores busy) was seen to need more.
            ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S = max(ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S,
                                                               DASHBOARD_STARTUP_TIMEOUT_S)
        token_log = logging.getLogger(_TOKEN_LOGGER)
        level = token_log.level
        token_log.setLevel(logging.ERROR)  # see the module docstring
        try:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory, **kwargs)
        finally:
            token_log.setLevel(level)
    _stop_on_sigterm()
    return time.perf_counter() - started


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def _stop_on_sigterm() -> None:
    """Replace the SIGTERM handler ray.init installs (``sys.exit``) with one that raises
    KeyboardInterrupt, so that a terminated sweep cancels its teachers (each keeps its last finished
    epoch) and says how to resume, as on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0


def node_id() -> str:
    """This process's Ray node, or "" outside Ray (never starts a Ray instance, as
    ``ray.get_runtime_context()`` would)."""
    if not ray.is_initialized():
        return ""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray
        return ""


def resolve_resources(resources: "Resources | dict | None") -> Resources:
    """``resources`` with unset GPU counts filled in for the cluster Ray is connected to.

    A trial or teacher that asks for more CPUs than the largest node has would wait for them
    forever (Ray keeps such a task pending without a word to the driver): an error instead."""
    resolved = Resources.from_any(resources).resolved(cluster_gpus())
    if ray.is_initialized():
        largest = max((node.get("Resources", {}).get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")),
                      default=0.0)
        for option, cpus in (("--cpus-per-trial", resolved.trial_cpus), ("--cpus-per-teacher", resolved.teacher_cpus)):
            if largest and cpus > largest:
                raise ConfigError(f"{option} {cpus:g}: no node of this Ray cluster has that many CPUs "
                                 f"(the largest has {largest:g}); lower it or raise --num-cpus")
    return resolved


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


# --- a real multi-node cluster on one machine (tests and bench/sweep_efficiency.py) ------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_naming(marker: str) -> list[int]:
    """Pids of processes whose command line names ``marker`` (a cluster's own temp dir)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            out.append(int(entry.name))
    return out


class LocalCluster:
    """``ray start --head`` plus ``ray start --address`` for each further node, all with ``--block``.

    Every node is a child of this process with its own session; the cluster has its own temp dir
    (whose path marks each of its processes), its own port, and token authentication with a token
    generated for it alone (a local ``ray.init()`` elsewhere makes ``ray start`` turn auth on
    anyway, notes §3).  :meth:`stop` signals exactly the processes started here: ``ray stop``
    would kill every Ray process of the user on the machine, other sweeps' included.
    """

    def __init__(self, n_nodes: int, total_cpus: int, object_store_mib: int = 200, start_timeout_s: float = 120):
        from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

        if n_nodes < 1 or total_cpus < n_nodes:
            raise ValueError(f"{total_cpus} CPUs cannot be split over {n_nodes} nodes")
        self.cpus = [total_cpus // n_nodes + (1 if i < total_cpus % n_nodes else 0) for i in range(n_nodes)]
        self.object_store = object_store_mib * 1024 * 1024
        self.start_timeout_s = start_timeout_s
        self.temp_dir = tempfile.mkdtemp(prefix="csrecrc", dir="/tmp")  # short: Ray's socket paths are length-limited
        self.temp_dirs = [self.temp_dir]  # every temp dir a node of this cluster uses (stop() ends their processes)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=generate_new_authentication_token(),
                        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []
        self.log_path = Path(self.temp_dir) / "start.log"
        self.log = None

    def start(self) -> "LocalCluster":
        """Start the head, wait until it answers ``ray status``, then start the other nodes (not awaited)."""
        self.log = open(self.log_path, "w")
        common = ["--block", f"--object-store-memory={self.object_store}", "--disable-usage-stats"]
        self.procs.append(subprocess.Popen(
            ["ray", "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}", "--dashboard-port=0",
             f"--num-cpus={self.cpus[0]}", *common],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + self.start_timeout_s
        while subprocess.run(["ray", "status", f"--address={self.address}"], env=self.env,
                             capture_output=True).returncode:
            if self.procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the head node did not start:\n" + self.log_path.read_text()[-3000:])
            time.sleep(1)
        for cpus in self.cpus[1:]:
            self.procs.append(subprocess.Popen(
                ["ray", "start", f"--address={self.address}", f"--num-cpus={cpus}", *common],
                env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True))
        return self

    def stop(self) -> list[int]:
        """Stop this cluster's processes (other nodes first, then the head); returns the pids left over."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        time.sleep(1)
        for pid in self.leftover():  # anything of this cluster still alive: end it, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        if self.log is not None:
            self.log.close()
        return self.leftover()

    def leftover(self) -> list[int]:
        """Pids of processes that name one of this cluster's temp dirs."""
        return sorted({pid for marker in self.temp_dirs for pid in processes_naming(marker)})
