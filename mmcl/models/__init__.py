"""Towers and the multimodal model."""

from mmcl.lazy import lazy_exports

__all__ = ["ModalityTransforms", "ModelConfig", "MultimodalModel", "create_model", "list_models", "load_model",
           "save_model", "summarize"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "ModalityTransforms": "factory", "ModelConfig": "config", "MultimodalModel": "multimodal",
    "create_model": "factory", "list_models": "factory", "load_model": "checkpoint", "save_model": "checkpoint",
    "summarize": "summary"})
