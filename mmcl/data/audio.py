"""Audio: decode with soundfile, then mono ▶ resample ▶ fixed-length crop/pad ▶ log-mel (▶ SpecAugment in training).

Decoding uses soundfile (libsndfile ships in its wheel; torchaudio.load would need FFmpeg). The spectrogram,
resampling and masking are torchaudio's. Crop policy, stated so evaluation numbers can be reproduced:
training takes a uniformly random window; evaluation takes the first `clip_seconds`. Clips shorter than the
window are repeated end to end, then zero-padded to the exact length (as LAION-CLAP's "repeatpad").
"""

from __future__ import annotations

import io

import soundfile
import torch
import torchaudio
from pydantic import Field

from mmcl.config import Section

EXTENSIONS = ("flac", "wav", "ogg", "mp3")


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


def decode(data: bytes) -> tuple[torch.Tensor, int]:
    """Encoded audio to a float32 waveform [channels, samples] and its sample rate."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise ValueError("audio has no samples")
    return torch.from_numpy(samples.T.copy()), rate


def load(data: bytes, transform: AudioTransform) -> torch.Tensor:
    return transform(*decode(data))


def placeholder(transform: AudioTransform) -> torch.Tensor:
    return transform.placeholder()


def fit_length(waveform: torch.Tensor, length: int, random_crop: bool) -> torch.Tensor:
    """Crop [C, N] to `length` samples (a random window, or the start), or repeat-pad it up to `length`."""
    n = waveform.shape[-1]
    if n > length:
        start = int(torch.randint(0, n - length + 1, ())) if random_crop else 0
        return waveform[..., start:start + length]
    if n < length:
        repeated = waveform.repeat(1, length // n)
        return torch.nn.functional.pad(repeated, (0, length - repeated.shape[-1]))
    return waveform


class AudioTransform:
    """Callable `(waveform [C, N], sample_rate) -> log-mel [1, n_mels, num_frames]`, for training or evaluation."""

    def __init__(self, cfg: AudioFrontEndConfig, train: bool):
        self.cfg = cfg
        self.train = train
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=cfg.f_min, f_max=cfg.f_max,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)
        masks = []
        if train and cfg.freq_mask:
            masks.append(torchaudio.transforms.FrequencyMasking(cfg.freq_mask))
        if train and cfg.time_mask:
            masks.append(torchaudio.transforms.TimeMasking(cfg.time_mask))
        self.masks = masks

    def __call__(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        mono = waveform.mean(dim=0, keepdim=True)
        if sample_rate != self.cfg.sample_rate:
            mono = torchaudio.functional.resample(mono, sample_rate, self.cfg.sample_rate)
        clip = fit_length(mono, self.cfg.num_samples, random_crop=self.train)
        spec = self.to_db(self.mel(clip))
        for mask in self.masks:
            spec = mask(spec)
        return spec

    def placeholder(self) -> torch.Tensor:
        """Zeros shaped like a transformed clip, standing in for samples that lack audio."""
        return torch.zeros(1, self.cfg.n_mels, self.cfg.num_frames)
