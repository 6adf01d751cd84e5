"""Where the search space lived before :mod:`csrec.search`: kept so that an Optuna experiment
started then still resumes (``Tuner.restore`` unpickles its searcher, which holds an
``OptunaSpace`` under this module's name)."""

from csrec.search.space import OptunaSpace

__all__ = ["OptunaSpace"]
