"""Learning rates for changed batch sizes (lesson 11): scaling, warm-up, a robust range test."""

from dldebug.lr.scaling import LRScale, optimizer_family, scale_lr

__all__ = ["LRScale", "optimizer_family", "scale_lr"]
