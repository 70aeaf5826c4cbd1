"""The data section of a training config."""

from __future__ import annotations

from pydantic import Field

from mmcl.config import Section


class DataConfig(Section):
    """Where training samples come from and how they are batched."""

    train_shards: str | list[str] = Field(
        description="Training shards: a directory of .tar shards, a brace pattern "
        "(data/shard-{000000..000009}.tar), a pipe: URL, or a list of these."
    )
    modalities: list[str] = Field(
        ["image", "text"], description="Modalities to read from each sample; each needs a tower in the model."
    )
    batch_size: int = Field(64, description="Samples per batch on each process.", gt=0)
    num_workers: int = Field(2, description="Data loader worker processes per training process.", ge=0)
    shuffle_buffer: int = Field(
        1000, description="Samples held (as raw bytes, before decoding) in each worker's shuffle buffer.", ge=1
    )
