"""Towers and the multimodal model."""

from mmcl.models.checkpoint import load_model, save_model
from mmcl.models.config import ModelConfig
from mmcl.models.factory import ModalityTransforms, create_model, list_models
from mmcl.models.multimodal import MultimodalModel
from mmcl.models.summary import summarize

__all__ = [
    "ModalityTransforms",
    "ModelConfig",
    "MultimodalModel",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
    "summarize",
]
