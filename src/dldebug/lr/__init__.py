"""Learning rates for changed batch sizes (lesson 11): scaling, warm-up, a robust range test."""

from dldebug.lr.plan import lr_plan
from dldebug.lr.range_test import LRRangeResult, lr_range_test
from dldebug.lr.scaling import LRScale, optimizer_family, scale_lr
from dldebug.lr.warmup import warmup, warmup_schedule

__all__ = [
    "LRRangeResult",
    "LRScale",
    "lr_plan",
    "lr_range_test",
    "optimizer_family",
    "scale_lr",
    "warmup",
    "warmup_schedule",
]
