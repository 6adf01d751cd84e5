"""csrec: confident soft labels for sequential recommenders (Wu et al., TOIS 2024), as a sweeper.

Layers, bottom up: ``csrec.data`` → ``csrec.models`` → ``csrec.training`` / ``csrec.evaluation``
→ ``csrec.methods`` (teachers, soft labels, the experiment config) → ``csrec.experiment`` (``fit``)
→ ``csrec.search`` (the search space, as data) → ``csrec.sweep`` (Ray) → ``csrec.report``.
Only the sweep layer imports Ray.  ``csrec.load`` reads a model that ``FitResult.save`` wrote
(:mod:`csrec.artifacts`).
"""

from csrec.artifacts import load
from csrec.experiment import ExperimentConfig, FitResult, fit, make_config
from csrec.data import DataConfig, load_dataset
from csrec.methods import MethodConfig
from csrec.training import TrainConfig

__version__ = "0.1.0"

__all__ = ["DataConfig", "ExperimentConfig", "FitResult", "MethodConfig", "TrainConfig", "fit", "load", "load_dataset", "make_config"]


def __getattr__(name):  # csrec.tune: the Ray sweeper, imported on first use so `import csrec` stays Ray-free
    if name == "tune":
        from csrec.sweep import tune

        return tune
    if name == "report":
        from csrec.report import report

        return report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
