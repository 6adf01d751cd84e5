"""The README's cluster workflow, end to end on one machine: a two-node local Ray cluster and the
smoke sweep submitted to it as a Ray job.

    python bench/ray_job_submit.py [--storage-path DIR] [--keep] [--cpus-per-node 1] [--timeout 1800]

The same commands as the README's cluster section, with a local head in place of ``ray up``:

1. ``ray start --head`` with the dashboard (which serves the job API) on a free port;
2. ``ray start --address HEAD`` for a second node;
3. ``ray job submit --address http://127.0.0.1:DASHBOARD --working-dir . -- python sweeps/grid.py
   --smoke --address auto --storage-path DIR``, from the repository root, waiting for the job;
4. checks that the job SUCCEEDED (``ray job status``) and that the run wrote ``table.md``, and
   records the wall times into bench/results/ray_job_submit.md;
5. always stops the cluster, also when a step fails.

The cluster is this script's own: its own temp dir, ports and authentication token (a local
``ray.init()`` leaves ``~/.ray/auth_token`` behind, after which ``ray start`` turns token
authentication on; every node, the job CLI and the job's driver then need ``RAY_AUTH_MODE=token``,
so it is set for all of them).  Both nodes run ``ray start --block`` as children of this process,
and stopping signals exactly them, then any leftover process naming the cluster's temp dir, by
pid: ``ray stop``, what a user runs on their own machine, would stop every Ray process of the
user on the machine, other sweeps' included.  The run directory goes to a temp dir outside the
work tree (``--working-dir .`` uploads the tree to the cluster) and is deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, markdown_table, write_result  # noqa: E402
from csrec.sweep.runtime import LocalCluster, free_port  # noqa: E402

OBJECT_STORE_MIB = 300  # per node: two nodes on one box would each size theirs for the whole host
SUBMISSION_ID = "csrec-smoke"


class Cluster(LocalCluster):
    """A head with the job server and one more node, both ``ray start --block`` children of this process."""

    def __init__(self, cpus_per_node: int):
        super().__init__(n_nodes=2, total_cpus=2 * cpus_per_node, object_store_mib=OBJECT_STORE_MIB)
        # The second node gets a temp dir of its own, as a node on another machine has: sharing the
        # head's, its runtime-env agent unpacks the job's working dir again over the head's copy,
        # which deletes the directory the job's driver runs in (Tune then fails in os.getcwd()).
        self.node_temp_dir = tempfile.mkdtemp(prefix="csrecjob", dir="/tmp")
        self.temp_dirs.append(self.node_temp_dir)
        self.dashboard_port = free_port()
        self.job_address = f"http://127.0.0.1:{self.dashboard_port}"
        self.commands: list[str] = []
        self.log_path = Path(self.temp_dir) / "nodes.log"

    def _node_ports(self) -> list[str]:
        """Ports a second node on the same host would otherwise take from the first."""
        return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]

    def _start_node(self, args: list[str], cpus: int) -> None:
        command = ["ray", "start", *args, f"--num-cpus={cpus}", f"--object-store-memory={self.object_store}",
                   "--disable-usage-stats", "--block", *self._node_ports()]
        self.commands.append(" ".join(shlex.quote(a) for a in command))
        self.procs.append(subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def alive_nodes(self) -> int:
        out = subprocess.run(["ray", "status", f"--address={self.address}"], env=self.env, capture_output=True, text=True)
        if out.returncode:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"^\s*\d+ node_", active, flags=re.M))

    def wait_for(self, nodes: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.alive_nodes() < nodes:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.log.flush()
                raise RuntimeError(f"the cluster did not reach {nodes} node(s):\n{self.log_path.read_text()[-3000:]}")
            time.sleep(1)

    def start(self, timeout_s: float = 180) -> "Cluster":
        """Start the head (with the dashboard, which serves the job API), then the second node; wait for both."""
        self.log = open(self.log_path, "w")
        self._start_node(["--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
                          "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                          f"--ray-client-server-port={free_port()}"], self.cpus[0])
        self.wait_for(1, timeout_s)
        self._start_node([f"--address={self.address}", f"--temp-dir={self.node_temp_dir}"], self.cpus[1])
        self.wait_for(2, timeout_s)
        return self


def job_status(cluster: Cluster) -> str:
    """The job's state as ``ray job status`` reports it (SUCCEEDED, FAILED, ...)."""
    out = subprocess.run(["ray", "job", "status", "--address", cluster.job_address, "--log-style", "record",
                          SUBMISSION_ID], env=cluster.env, capture_output=True, text=True)
    text = out.stdout + out.stderr
    # A finished job: "Job 'ID' succeeded" (or failed, stopped); a live one: "Status for job 'ID': RUNNING".
    found = re.search(rf"Job '{SUBMISSION_ID}' (\w+)", text) or re.search(rf"job '{SUBMISSION_ID}': (\w+)", text, flags=re.I)
    return found[1].upper() if found else f"unknown (ray job status exited {out.returncode}: {text.strip()[-300:]!r})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage-path", default=None,
                        help="run directory of the submitted sweep (default: a new temp dir, outside the work tree)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="CPUs of each of the two nodes (default: 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the job may take (default: 1800)")
    args = parser.parse_args()

    run_dir = Path(args.storage_path or tempfile.mkdtemp(prefix="csrec-job-run-")).resolve()
    if ROOT in run_dir.parents or run_dir == ROOT:
        parser.error(f"--storage-path {run_dir} is inside the work tree, which --working-dir . uploads")
    storage = run_dir / "smoke"
    entrypoint = ["python", "sweeps/grid.py", "--smoke", "--address", "auto", "--storage-path", str(storage)]
    figures: dict = {}
    cluster = Cluster(args.cpus_per_node)
    job_log = Path(cluster.temp_dir) / "job.log"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    submit = []
    try:
        cluster.start()
        figures["cluster_up_s"] = time.perf_counter() - started
        submit = ["ray", "job", "submit", "--address", cluster.job_address, "--submission-id", SUBMISSION_ID,
                  "--working-dir", ".", "--", *entrypoint]
        t0 = time.perf_counter()
        with open(job_log, "w") as log:
            try:
                completed = subprocess.run(submit, cwd=ROOT, env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
                                           timeout=args.timeout)
                figures["submit_rc"] = completed.returncode
            except subprocess.TimeoutExpired:
                figures["submit_rc"] = "timeout"
        figures["job_s"] = time.perf_counter() - t0
        figures["status"] = job_status(cluster)
        figures["job_log_lines"] = len(job_log.read_text(errors="replace").splitlines())
        figures["table_md"] = (storage / "table.md").is_file()
        summary = storage / "summary.json"
        figures["summary"] = json.loads(summary.read_text()) if summary.is_file() else None
    finally:
        t_stop = time.perf_counter()
        leftover = cluster.stop()
        figures["stop_s"] = time.perf_counter() - t_stop
        figures["total_s"] = time.perf_counter() - started
        figures["leftover"] = leftover
        log_tail = job_log.read_text(errors="replace")[-4000:] if job_log.is_file() else ""
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        shutil.rmtree(cluster.node_temp_dir, ignore_errors=True)
        if not args.keep and args.storage_path is None:
            shutil.rmtree(run_dir, ignore_errors=True)

    ok = figures.get("status") == "SUCCEEDED" and figures.get("table_md") and not leftover
    if not ok:
        print(log_tail, file=sys.stderr)
        print(f"ray_job_submit: FAILED: job {figures.get('status')}, submit exit {figures.get('submit_rc')}, "
              f"table.md {'found' if figures.get('table_md') else 'missing'}, {len(leftover)} process(es) left",
              file=sys.stderr)
        return 1

    shown = [c.replace(cluster.temp_dir, "TMP_HEAD").replace(cluster.node_temp_dir, "TMP_NODE") for c in cluster.commands]
    shown_submit = " ".join(shlex.quote(a) for a in submit).replace(str(storage), "RUN_DIR")
    rows = [
        ["cluster start (head, then a second node; both up)", f"{figures['cluster_up_s']:.1f}"],
        ["**`ray job submit` → job SUCCEEDED (upload, smoke sweep, its table)**", f"**{figures['job_s']:.1f}**"],
        ["cluster stop (every process of the two nodes ended)", f"{figures['stop_s']:.1f}"],
        ["whole workflow", f"{figures['total_s']:.1f}"],
    ]
    load_after = os.getloadavg()[0]
    summary = figures["summary"] or {}
    trials = summary.get("trials") if isinstance(summary, dict) else None
    body = "\n".join([
        markdown_table(["step", "wall (s)"], rows),
        "",
        f"Job status `SUCCEEDED` (`ray job status`), `table.md` written in the run directory"
        + (f", {trials} trials" if isinstance(trials, int) else "")
        + f"; the job's streamed log had {figures['job_log_lines']} lines. Two nodes with "
        f"{args.cpus_per_node} CPU each on this one machine, token authentication on; machine load average "
        f"(1 min) {load_before:.1f} before, {load_after:.1f} after. Commands run "
        "(ports picked free at run time):",
        "",
        "```bash",
        *shown,
        shown_submit,
        "```",
    ])
    write_result("ray_job_submit", "The README's cluster workflow: a local two-node cluster and `ray job submit`", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
