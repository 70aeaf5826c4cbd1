"""Audio decoding (soundfile), down-mixing, resampling (torchaudio) and FLAC encoding."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

from data_tools.errors import SampleError
from mmcl.errors import UserError

AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


@dataclass(frozen=True)
class AudioOptions:
    sample_rate: int | None = None  # None keeps the source rate
    mono: bool = False
    max_seconds: float | None = None

    def __post_init__(self):
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise UserError(f"--audio-rate {self.sample_rate}: must be a positive rate in Hz")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise UserError(f"--audio-max-seconds {self.max_seconds}: must be positive")


def decode_audio(data: bytes, source: str) -> tuple[np.ndarray, int]:
    """Return float32 samples shaped (frames, channels) and the rate, or raise SampleError."""
    try:
        wave, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise SampleError("bad_audio", f"{source}: {err}") from None
    if wave.shape[0] == 0:
        raise SampleError("bad_audio", f"{source}: no audio frames")
    return wave, rate


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    # torch is imported here so that image-only runs do not pay for loading it in every worker.
    import torch
    import torchaudio.functional

    resampled = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave.T)), rate, target)
    return resampled.T.numpy()


def process_audio(data: bytes, source: str, opts: AudioOptions) -> tuple[bytes, float]:
    """Return (FLAC bytes, duration in seconds as stored) or raise SampleError."""
    wave, rate = decode_audio(data, source)
    if opts.max_seconds is not None:
        wave = wave[: int(opts.max_seconds * rate)]
    if opts.mono and wave.shape[1] > 1:
        wave = wave.mean(axis=1, keepdims=True)
    if opts.sample_rate is not None and opts.sample_rate != rate:
        wave, rate = _resample(wave, rate, opts.sample_rate), opts.sample_rate
    out = io.BytesIO()
    soundfile.write(out, np.clip(wave, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return out.getvalue(), wave.shape[0] / rate
