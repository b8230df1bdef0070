"""Model checks: equivariance/invariance, capacity, over-fitting one batch, transfer cuts, and a suite.

One family per module; :func:`check_model` runs every registered check that applies.
"""

from __future__ import annotations

from dldebug.checks.capacity import parameter_audit
from dldebug.checks.equivariance import probe_equivariance
from dldebug.checks.overfit import OverfitResult, can_overfit
from dldebug.checks.registry import CHECKS, CheckContext, ModelCheck, check_model, iter_checks, register_check
from dldebug.checks.transfer import feature_extractor, suggested_cut, task_specific_layers, transfer_report

__all__ = [
    "CHECKS",
    "CheckContext",
    "ModelCheck",
    "OverfitResult",
    "can_overfit",
    "check_model",
    "feature_extractor",
    "iter_checks",
    "parameter_audit",
    "probe_equivariance",
    "register_check",
    "suggested_cut",
    "task_specific_layers",
    "transfer_report",
]
