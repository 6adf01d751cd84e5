"""A real two-node Ray cluster on this machine: teachers are trained on both nodes.

``ray start --head`` plus ``ray start --address`` (one CPU each, a small object store each, own
temp dir), token authentication on with a generated token for every process (the notes' §3: a
local ``ray.init()`` elsewhere in the session makes ``ray start`` turn it on anyway).  Both run
with ``--block`` as children of this test and are stopped by signalling exactly them; ``ray stop``
is not used because it kills every Ray process of the user on the machine (the session's runtime
and other people's clusters included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

DRIVER = """
import json, sys, ray
import csrec.sweep as sweep
from csrec.data import SyntheticConfig
sweep.init_ray(address=sys.argv[1])
deadline = __import__("time").monotonic() + 60
while len([n for n in ray.nodes() if n["Alive"]]) < 2 and __import__("time").monotonic() < deadline:
    __import__("time").sleep(0.5)
config = sweep.base_config("synthetic", "gru4rec", "csrec-m", num_teachers=4, epochs=2, patience=0,
                           synthetic=SyntheticConfig(n_users=120, n_items=60, n_clusters=6, mean_length=14))
report = sweep.train_teachers([config], sys.argv[2], {"teacher_cpus": 1}, sweep="two-node")
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print("RESULT " + json.dumps({"records": report.records, "nodes": nodes, "summary": report.summary()}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ours(marker: str) -> list[int]:
    """Pids of processes whose command line mentions ``marker`` (our temp dir)."""
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


@pytest.fixture
def two_node_cluster():
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

    temp_dir = tempfile.mkdtemp(prefix="csrec2n", dir="/tmp")  # short: Ray's socket paths are length-limited
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=generate_new_authentication_token())
    env.pop("RAY_ADDRESS", None)
    logs = open(Path(temp_dir) / "start.log", "w")
    common = ["--block", "--num-cpus=1", f"--object-store-memory={200 * 1024 * 1024}", "--disable-usage-stats"]
    head = subprocess.Popen(
        ["ray", "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--dashboard-port=0", *common],
        env=env, stdout=logs, stderr=subprocess.STDOUT, start_new_session=True,
    )
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while subprocess.run(["ray", "status", f"--address={address}"], env=env, capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < deadline, (Path(temp_dir) / "start.log").read_text()
            time.sleep(1)
        worker = subprocess.Popen(
            ["ray", "start", f"--address={address}", *common], env=env, stdout=logs, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(worker)
        yield address, env, temp_dir
    finally:
        for proc in reversed(procs):  # worker first, then head; --block stops the node's processes
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        time.sleep(1)
        for pid in _ours(temp_dir):  # anything of this cluster still alive: end it, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        logs.close()
        leftover = _ours(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftover, f"processes of the test cluster left running: {leftover}"


def test_teachers_train_on_both_nodes(two_node_cluster, tmp_path):
    address, env, _ = two_node_cluster
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", DRIVER, address, str(tmp_path / "teachers")], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert len(result["nodes"]) == 2
    trained = [r for r in result["records"] if r["trained"]]
    assert len(trained) == 4
    used = {r["node_id"] for r in trained}
    assert used == set(result["nodes"]), f"teachers ran on {used}, cluster nodes {result['nodes']}"
    assert len(list((tmp_path / "teachers").glob("teacher-*.pt"))) == 4
    print(f"\ntwo-node: {result['summary']} ({time.perf_counter() - started:.1f}s incl. driver start)")
