"""Soft-label stores in the Ray object store, built once per teacher configuration.

A :class:`StoreRegistry` actor (one per driver) maps a store fingerprint
(:func:`csrec.methods.teachers.store_fingerprint`) to the ObjectRef of its
:class:`SoftLabelStore`.  A store's arrays are plain numpy, so every trial on a node maps the
same shared-memory pages read-only instead of holding a copy.

Two ways in, one guarantee (each fingerprint is built once per registry):

* the driver builds every store it can know before the trials start (:func:`prebuild_stores`,
  as Ray tasks whose results the driver owns) and registers the refs;
* a trial asks :func:`fetch_store`; if nobody has the store, the registry hands that trial a
  *claim*: it trains any missing teachers (file-locked pool), builds the store and hands it to
  the registry, which ``ray.put``\\ s it (so the registry owns it and it outlives the trial).  Trials that ask
  for the same fingerprint meanwhile wait on the registry and receive the same ref.  A claim
  whose holder stops renewing it (crashed trial) expires and passes to the next asker.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import ray

from csrec.data.dataset import SequenceData
from csrec.methods import SoftLabelStore, build_method_store, teacher_specs
from csrec.methods.teachers import TeacherPool, store_fingerprint
from csrec.sweep.teachers import TeacherProgress, ensure_teachers

LEASE_S = 60.0


@ray.remote(num_cpus=0, max_concurrency=1000)
class StoreRegistry:
    """fingerprint → [ObjectRef of the store, teacher infos]; hands out one build claim at a time."""

    def __init__(self, lease_s: float = LEASE_S):
        self.lease_s = lease_s
        self.entries: dict[str, list] = {}
        self.claims: dict[str, tuple[str, float]] = {}
        self.events: dict[str, asyncio.Event] = {}
        self.log: list[dict] = []
        self.notes: list[dict] = []  # teacher progress of the trials (TeacherProgress), for the driver

    def _event(self, fp: str) -> asyncio.Event:
        if fp not in self.events:
            self.events[fp] = asyncio.Event()
        return self.events[fp]

    async def acquire(self, fp: str, token: str, who: str = "") -> tuple[str, list | None]:
        waited = False
        while True:
            if fp in self.entries:
                self.log.append({"fp": fp, "who": who, "event": "hit-after-wait" if waited else "hit", "t": time.time()})
                return "ready", self.entries[fp]
            claim = self.claims.get(fp)
            if claim is None or time.time() - claim[1] > self.lease_s:
                self.claims[fp] = (token, time.time())
                self.log.append({"fp": fp, "who": who, "event": "claim", "t": time.time()})
                return "build", None
            waited = True
            try:
                await asyncio.wait_for(self._event(fp).wait(), timeout=min(5.0, self.lease_s))
            except asyncio.TimeoutError:
                pass

    async def renew(self, fp: str, token: str) -> bool:
        claim = self.claims.get(fp)
        if claim is not None and claim[0] == token:
            self.claims[fp] = (token, time.time())
            return True
        return False

    async def publish(self, fp: str, token: str | None, payload: list, who: str = "") -> None:
        self.entries[fp] = payload
        self.claims.pop(fp, None)
        self.log.append({"fp": fp, "who": who, "event": "build", "t": time.time()})
        event = self.events.pop(fp, None)
        if event is not None:
            event.set()

    async def publish_value(self, fp: str, token: str | None, store, infos, who: str = "") -> None:
        """Publish a store built by a trial: the registry puts it, so the registry owns it and it
        outlives the trial (``ray.put(_owner=...)`` is gone since Ray 2.56)."""
        await self.publish(fp, token, [ray.put(store), infos], who)

    async def abandon(self, fp: str, token: str) -> None:
        claim = self.claims.get(fp)
        if claim is not None and claim[0] == token:
            self.claims.pop(fp)
            event = self.events.pop(fp, None)
            if event is not None:
                event.set()

    async def note(self, who: str, note: dict) -> None:
        self.notes.append(dict(note, who=who))

    async def notes_since(self, seq: int) -> list[dict]:
        """The notes after the first ``seq`` (a reader keeps its own count)."""
        return self.notes[seq:]

    async def note_count(self) -> int:
        """How many notes there are so far (a new reader starts there)."""
        return len(self.notes)

    async def has(self, fp: str) -> bool:
        return fp in self.entries

    async def refs(self) -> dict:
        """{fingerprint: ObjectRef of the store} for every published store."""
        return {fp: entry[0] for fp, entry in self.entries.items()}

    async def stats(self) -> dict:
        builds: dict[str, int] = {}
        for entry in self.log:
            if entry["event"] == "build":
                builds[entry["fp"]] = builds.get(entry["fp"], 0) + 1
        return {"stores": len(self.entries), "builds": builds, "log": list(self.log)}


def make_registry(lease_s: float = LEASE_S):
    """A registry for this driver (lives as long as the driver's Ray job)."""
    return StoreRegistry.options(scheduling_strategy="DEFAULT").remote(lease_s)


class _Renewer(threading.Thread):
    def __init__(self, registry, fp: str, token: str, every: float):
        super().__init__(daemon=True)
        self.registry, self.fp, self.token, self.every = registry, fp, token, every
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.registry.renew.remote(self.fp, self.token)
            except Exception:  # noqa: BLE001 - best effort
                pass


def fetch_store(
    registry, config, data: SequenceData, pool_dir: str, *, sweep: str = "", who: str = "",
) -> tuple[SoftLabelStore, list[dict], dict]:
    """The config's store (from the object store, or built here once); returns (store, infos, event).

    ``event`` says what happened: ``{"store": "hit"|"built", "fingerprint": fp, "teachers": [...]}``.
    """
    fp = store_fingerprint(config, data)
    token = uuid.uuid4().hex
    status, payload = ray.get(registry.acquire.remote(fp, token, who))
    if status == "ready":
        store = ray.get(payload[0])
        infos = payload[1]
        if isinstance(infos, ray.ObjectRef):
            infos = ray.get(infos)
        return store, list(infos), {"store": "hit", "fingerprint": fp, "teachers": []}
    renewer = _Renewer(registry, fp, token, every=LEASE_S / 4)
    renewer.start()
    try:
        progress = TeacherProgress(lambda note: registry.note.remote(who, note))
        records = ensure_teachers(pool_dir, teacher_specs(config), data, config.train, trained_by="trial", sweep=sweep,
                                  progress=progress)
        store, infos = build_method_store(config, data, TeacherPool(pool_dir))
        ray.get(registry.publish_value.remote(fp, token, store, infos, who))
    except BaseException:
        registry.abandon.remote(fp, token)
        raise
    finally:
        renewer.stop.set()
    return store, infos, {"store": "built", "fingerprint": fp, "teachers": records}


@ray.remote(num_returns=2)
def _store_task(config, data, pool_dir):
    import torch

    torch.set_num_threads(1)
    store, infos = build_method_store(config, data, TeacherPool(pool_dir))
    return store, infos


def prebuild_stores(
    configs, data: SequenceData, data_ref, registry, pool_dir: str, num_cpus: float = 1.0, num_gpus: float = 0.0,
) -> dict[str, float]:
    """Build the distinct stores of ``configs`` (teachers must be pooled) and register them.

    Returns {fingerprint: seconds}; already registered fingerprints are skipped.
    """
    todo: dict[str, object] = {}
    for config in configs:
        if not config.method.uses_soft_labels:
            continue
        fp = store_fingerprint(config, data)
        if fp in todo or ray.get(registry.has.remote(fp)):
            continue
        todo[fp] = config
    started = time.perf_counter()
    pending = {}
    for fp, config in todo.items():
        store_ref, infos_ref = _store_task.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(config, data_ref, pool_dir)
        pending[fp] = (store_ref, infos_ref)
    ray.get([p[1] for p in pending.values()])  # small; raises here if a build failed
    for fp, (store_ref, infos_ref) in pending.items():
        ray.get(registry.publish.remote(fp, None, [store_ref, infos_ref], "driver"))
    elapsed = time.perf_counter() - started
    return {fp: elapsed for fp in pending}
