"""The optimiser and learning-rate schedule: config (`OptimConfig`) and builders."""

from mmcl.lazy import lazy_exports

__all__ = ["OptimConfig", "build_optimizer", "build_scheduler", "lr_factor", "param_groups"]
__getattr__, __dir__ = lazy_exports(__name__, {"OptimConfig": "config", **{
    name: "build" for name in ("build_optimizer", "build_scheduler", "lr_factor", "param_groups")}})
