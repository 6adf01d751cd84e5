"""How a cell's trials are suggested and stopped: deterministically (``schedule="sync"``, the
default) or by asynchronous ASHA (``schedule="async"``).

**Why.**  Asynchronous ASHA stops a trial by comparing it with whatever its concurrent rivals have
reported so far, and a seeded TPE sampler that is told results as they arrive suggests according to
which trials happened to finish first: the same command then chooses different configurations on
different runs, or with a different number of concurrent trials.

**sync.**  Trials come in batches of ``batch_size`` (:class:`BatchLimiter`): a batch is suggested only when the previous one has finished, and the searcher
(Optuna's TPE, or :class:`GridPoints` for the paper grid, in a fixed order) is told a batch's results
all at once.  Early stopping (:class:`BatchRungStopper`) compares a trial at each rung (epochs
``grace_period · reduction_factor^i``) only with the trials of *earlier*, finished batches, and
stops it when it is below their top ``1 / reduction_factor``; the first batch runs to its own early
stopping.  Every decision is then a function of finished trials' results, which do not depend on
timing: one concurrent trial or several, interrupted or not, the same trials run the same epochs.
The price: batch barriers leave cores idle while a batch's last trial finishes, and the first batch
is never stopped early (BENCHMARKS.md measures it against ASHA).

**async.**  :class:`ResumableASHA`: Ray Tune's ASHA whose rungs and decisions survive a restore.
Faster on many cores; its tables can change from one run to the next.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from csrec.atomic import write_atomic

#: ASHA's rungs and decisions, kept across restores (see :class:`ResumableASHA`).
ASHA_STATE_FILE = "csrec_asha_state.json"
#: The deterministic stopper's trial order, rungs and decisions (see :class:`BatchRungStopper`).
SYNC_STATE_FILE = "csrec_sync_state.json"


def rung_milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs at which a trial may be stopped: ``grace_period · reduction_factor^i`` below ``max_t``
    (the rungs ASHA uses for the same settings)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1) if max_t > grace_period else 0
    return [int(grace_period * reduction_factor ** i) for i in range(count)
            if grace_period * reduction_factor ** i < max_t]


def rung_cutoff(values: list[float], reduction_factor: float, mode: str = "max") -> float:
    """The value a trial must reach at a rung to go on: the top ``1 / reduction_factor`` of ``values``
    (NaN-free), as ASHA computes it."""
    quantile = (1 - 1 / reduction_factor) * 100 if mode == "max" else 100 / reduction_factor
    return float(np.percentile(np.asarray(values, dtype=float), quantile))


class _JsonState:
    """A scheduler whose decisions survive ``Tuner.restore``: its state lives in ``state_path``
    (JSON, written atomically after every change) and is read back on first use.  A pickled copy
    (what the Tuner restores) forgets it has loaded, so it reads the file, which is newer than any
    pickle.  Subclasses say what the state is (:meth:`_state`) and how to take it back (:meth:`_restore`)."""

    state_path: str
    _loaded: bool = False

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_loaded"] = False
        return state

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.state_path)
        if path.is_file():
            self._restore(json.loads(path.read_text()))

    def _save(self) -> None:
        write_atomic(self.state_path, json.dumps(self._state(), sort_keys=True))

    def _state(self) -> dict:
        raise NotImplementedError

    def _restore(self, state: dict) -> None:
        raise NotImplementedError


class BatchRungStopper(_JsonState, FIFOScheduler):
    """Successive halving against earlier batches only: decisions that do not depend on timing.

    Trials are numbered in the order Tune adds them (the searcher's suggestion order) and batch
    ``k`` holds numbers ``k·batch_size … (k+1)·batch_size − 1``; with the batch limiter a batch
    starts only after every earlier one finished, so the rung values it is compared with are
    complete and fixed.  The order, the rungs and each decision are kept in ``state_path`` (JSON),
    so a restored sweep numbers and decides as the uninterrupted one.
    """

    def __init__(self, state_path: str, batch_size: int, grace_period: int, max_t: int,
                 reduction_factor: float = 3, time_attr: str = "training_iteration",
                 metric: str | None = None, mode: str | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.state_path, self.batch_size = state_path, batch_size
        self.reduction_factor, self.time_attr = reduction_factor, time_attr
        self.milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self._metric, self._mode = metric, mode
        self._order: list[str] = []
        self._rungs: dict[str, dict[str, float]] = {str(m): {} for m in self.milestones}
        self._decisions: dict[str, str] = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        return True

    def _state(self) -> dict:
        return {"order": self._order, "rungs": self._rungs, "decisions": self._decisions}

    def _restore(self, state: dict) -> None:
        self._order = list(state["order"])
        self._rungs = {str(k): dict(v) for k, v in state["rungs"].items()}
        self._decisions = dict(state["decisions"])

    def batch_of(self, trial_id: str) -> int:
        if trial_id not in self._order:  # a trial restored without on_trial_add
            self._order.append(trial_id)
        return self._order.index(trial_id) // self.batch_size

    def on_trial_add(self, tune_controller, trial) -> None:
        self._load()
        if trial.trial_id not in self._order:
            self._order.append(trial.trial_id)
            self._save()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._load()
        when = result.get(self.time_attr)
        key = f"{trial.trial_id}@{when}"
        if key in self._decisions:
            return self._decisions[key]
        action = self.decide(trial.trial_id, when, result.get(self._metric))
        self._decisions[key] = action
        self._save()
        return action

    def decide(self, trial_id: str, when, value) -> str:
        """CONTINUE or STOP for ``trial_id``'s ``value`` of the metric at time ``when``; records the rung."""
        batch = self.batch_of(trial_id)
        if when not in self.milestones or value is None or (isinstance(value, float) and math.isnan(value)):
            return TrialScheduler.CONTINUE
        rung = self._rungs.setdefault(str(when), {})
        rung[trial_id] = float(value)
        earlier = [v for t, v in rung.items() if t != trial_id and self.batch_of(t) < batch]
        if not earlier:
            return TrialScheduler.CONTINUE
        cutoff = rung_cutoff(earlier, self.reduction_factor, self._mode or "max")
        worse = value < cutoff if (self._mode or "max") == "max" else value > cutoff
        return TrialScheduler.STOP if worse else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"BatchRungStopper: batches of {self.batch_size}, rungs at {self.milestones}"


class GridPoints(Searcher):
    """The points of a grid, suggested one by one in a fixed order (so that the batch limiter can
    wrap a grid search)."""

    def __init__(self, points: list[dict], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.points = [dict(p) for p in points]
        self.position = 0

    def suggest(self, trial_id: str):
        if self.position >= len(self.points):
            return Searcher.FINISHED
        self.position += 1
        return dict(self.points[self.position - 1])

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"points": self.points, "position": self.position}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self.points, self.position = state["points"], state["position"]


class BatchLimiter(Searcher):
    """``searcher`` in fixed batches: ``batch_size`` suggestions, then none until all of them have
    finished; the searcher is told their results together, in suggestion order, and never sees a
    batch-mate's intermediate results.  (Ray's ``ConcurrencyLimiter(batch=True)`` waits for the
    trials *running* at the time, so its batches shrink to the concurrency limit and its suggestions
    change with it.)  A limit on concurrent trials wraps this one and does not change the batches."""

    def __init__(self, searcher: Searcher, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.searcher, self.batch_size = searcher, batch_size
        self.batch: list[str] = []  # the current batch's trials, in suggestion order
        self.finished: dict[str, tuple] = {}  # their (result, error) so far
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if len(self.batch) >= self.batch_size:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.batch.append(trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # intermediate results would let a batch-mate's progress steer a suggestion

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        if trial_id not in self.batch:
            return
        self.finished[trial_id] = (result, error)
        if len(self.batch) == self.batch_size and len(self.finished) == len(self.batch):
            for done in self.batch:
                result, error = self.finished[done]
                self.searcher.on_trial_complete(done, result=result, error=error)
            self.batch, self.finished = [], {}

    def get_state(self) -> dict:
        return {"batch": list(self.batch), "finished": dict(self.finished), "batch_size": self.batch_size}

    def set_state(self, state: dict) -> None:
        self.batch, self.finished = list(state["batch"]), dict(state["finished"])
        self.batch_size = state["batch_size"]

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


def batched(searcher: Searcher, batch_size: int, max_concurrent: int | None = None) -> Searcher:
    """``searcher`` suggesting batches of ``batch_size`` (:class:`BatchLimiter`), at most
    ``max_concurrent`` trials running at once (None: as many as the resources allow)."""
    limited = BatchLimiter(searcher, batch_size)
    return limited if not max_concurrent else ConcurrencyLimiter(limited, max_concurrent=max_concurrent)


class ResumableASHA(_JsonState, ASHAScheduler):
    """ASHA whose rungs and decisions survive ``Tuner.restore``, kept in ``state_path`` (JSON).

    A decision already taken for (trial, iteration) is replayed as it was; the others are taken
    from the recorded rungs.  With trials run one at a time, the restored sweep then stops exactly
    the trials the uninterrupted one stops; with concurrent trials ASHA depends on which result
    arrives first, resumed or not.
    """

    def __init__(self, state_path: str, **kwargs):
        super().__init__(**kwargs)
        self.state_path = state_path
        self._decisions: dict[str, str] = {}

    def _state(self) -> dict:
        rungs = [[[milestone, recorded] for milestone, recorded in bracket._rungs] for bracket in self._brackets]
        return {"decisions": self._decisions, "rungs": rungs}

    def _restore(self, state: dict) -> None:
        self._decisions = dict(state["decisions"])
        for bracket, rungs in zip(self._brackets, state["rungs"]):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]

    def _bracket_of(self, trial) -> None:
        if trial.trial_id not in self._trial_info:  # a trial restored without on_trial_add
            self._trial_info[trial.trial_id] = self._brackets[0]

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._load()
        key = f"{trial.trial_id}@{result.get(self._time_attr)}"
        if key in self._decisions:
            return self._decisions[key]
        self._bracket_of(trial)
        action = super().on_trial_result(tune_controller, trial, result)
        self._decisions[key] = action
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._load()
        self._bracket_of(trial)
        super().on_trial_complete(tune_controller, trial, result)
        self._trial_info.pop(trial.trial_id, None)
        self._save()

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._trial_info.pop(trial.trial_id, None)
