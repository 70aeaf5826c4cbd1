"""Audio decoding and resampling (mmcl.data.audio's, as training reads it), down-mixing and FLAC encoding."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import soundfile

from data_tools.errors import SampleError
from mmcl.errors import UserError

if TYPE_CHECKING:
    import torch

AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


@dataclass(frozen=True)
class AudioOptions:
    """How clips are stored (`--audio-rate`, `--audio-mono`, `--audio-max-seconds`). The default keeps each source's
    rate and channels. Storing at the audio tower's rate and mono (16000 Hz for the built-in towers) resamples each
    clip once here, so that training decodes half the channels (stereo sources) and resamples nothing: for 44.1 kHz
    stereo sources the loader's audio cost per clip falls by about 3-4x (benchmarks/audio_decode.py). Training
    down-mixes by the same mean anyway, so mono loses nothing that the built-in towers see."""

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


def decode_audio(data: bytes, source: str, seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Return float32 samples shaped [channels, frames] and the rate, or raise SampleError.

    Only the first ``seconds`` are read (all when None), with mmcl's decoder: the same refusals as training
    (absurd rates or channel counts, no frames, NaN/inf samples), and a cost that does not grow with the file.
    """
    # mmcl.data.audio is imported here so that image-only runs do not pay for torchaudio in every worker.
    from mmcl.data import audio

    try:
        truncated = _truncated_wav(soundfile.info(io.BytesIO(data)).extra_info)
        if truncated:
            raise SampleError("bad_audio", f"{source}: truncated, {truncated}")
        return audio.decode(data, seconds)
    except SampleError:
        raise
    except Exception as err:  # libsndfile and its codecs fail in several ways on corrupt data
        raise SampleError("bad_audio", f"{source}: {err}") from None


def check_audio_header(data: bytes, source: str) -> float:
    """The duration in seconds from the header alone, refusing what decode_audio would refuse before reading."""
    from mmcl.data import audio

    try:
        info = soundfile.info(io.BytesIO(data))
        audio.check_format(info.samplerate, info.channels)
    except Exception as err:  # as in decoding: corrupt headers fail in many ways
        raise SampleError("bad_audio", f"{source}: {err}") from None
    if info.frames == 0:
        raise SampleError("bad_audio", f"{source}: no audio frames")
    return info.duration


def _encode_flac(wave: np.ndarray, rate: int, source: str) -> bytes:
    out = io.BytesIO()
    try:
        soundfile.write(out, np.clip(wave, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    except Exception as err:  # libsndfile refuses what FLAC cannot hold (over 655350 Hz, over 8 channels) in several ways
        raise SampleError("bad_audio", f"{source}: cannot be stored as FLAC at {rate} Hz with {wave.shape[1]} "
                          f"channel(s) ({type(err).__name__}: {err}); try --audio-rate or --audio-mono") from None
    return out.getvalue()


def process_audio(data: bytes, source: str, opts: AudioOptions) -> tuple[bytes, float]:
    """Return (FLAC bytes, duration in seconds as stored) or raise SampleError."""
    from mmcl.data import audio

    wave, rate = decode_audio(data, source, opts.max_seconds)
    if opts.mono and wave.shape[0] > 1:
        wave = wave.mean(dim=0, keepdim=True)
    if opts.sample_rate is not None and opts.sample_rate != rate:
        # mmcl's resampler bounds torchaudio's kernel: an odd header rate such as 48001 Hz stays cheap.
        wave, rate = audio.resample(wave, rate, opts.sample_rate), opts.sample_rate
    frames = wave.T.numpy()
    return _encode_flac(frames, rate, source), frames.shape[0] / rate
