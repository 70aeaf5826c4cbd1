"""The data section of a training config."""

from __future__ import annotations

from pydantic import Field, model_validator

from mmcl.config import Section
from mmcl.data.image import ImageLimits
from mmcl.data.text import TextAugmentConfig

URL_SPEC = ("a directory of .tar shards, a brace pattern (data/shard-{000000..000009}.tar), "
            "a pipe: URL (pipe:curl -s https://host/shard-{0..9}.tar), or a list of these")


class ShardSource(Section):
    """One set of shards in a mixture."""

    shards: str | list[str] = Field(description=f"This source's shards: {URL_SPEC}.")
    weight: float = Field(1.0, description="Share of this source in the resampled stream, relative to the "
                          "other sources' weights (only with data.resampled: true).", gt=0)


class DataConfig(Section):
    """Where training samples come from and how they are batched."""

    train_shards: str | list[str] | None = Field(
        None, description=f"Training shards: {URL_SPEC}. Give this or data.sources, not both."
    )
    sources: list[ShardSource] = Field(
        default_factory=list,
        description="Several shard sets mixed by weight, each `{shards, weight}`; instead of data.train_shards.",
    )
    modalities: list[str] = Field(
        ["image", "text"], description="Modalities to read from each sample (image, text, audio); each needs a "
        "tower in the model."
    )
    batch_size: int = Field(64, description="Samples per batch on each process.", gt=0)
    num_workers: int = Field(2, description="Data loader worker processes per training process.", ge=0)
    shuffle_buffer: int = Field(
        1000, description="Samples held (as raw bytes, before decoding) in each worker's shuffle buffer.", ge=1
    )
    resampled: bool = Field(
        False, description="Draw shards with replacement, endlessly, in proportion to the source weights; an "
        "epoch is then data.samples_per_epoch samples. false: each epoch reads every shard once, in a "
        "per-epoch order shared by all processes."
    )
    samples_per_epoch: int | None = Field(
        None, description="With data.resampled: samples per epoch across all processes, rounded up to whole "
        "global batches (batch_size x processes).", gt=0
    )
    text_augment: TextAugmentConfig = Field(
        default_factory=TextAugmentConfig, description="Random caption edits in training."
    )
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits, description="Images skipped (and counted) from their header alone; "
        "large JPEGs decoded at the reduced scale the image tower needs."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if (self.train_shards is None) == (not self.sources):
            raise ValueError("give exactly one of data.train_shards and data.sources")
        if self.resampled != (self.samples_per_epoch is not None):
            raise ValueError("data.resampled: true needs data.samples_per_epoch, and only it uses it")
        if not self.resampled and any(s.weight != 1.0 for s in self.sources):
            raise ValueError("data.sources weights need data.resampled: true (without resampling every "
                             "sample of every source is read once per epoch)")
        return self

    def shard_sources(self) -> list[ShardSource]:
        """The configured sources; a plain data.train_shards is one source."""
        return self.sources or [ShardSource(shards=self.train_shards)]
