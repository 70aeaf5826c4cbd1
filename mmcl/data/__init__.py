"""Streaming WebDataset shards into multimodal batch dicts."""

from mmcl.data.config import DataConfig
from mmcl.data.pipeline import build_loader, expand_urls

__all__ = ["DataConfig", "build_loader", "expand_urls"]
