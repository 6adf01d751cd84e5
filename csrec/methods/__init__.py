"""Training methods: Base, SoftRec and the CSRec teacher modules (paper §3).  No Ray here."""

from csrec.methods.config import METHODS, ExperimentConfig, MethodConfig
from csrec.methods.run import MethodOutcome, SoftLabelLoss, build_method_store, run_method
from csrec.methods.softlabels import SoftLabelStore, build_store
from csrec.methods.teachers import TeacherPool, TeacherSpec, teacher_specs, train_teacher

__all__ = [
    "METHODS", "ExperimentConfig", "MethodConfig", "MethodOutcome", "SoftLabelLoss", "SoftLabelStore", "TeacherPool",
    "TeacherSpec", "build_method_store", "build_store", "run_method", "teacher_specs", "train_teacher",
]
