"""Streaming WebDataset shards into multimodal batch dicts."""

from mmcl.lazy import lazy_exports

__all__ = ["DataConfig", "ShardSource", "build_loader", "expand_urls"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "DataConfig": "config", "ShardSource": "config", "build_loader": "pipeline", "expand_urls": "shards"})
