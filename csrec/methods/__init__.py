"""Training methods: Base, SoftRec and the CSRec teacher modules (paper §3)."""

from csrec.methods.config import METHODS, MethodConfig
from csrec.methods.run import MethodOutcome, run_method

__all__ = ["METHODS", "MethodConfig", "MethodOutcome", "run_method"]
