"""Plain experiment runners, one process, no Ray: what the sweep layer runs at scale.

* :func:`fit` (``csrec.fit``) — one experiment: data → teachers → student → test, from an
  :class:`~csrec.methods.config.ExperimentConfig` or the flat keywords :func:`make_config` takes.
* :func:`run_robustness` — every method at every injected noise rate on synthetic data (the
  robustness curve that :mod:`csrec.report` draws).
"""

from csrec.experiment.fit import FitResult, environment, fit, make_config, peak_rss_mib
from csrec.experiment.robustness import DEFAULT_EPOCHS, DEFAULT_NOISE, run_robustness
from csrec.methods.config import ExperimentConfig

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_NOISE", "ExperimentConfig", "FitResult", "environment", "fit", "make_config", "peak_rss_mib", "run_robustness"]
