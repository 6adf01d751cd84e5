"""Sweep efficiency: teacher reuse, soft-label store bytes, and 1 vs 2 local Ray nodes.

    python bench/sweep_efficiency.py [--tiny] [--users 3000] [--items 2000] [--epochs 4] [--nodes 1,2]

One fixed sweep of 12 student trials on synthetic data (GRU4Rec, ASHA off, patience 0, so every
trial trains every epoch and the work is the same on every run):

* CSRec-M: m ∈ {1, 2, 3} × β ∈ {0.25, 0.75}, T = 3            (6 trials, one ``csrec.sweep.tune`` grid)
* CSRec-D: m ∈ {1, 2, 3} × p ∈ {0.7, 0.8}, β = 0.5, T = 3     (6 trials, a second grid, same pool)

For each cluster layout it starts a fresh local Ray cluster with ``ray start`` (1 node with all
CPUs, or a head and a worker node with the CPUs split between them), runs the sweep from a
driver process that joins it, with teachers trained from scratch into a fresh storage path, and
stops exactly the processes it started (``ray start --block`` children, signalled by pid, then
any leftover process whose command line names the cluster's own temp dir; ``ray stop`` is not
used because it stops every Ray process on the machine).  It reports:

1. distinct teachers trained by csrec's pool vs the Σ over trials of the teachers each trial
   needs (what a per-trial design such as the authors' scripts trains), and the teacher-seconds
   of both (the per-trial figure priced with the pool's own measured time of each teacher);
2. bytes of the soft-label stores put in the object store (numpy payload and the object store's
   own size of each object, from ``ray.experimental.get_object_locations``, with the number of
   node copies), and the object store's usage over all nodes (raylet store stats: in use after the
   sweep, peak sampled every 2 s, bytes created);
3. wall time of the whole sweep, split into the teachers, stores and Tune phases.

Writes bench/results/sweep_efficiency.md.  Run directories go under bench/results/runs/
(gitignored) and are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table, write_result  # noqa: E402

RUNS = RESULTS / "runs" / "sweep_efficiency"
BACKBONE = "gru4rec"
#: (method, grid, fixed overrides): 6 + 6 = 12 student trials.
CELLS = (
    ("csrec-m", {"num_teachers": [1, 2, 3], "beta": [0.25, 0.75]}, {"temperature": 3.0}),
    ("csrec-d", {"num_teachers": [1, 2, 3], "subsample": [0.7, 0.8]}, {"beta": 0.5, "temperature": 3.0}),
)
TINY = {"users": 300, "items": 200, "clusters": 8, "mean_length": 16.0, "epochs": 2}


# --- the driver (runs inside the cluster, one process per layout) -------------------------------------
def _store_stats() -> dict:
    """Object-store stats aggregated over every node of the cluster (one raylet RPC)."""
    from ray._private.internal_api import get_memory_info_reply
    from ray._private.state import state

    stats = get_memory_info_reply(state).store_stats
    return {"used": int(stats.object_store_bytes_used), "primary": int(stats.object_store_bytes_primary_copy),
            "objects": int(stats.num_local_objects), "created": int(stats.cumulative_created_bytes),
            "spilled": int(stats.spilled_bytes_total), "capacity": int(stats.object_store_bytes_avail)}


class _Sampler(threading.Thread):
    """Polls the cluster's object-store stats every ``every`` seconds; keeps the peaks."""

    def __init__(self, every: float = 2.0):
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.peak_used = self.peak_primary = self.samples = 0
        self.error = ""

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                stats = _store_stats()
                self.peak_used = max(self.peak_used, stats["used"])
                self.peak_primary = max(self.peak_primary, stats["primary"])
                self.samples += 1
            except Exception as exc:  # noqa: BLE001 - a missed sample is not fatal
                self.error = f"{type(exc).__name__}: {exc}"
            self.stop.wait(self.every)


