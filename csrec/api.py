"""The public entry points under their historic module name (``from csrec.api import fit``)."""

from csrec.experiment import ExperimentConfig, FitResult, environment, fit, make_config

__all__ = ["ExperimentConfig", "FitResult", "environment", "fit", "make_config"]
