"""Streaming WebDataset shards into multimodal batch dicts."""

from mmcl.data.config import DataConfig, ShardSource
from mmcl.data.pipeline import build_loader
from mmcl.data.shards import expand_urls

__all__ = ["DataConfig", "ShardSource", "build_loader", "expand_urls"]
