"""Audio decoding (soundfile), down-mixing, resampling (torchaudio) and FLAC encoding."""

from __future__ import annotations

import io
import re
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


# libsndfile reads a cut-off WAV without error, but its header log says "data : 32000 (should be 15978)".
_WAV_DATA_SHORT = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
_STREAMED_WAV_SIZES = (0, 0xFFFFFFFF)  # writers that did not know the length put these in the header


def _truncated_wav(extra_info: str) -> str | None:
    match = _WAV_DATA_SHORT.search(extra_info)
    if match and int(match[1]) not in _STREAMED_WAV_SIZES and int(match[2]) < int(match[1]):
        return f"data chunk holds {match[2]} of {match[1]} bytes"
    return None


def decode_audio(data: bytes, source: str) -> tuple[np.ndarray, int]:
    """Return float32 samples shaped (frames, channels) and the rate, or raise SampleError."""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            truncated = _truncated_wav(f.extra_info)
            if truncated:
                raise SampleError("bad_audio", f"{source}: truncated, {truncated}")
            wave, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except SampleError:
        raise
    except Exception as err:  # libsndfile and its codecs fail in several ways on corrupt data
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
