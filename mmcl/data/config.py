"""The data section of a training config."""

from __future__ import annotations

from PIL import Image
from pydantic import Field, model_validator

from mmcl.config import Section
from mmcl.data.flagged import DropFlaggedConfig
from mmcl.data.text import TextAugmentConfig
from mmcl.data.views import SecondViewConfig

# Pillow's own decompression-bomb warning threshold (~89.5 MP); `mmcl shards prepare --max-pixels` defaults to it too.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
URL_SPEC = ("a directory of .tar shards, a brace pattern (data/shard-{000000..000009}.tar), "
            "a pipe: URL (pipe:curl -s https://host/shard-{0..9}.tar), or a list of these")


class ImageLimits(Section):
    """How much of an image is decoded: images refused from their header alone, before any pixel is decoded
    (counted as sample failures), and large JPEGs decoded at the reduced scale the tower's transform needs."""

    max_pixels: int = Field(MAX_PIXELS, gt=0, description="Largest width x height decoded; larger images are "
                            "skipped (default: Pillow's decompression-bomb threshold, as `shards prepare --max-pixels`).")
    max_aspect_ratio: float = Field(100.0, ge=1, description="Largest long side / short side: a 1x100000 strip "
                                    "would become gigabytes once a transform scales its short side to the tower's "
                                    "input size.")
    jpeg_draft: bool = Field(True, description="Decode a JPEG at 1/2, 1/4 or 1/8 scale (the JPEG decoder's own "
                             "DCT scaling, several times faster) where it is at least twice as large as the tower's "
                             "transform needs: its random resized crop or resize (the first step of a torchvision "
                             "Compose, as in open_clip's transforms) still only downsamples. Pixels differ slightly "
                             "from the full decode's. false: always decode in full.")


class AudioFrontEndConfig(Section):
    """How a waveform becomes the log-mel spectrogram an audio tower reads."""

    sample_rate: int = Field(16000, description="Rate every clip is resampled to, in Hz.", gt=0)
    clip_seconds: float = Field(5.0, description="Fixed clip length in seconds (longer clips are cropped, shorter repeat-padded).", gt=0)
    n_fft: int = Field(400, description="FFT size of the short-time Fourier transform.", gt=0)
    hop_length: int = Field(160, description="Samples between successive spectrogram frames.", gt=0)
    n_mels: int = Field(64, description="Mel filterbank bands.", gt=0)
    f_min: float = Field(0.0, description="Lowest filterbank frequency in Hz.", ge=0)
    f_max: float | None = Field(None, description="Highest filterbank frequency in Hz; null: half the sample rate.")
    freq_mask: int = Field(0, description="SpecAugment in training: widest frequency mask in mel bands (0: off).", ge=0)
    time_mask: int = Field(0, description="SpecAugment in training: widest time mask in frames (0: off).", ge=0)

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1  # centred STFT frames


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
    second_view: SecondViewConfig | None = Field(
        None, description="A second, independently augmented view of some modalities of every training sample, "
        "for in-modal loss terms (loss `inmodal`, CleanCLIP); null: none."
    )
    drop_flagged: DropFlaggedConfig | None = Field(
        None, description="Leave out of training the samples an audit scored as suspicious (`mmcl audit`'s "
        "Parquet table), counted as skipped; the shards stay as they are. null: train on every sample."
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
        if self.second_view is not None:
            self.second_view.check(self.modalities)
        return self

    def shard_sources(self) -> list[ShardSource]:
        """The configured sources; a plain data.train_shards is one source."""
        return self.sources or [ShardSource(shards=self.train_shards)]