def _cell_kwargs(args, fixed: dict) -> dict:
    from csrec.data import SyntheticConfig

    synthetic = SyntheticConfig(n_users=args.users, n_items=args.items, n_clusters=args.clusters,
                                mean_length=args.mean_length)
    return dict(epochs=args.epochs, patience=0, seed=0, synthetic=synthetic, use_cache=False, **fixed)


def driver(args) -> None:
    import ray
    from ray.experimental import get_object_locations

    import csrec.sweep as sweep
    from csrec.data.dataset import load_dataset
    from csrec.methods import teacher_specs
    from csrec.search import grid_product
    from csrec.sweep.trial import SweepContext

    out: dict = {"nodes_wanted": args.nodes}
    sweep.init_ray(address=args.address)
    deadline = time.monotonic() + 120
    while len([n for n in ray.nodes() if n["Alive"]]) < args.nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len([n for n in ray.nodes() if n['Alive']])} of {args.nodes} nodes came up")
        time.sleep(0.5)
    out["nodes_ready_at"] = time.time()
    nodes = sorted((n for n in ray.nodes() if n["Alive"]),  # the head first
                   key=lambda n: "node:__internal_head__" not in n["Resources"])
    out["nodes"] = {n["NodeID"]: n["Resources"].get("CPU", 0) for n in nodes}
    out["store_stats_start"] = _store_stats()
    storage = Path(args.storage)
    pool_dir = storage / "teachers"

    sampler = _Sampler()
    sampler.start()
    cells = []
    started = time.perf_counter()
    for method, grid, fixed in CELLS:
        cell_started = time.perf_counter()
        result = sweep.tune("synthetic", BACKBONE, method, grid=grid, storage_path=str(storage), asha=False,
                            resume=False, verbose=0, resources={"cpu": 1, "teacher_cpus": 1},
                            **_cell_kwargs(args, fixed))
        trials = result.trials
        cells.append({
            "method": method, "grid": grid, "fixed": fixed, "wall_s": time.perf_counter() - cell_started,
            "timings": result.timings, "trials": len(trials), "expected": result.trials_expected,
            "status": trials["status"].value_counts().to_dict() if len(trials) else {},
            "store_events": trials["store_event"].value_counts().to_dict() if "store_event" in trials else {},
            "zero_copy": int(trials["store_zero_copy"].fillna(False).astype(bool).sum()) if "store_zero_copy" in trials else 0,
            "trial_s": trials["trial_s"].tolist() if "trial_s" in trials else [],
            "student_s": trials["student_s"].tolist() if "student_s" in trials else [],
            "teachers_trained_in_trials": int(trials["teachers_trained_here"].fillna(0).sum())
            if "teachers_trained_here" in trials else 0,
            "teachers_trained": result.teachers_trained,
            "pids": [int(v) for v in trials["pid"].dropna()] if "pid" in trials else [],
            "best_config": result.best_config, "best_test": result.best_test,
        })
        print(f"[sweep_efficiency] {result.summary()}", flush=True)
    out["sweep_s"] = time.perf_counter() - started
    sampler.stop.set()
    sampler.join(timeout=10)
    out["cells"] = cells

    # Object store after the sweep (before this driver maps anything itself).
    out["store_stats_end"] = _store_stats()
    out["peak_used"], out["peak_primary"], out["samples"] = sampler.peak_used, sampler.peak_primary, sampler.samples
    out["sampler_error"] = sampler.error

    # The soft-label stores the registry holds: object sizes and copies, then the numpy payload.
    refs = sweep.store_refs()
    locations = get_object_locations(list(refs.values()))
    stores = []
    for fp, ref in refs.items():
        where = locations.get(ref, {})
        store = ray.get(ref)
        stores.append({"fp": fp, "object_size": where.get("object_size"), "copies": len(where.get("node_ids") or []),
                       "nbytes": store.nbytes, "rows": store.n_rows, "mode": store.mode,
                       "arrays": {k: [list(a.shape), str(a.dtype)] for k, a in store.arrays.items()}})
        del store
    out["stores"] = stores

    # Where the student trials ran: the node of the actor whose pid each trial reported (Tune's
    # trial actors are dead by now; the State API keeps them).
    try:
        from ray.util.state import list_actors

        actors = list_actors(limit=10_000, raise_on_missing_output=False)
        node_of_pid = {a.pid: a.node_id for a in actors}
        out["trial_actor_nodes"] = [node_of_pid.get(pid) for c in cells for pid in c["pids"]]  # one per trial
    except Exception as exc:  # noqa: BLE001 - informative only
        out["trial_actor_nodes"] = None
        out["trial_actor_error"] = f"{type(exc).__name__}: {exc}"

    # Teachers: what the pool trained, and what a per-trial design would train.
    records = [r for r in sweep.read_teacher_records(pool_dir) if r.get("trained")]
    seconds = {r["key"]: float(r.get("seconds", 0.0)) for r in records}
    out["teachers"] = [{"key": r["key"], "describe": r.get("describe"), "seconds": r.get("seconds"),
                        "node_id": r.get("node_id"), "trained_by": r.get("trained_by")} for r in records]
    data = None
    per_trial = []
    for method, grid, fixed in CELLS:
        base = sweep.base_config("synthetic", BACKBONE, method, **_cell_kwargs(args, fixed))
        if data is None:
            data = load_dataset(base.data)
        ctx = SweepContext(base=base, pool_dir="", sweep="")
        for point in grid_product(grid):
            config = ctx.config_for(point)
            keys = [s.key(data.fingerprint, config.train) for s in teacher_specs(config)]
            per_trial.append({"method": method, "point": point, "keys": keys,
                              "seconds": sum(seconds.get(k, float("nan")) for k in keys)})
    out["per_trial"] = per_trial
    out["data"] = data.stats()
    Path(args.driver_json).write_text(json.dumps(out, indent=1, default=str))


def run_layout(args, n_nodes: int, stamp: str) -> dict:
    storage = RUNS / f"{stamp}-{n_nodes}node"
    storage.mkdir(parents=True, exist_ok=False)
    out_json = storage / "driver.json"
    from csrec.sweep.runtime import LocalCluster

    cluster = LocalCluster(n_nodes, args.cpus, args.object_store_mib)
    leftover: list[int] = []
    load_before = os.getloadavg()[0]
    started = time.time()
    try:
        cluster.start()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--driver-json", str(out_json), "--address",
               cluster.address, "--storage", str(storage), "--nodes", str(n_nodes), "--users", str(args.users),
               "--items", str(args.items), "--clusters", str(args.clusters), "--mean-length", str(args.mean_length),
               "--epochs", str(args.epochs)]
        print(f"[sweep_efficiency] {n_nodes} node(s) {cluster.cpus} CPUs at {cluster.address}; storage {storage}",
              flush=True)
        with open(storage / "driver.log", "w") as log:
            run = subprocess.run(cmd, env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
                                 timeout=args.driver_timeout, cwd=ROOT)
        if run.returncode:
            tail = (storage / "driver.log").read_text()[-4000:]
            raise RuntimeError(f"the {n_nodes}-node driver failed (exit {run.returncode}):\n{tail}")
        result = json.loads(out_json.read_text())
    finally:
        stop_started = time.time()
        leftover = cluster.stop()
        stop_s = time.time() - stop_started
        if not leftover:
            shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    if leftover:
        raise RuntimeError(f"processes of the {n_nodes}-node cluster left running: {leftover}")
    result["load"] = [load_before, os.getloadavg()[0]]
    result["cluster_up_s"] = result["nodes_ready_at"] - started
    result["stop_s"] = stop_s
    result["total_s"] = time.time() - started
    result["cpus"] = cluster.cpus
    result["storage"] = str(storage)
    if not args.keep:
        shutil.rmtree(storage, ignore_errors=True)
    return result


# --- the table --------------------------------------------------------------------------------------
def _mib(n) -> str:
    return "–" if n is None else f"{n / 2**20:,.1f}"


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def tabulate(args, results: list[dict]) -> str:
    header = ["", *[f"{r['nodes_wanted']} node{'s' if r['nodes_wanted'] > 1 else ''} "
                    f"({' + '.join(str(c) for c in r['cpus'])} CPUs)" for r in results]]
    rows: list[list] = []

    def row(label: str, fn) -> None:
        rows.append([label, *[fn(r) for r in results]])

    def timing(r, key):
        return sum(c["timings"].get(key, 0.0) for c in r["cells"])

    row("student trials completed / run", lambda r: f"{sum(c['status'].get('completed', 0) for c in r['cells'])}"
        f" / {sum(c['trials'] for c in r['cells'])}")
    row("teachers trained by csrec's pool (distinct)", lambda r: str(len(r["teachers"])))
    row("teachers a per-trial design trains (Σ over trials)", lambda r: str(sum(len(t["keys"]) for t in r["per_trial"])))
    row("teacher training s: pool (sum over teachers)",
        lambda r: f"{sum(t['seconds'] or 0 for t in r['teachers']):,.0f}")
    row("teacher training s: per-trial design (same teachers' times, Σ over trials)",
        lambda r: f"{sum(t['seconds'] for t in r['per_trial']):,.0f}")
    row("teachers trained on each node (head / worker)", lambda r: " / ".join(
        str(sum(1 for t in r["teachers"] if t["node_id"] == node)) for node in r["nodes"]))
    row("student trials run on each node (head / worker)", lambda r: "–" if r.get("trial_actor_nodes") is None
        else " / ".join(str(r["trial_actor_nodes"].count(node)) for node in r["nodes"]))
    row("soft-label stores built (one per distinct teacher set) / trials reading one",
        lambda r: f"{len(r['stores'])} / {sum(sum(c['store_events'].values()) for c in r['cells'])}"
        f" ({sum(c['zero_copy'] for c in r['cells'])} zero-copy)")
    row("store payload, Σ over stores (numpy nbytes, MiB)", lambda r: _mib(sum(s["nbytes"] for s in r["stores"])))
    row("store objects in the object store, Σ object sizes (MiB)",
        lambda r: _mib(sum(s["object_size"] or 0 for s in r["stores"])))
    row("node copies of the store objects after the sweep",
        lambda r: f"{sum(s['copies'] for s in r['stores'])} (of {len(r['stores'])} objects)")
    row("object store in use after the sweep, all nodes (MiB; objects)",
        lambda r: f"{_mib(r['store_stats_end']['used'])}; {r['store_stats_end']['objects']}")
    row("object store peak in use during the sweep (MiB, sampled every 2 s)", lambda r: _mib(r["peak_used"]))
    row("object store bytes created during the run (MiB)",
        lambda r: _mib(r["store_stats_end"]["created"] - r["store_stats_start"]["created"]))
    row("wall: cluster start (ray start → all nodes up, s)", lambda r: f"{r['cluster_up_s']:.1f}")
    row("**wall: whole sweep, both cells (s)**", lambda r: f"**{r['sweep_s']:.1f}**")
    row("… teachers / stores / Tune trials (s)", lambda r: " / ".join(
        f"{timing(r, k):.1f}" for k in ("teachers_s", "stores_s", "tune_s")))
    row("mean student trial (s, inside its Ray process)",
        lambda r: f"{_mean([s for c in r['cells'] for s in c['trial_s']]):.1f}")
    row("wall: cluster start to stopped (s)", lambda r: f"{r['total_s']:.1f}")
    row("machine load average (1 min) before / after", lambda r: f"{r['load'][0]:.1f} / {r['load'][1]:.1f}")

    first = results[0]
    d = first["data"]
    store = first["stores"][0] if first["stores"] else None
    arrays = ", ".join(f"{k} {tuple(v[0])} {v[1]}" for k, v in store["arrays"].items()) if store else ""
    pool, per_trial = len(first["teachers"]), sum(len(t["keys"]) for t in first["per_trial"])
    body = markdown_table(header, rows)
    body += (
        f"\n\n**Design.** 12 student trials of GRU4Rec on synthetic data ({args.users:,} users, {args.items:,} items, "
        f"{args.clusters} clusters, mean length {args.mean_length:g} → {d['interactions']:,} interactions, "
        f"{d['items']:,} items, {d['sub_sessions']:,} sub-sessions, {d['train_targets']:,} training targets), "
        f"{args.epochs} epochs, patience 0, ASHA off (every trial and teacher trains every epoch): "
        "CSRec-M with m ∈ {1, 2, 3} × β ∈ {0.25, 0.75} at T = 3 (6 trials) and CSRec-D with "
        "m ∈ {1, 2, 3} × p ∈ {0.7, 0.8} at β = 0.5, T = 3 (6 trials), each cell one `csrec.sweep.tune(grid=...)` "
        "call into the same storage path (teachers pre-built by the pool as Ray tasks, stores pre-built and "
        "put in the object store, then the Tune grid). 1 CPU per trial and per teacher task. "
        f"A per-trial design trains Σ m = 2·(1+2+3) + 2·(1+2+3) = {per_trial} teachers; the pool trains the "
        f"{pool} distinct ones (CSRec-M seeds 0–2; CSRec-D 3 subsets at each p), and β and T do not change a "
        "store, so the 12 trials read 9 stores. Its per-trial teacher seconds price each trial's teachers with "
        "the time the pool measured for the same teacher, so they exclude the extra contention a per-trial run "
        "would add.\n\n"
        f"**Stores.** Factored soft-label stores (default): per teacher a row representation and its output table "
        f"(for the first store: {arrays}); bytes are the arrays' nbytes, and the object store's own size of each "
        "store object from `ray.experimental.get_object_locations` (data + metadata), with how many nodes hold a "
        "copy after the sweep (a trial on the other node pulls a copy). Object-store usage is the raylets' store "
        "stats summed over the nodes: it also holds the dataset (put once per cell) and Ray's own objects.\n\n"
        f"**Clusters.** Each layout is a fresh local cluster started with `ray start` (head + `ray start --address` "
        f"worker for 2 nodes, {args.object_store_mib} MiB object store per node, dashboard on) and a driver process "
        "that joins it, with a fresh storage path, so teachers are trained from scratch in both. Both layouts have "
        f"{args.cpus} CPUs in all on the same {os.cpu_count()}-core machine, so the second node adds no compute: "
        "the comparison shows what a second node costs (a second raylet and agents, store copies pulled across "
        "nodes), not a speed-up.\n\n"
        "**Load not controlled.** Other jobs may share the machine's cores while this runs (the benchmark neither "
        "checks nor waits for an idle machine; the load-average row is all it records), so every second above is "
        "an upper bound, and the two layouts ran one after the other, not under identical load. Counts and bytes "
        "are unaffected."
    )
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny data and 2 epochs: a check of the script, ~2 min")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=32)
    parser.add_argument("--mean-length", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--nodes", default="1,2", help="cluster layouts to run, as node counts (default 1,2)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the cluster in all")
    parser.add_argument("--object-store-mib", type=int, default=1024, help="object store per node")
    parser.add_argument("--driver-timeout", type=int, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the run directories under bench/results/runs/")
    parser.add_argument("--driver-json", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver_json:
        args.nodes = int(args.nodes)
        driver(args)
        return
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    os.environ["OMP_NUM_THREADS"] = "1"

    def _terminate(signum, frame):  # run the finally blocks (cluster stop) on SIGTERM too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = [run_layout(args, int(n), stamp) for n in str(args.nodes).split(",")]
    title = "Sweep efficiency: teacher pool, soft-label stores, 1 vs 2 local Ray nodes"
    if args.tiny:  # a check of the script: printed, never written over the real table
        print(f"### {title} (--tiny)\n\n{tabulate(args, results)}")
    else:
        write_result("sweep_efficiency", title, tabulate(args, results))


if __name__ == "__main__":
    main()
