"""Audio: decode the window used with soundfile, then mono ▶ resample ▶ fixed-length crop/pad ▶ log-mel
(▶ SpecAugment in training).

Decoding uses soundfile (libsndfile ships in its wheel; torchaudio.load would need FFmpeg) and reads only the
frames of the window, so an hour-long file costs what a clip does. The spectrogram and masking are torchaudio's;
resampling applies torchaudio's windowed-sinc filter from taps precomputed once per rate pair (`resample`). Headers
with absurd rates or channel counts, empty clips and NaN/inf samples are refused. Crop policy, stated so evaluation
numbers can be reproduced: training takes a uniformly random window; evaluation takes the first `clip_seconds`.
Clips shorter than the window are repeated end to end, then zero-padded to the exact length (as LAION-CLAP's
"repeatpad").

The front end runs in the loader workers, once per clip. Clips stored at the front end's rate and mono
(`mmcl shards prepare --audio-rate 16000 --audio-mono`) skip resampling and decode half the channels or fewer:
for 44.1 kHz stereo sources that is most of the loader's audio time.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from fractions import Fraction

import numpy as np
import soundfile
import torch
import torchaudio

from mmcl.data.config import AudioFrontEndConfig

EXTENSIONS = ("flac", "wav", "ogg", "mp3")

log = logging.getLogger("mmcl.data")
_RESAMPLING_NOTED: set[tuple[int, int]] = set()  # rate pairs this process has said it resamples in training


# Headers outside these bounds are corrupt or absurd (a 1 Hz or 10⁹ Hz "recording"): the sample is refused rather
# than resampled. Real rates run from telephone 8 kHz (some archives 2-4 kHz) to 768 kHz ultrasound recorders.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 1_000_000
MAX_CHANNELS = 64
# torchaudio's sinc resampler (whose filter `resample` applies) builds a [new', orig' + 2 x width] kernel from the
# gcd-reduced rates; every common pair stays far below this many floats (44.1 kHz to 16 kHz: 76 k), but a header
# rate like 48001 Hz would need 768 M. Such rates are resampled from the nearest ratio whose kernel fits (48001 Hz
# is read as 48000 Hz: a pitch error of 0.002 %); `resample` keeps the same ratios, though it stores far less.
RESAMPLE_KERNEL_BUDGET = 1 << 22


def window_frames(seconds: float, rate: int) -> int:
    """Frames at `rate` that cover `seconds` once resampled."""
    return math.ceil(seconds * rate)


def check_format(rate: int, channels: int) -> None:
    """Refuse headers no real recording has, before any frame is read."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"{channels} channels (at most {MAX_CHANNELS})")


def decode(data: bytes, seconds: float | None = None, random_start: bool = False) -> tuple[torch.Tensor, int]:
    """Encoded audio to a float32 waveform [channels, frames] and its sample rate.

    Only the window used is read: at most `seconds` (all when None), from the start or, with `random_start`, from
    a uniformly random frame (torch's RNG, as `crop`). Memory and time do not grow with the file's length.
    Raises ValueError for an empty clip, an absurd header, or NaN/inf samples.
    """
    with soundfile.SoundFile(io.BytesIO(data)) as f:
        rate, total = f.samplerate, f.frames
        check_format(rate, f.channels)
        count = total if seconds is None else min(total, window_frames(seconds, rate))
        start = int(torch.randint(0, total - count + 1, ())) if random_start and total > count else 0
        if start:
            f.seek(start)
        samples = f.read(frames=count, dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise ValueError("audio has no samples")
    if not np.isfinite(samples).all():  # numpy's check is ~10x faster than torch's on a worker's one thread
        raise ValueError("audio holds NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(samples.T)), rate  # mono: no copy


def load(data: bytes, transform: AudioTransform) -> torch.Tensor:
    return transform.load(data)


def placeholder(transform: AudioTransform) -> torch.Tensor:
    return transform.placeholder()


def resample(waveform: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """Windowed-sinc resampling of [..., N] from `rate` to `target` Hz: torchaudio's filter (Hann-windowed sinc,
    6 zero crossings, roll-off 0.99) and output length, its ratio kept within RESAMPLE_KERNEL_BUDGET.

    torchaudio.functional.resample rebuilds a [new, orig + 2 x width] kernel for every call and convolves with all
    of it, although each output sample has only ~2 x width non-zero taps (34 of 475 from 44.1 to 16 kHz). Here the
    non-zero taps are computed once per rate pair (`_polyphase`, cached) and applied by one batched matmul (a
    strided convolution for integer ratios). The output is within 2e-6 of torchaudio's filter computed in float64
    for unit-variance noise (torchaudio's own float32 path: up to 1.4e-4; tests/test_data_audio_resample.py), and
    44.1 to 16 kHz runs about 5x faster (benchmarks/audio_decode.py)."""
    ratio = Fraction(rate, target)
    limit = ratio.denominator
    while _kernel_floats(ratio) > RESAMPLE_KERNEL_BUDGET:
        limit //= 2
        ratio = Fraction(rate, target).limit_denominator(max(1, limit))
    if ratio == 1:
        return waveform
    plan = _polyphase(ratio.numerator, ratio.denominator)
    return plan(waveform)


def _kernel_floats(ratio: Fraction) -> int:
    """Size of torchaudio's resampling kernel for a reduced ratio (its `_get_sinc_resample_kernel`, default width 6)."""
    orig, new = ratio.numerator, ratio.denominator
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))
    return new * (orig + 2 * width)


LOWPASS_ZEROS = 6  # torchaudio's lowpass_filter_width: zero crossings of the sinc on each side
ROLLOFF = 0.99  # torchaudio's rolloff: the cut-off as a fraction of the lower rate's Nyquist frequency


class _Polyphase:
    """Resampling by `new`/`orig` (a reduced ratio) with only the non-zero taps of torchaudio's sinc kernel.

    Output sample m = f x new + p (frame f, phase p) is sum_r k(r / orig - p / new) x[f x orig + r] over the inputs r
    within LOWPASS_ZEROS / base of it, with base = ROLLOFF x min(orig, new) and k torchaudio's Hann-windowed sinc. The
    phases are taken in groups of G: group g reads `taps` inputs from f x orig + g x step + lo, so one strided view of
    the padded input, [groups, frames, taps], times the weights [groups, taps, G] gives every output at once."""

    def __init__(self, orig: int, new: int):
        self.orig, self.new = orig, new
        base = min(orig, new) * ROLLOFF
        reach = orig * LOWPASS_ZEROS / base  # inputs on each side of an output with non-zero weight
        # Phases per group: enough that each group's matmul is not tiny, few enough that its window (taps) stays
        # close to the ~2 x reach non-zero ones (its start moves by orig / new per phase).
        self.group = min(new, 2 ** math.ceil(math.log2(max(1.0, 4 * reach * new / orig))))
        self.groups = -(-new // self.group)
        self.step = self.group * orig // new
        starts = [math.floor(g * self.group * orig / new - reach) - g * self.step for g in range(self.groups)]
        stops = [math.ceil((min(new, (g + 1) * self.group) - 1) * orig / new + reach) + 1 - g * self.step
                 for g in range(self.groups)]
        self.lo = min(starts)
        self.taps = max(stops) - self.lo
        g = torch.arange(self.groups, dtype=torch.float64)[:, None, None]
        k = torch.arange(self.taps, dtype=torch.float64)[None, :, None]
        j = torch.arange(self.group, dtype=torch.float64)[None, None, :]
        phase = g * self.group + j
        r = g * self.step + self.lo + k
        t = (r / orig - phase / new) * base  # in sinc units, as torchaudio's t
        window = torch.cos(t.clamp(-LOWPASS_ZEROS, LOWPASS_ZEROS) * math.pi / LOWPASS_ZEROS / 2) ** 2
        sinc = torch.where(t == 0, torch.ones(()), torch.sin(math.pi * t) / (math.pi * t))
        weights = sinc * window * (base / orig)
        weights[(t.abs() >= LOWPASS_ZEROS).expand_as(weights) | (phase >= new).expand_as(weights)] = 0
        weights = weights.to(torch.float32)  # [groups, taps, group]
        # Few phases (48 to 16 kHz: one) form one group, for torch's strided convolution: [new, 1, taps].
        self.weights = weights[0].T[:, None].contiguous() if self.groups == 1 else weights

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        shape, n = waveform.shape[:-1], waveform.shape[-1]
        if n == 0:
            return waveform.new_zeros(*shape, 0)
        x = waveform.reshape(-1, n)
        out_len = math.ceil(self.new * n / self.orig)  # torchaudio's output length
        frames = -(-out_len // self.new)
        left = max(0, -self.lo)
        last = (frames - 1) * self.orig + (self.groups - 1) * self.step + self.lo + self.taps  # one past
        padded = torch.nn.functional.pad(x, (left, max(0, last - n)))
        weights = self.weights
        if weights.dtype != x.dtype or weights.device != x.device:
            weights = weights.to(x.device, x.dtype)
        if self.groups == 1:  # the faster for few phases
            out = torch.nn.functional.conv1d(padded[:, None, left + self.lo:], weights, stride=self.orig)
            out = out.transpose(1, 2)  # [batch, frames, new]
        else:
            view = padded.as_strided((x.shape[0], self.groups, frames, self.taps),
                                     (padded.stride(0), self.step, self.orig, 1), left + self.lo)
            out = torch.matmul(view, weights)  # [batch, groups, frames, group]
            out = out.transpose(1, 2).reshape(x.shape[0], frames, -1)[..., :self.new]
        return out.reshape(*shape, -1)[..., :out_len]


@functools.lru_cache(maxsize=16)
def _polyphase(orig: int, new: int) -> _Polyphase:
    return _Polyphase(orig, new)


def crop(waveform: torch.Tensor, length: int, random_crop: bool) -> torch.Tensor:
    """[C, N] cut to at most `length` samples: a uniformly random window, or the start."""
    n = waveform.shape[-1]
    if n <= length:
        return waveform
    start = int(torch.randint(0, n - length + 1, ())) if random_crop else 0
    return waveform[..., start:start + length]


def fit_length(waveform: torch.Tensor, length: int, random_crop: bool) -> torch.Tensor:
    """Crop [C, N] to `length` samples (a random window, or the start), or repeat-pad it up to `length`."""
    waveform = crop(waveform, length, random_crop)
    n = waveform.shape[-1]
    if n < length:
        repeated = waveform.repeat(1, length // n)
        return torch.nn.functional.pad(repeated, (0, length - repeated.shape[-1]))
    return waveform


def _note_resampling(rate: int, target: int) -> None:
    """Say (once per process and rate pair, for the first few pairs) that training resamples clip by clip."""
    if (rate, target) in _RESAMPLING_NOTED or len(_RESAMPLING_NOTED) >= 4:
        return
    _RESAMPLING_NOTED.add((rate, target))
    log.info("audio at %d Hz is resampled to %d Hz in the loader, clip by clip at every step; shards stored at %d Hz "
             "mono (mmcl shards prepare --audio-rate %d --audio-mono) skip that and decode one channel (44.1 kHz "
             "stereo: about 4x less loader time per clip, benchmarks/audio_decode.py)", rate, target, target, target)


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
        check_format(sample_rate, waveform.shape[0])
        mono = waveform.mean(dim=0, keepdim=True)
        # The window is cut before resampling, so the cost does not grow with the clip's length.
        mono = crop(mono, window_frames(self.cfg.clip_seconds, sample_rate), self.train)
        if sample_rate != self.cfg.sample_rate:
            if self.train:
                _note_resampling(sample_rate, self.cfg.sample_rate)
            mono = resample(mono, sample_rate, self.cfg.sample_rate)
        clip = fit_length(mono, self.cfg.num_samples, random_crop=False)
        spec = self.to_db(self.mel(clip))
        for mask in self.masks:
            spec = mask(spec)
        return spec

    def load(self, data: bytes) -> torch.Tensor:
        """Encoded audio to the transformed clip, reading only the frames of the window it uses."""
        return self(*decode(data, self.cfg.clip_seconds, random_start=self.train))

    def windows(self, data: bytes, stride_seconds: float | None, max_seconds: float) -> torch.Tensor:
        """Every window of a long clip, for evaluation: [K, 1, n_mels, num_frames].

        Windows are clip_seconds long and start every `stride_seconds` (default: clip_seconds, side by side); the
        last one ends where the clip ends, so no tail goes unheard. A clip no longer than one window gives one
        window, repeat-padded as `load` pads it. At most `max_seconds` of the file are read. The whole clip is
        resampled once and then cut, so the first window can differ from `load`'s (which cuts, then resamples) in
        the last bits near its end.
        """
        waveform, rate = decode(data, max_seconds)
        check_format(rate, waveform.shape[0])
        mono = waveform.mean(dim=0, keepdim=True)
        if rate != self.cfg.sample_rate:
            mono = resample(mono, rate, self.cfg.sample_rate)
        length, total = self.cfg.num_samples, mono.shape[-1]
        stride = max(1, round((stride_seconds or self.cfg.clip_seconds) * self.cfg.sample_rate))
        starts = list(range(0, max(total - length, 0) + 1, stride))
        if total > length and starts[-1] != total - length:
            starts.append(total - length)
        clips = torch.stack([fit_length(mono[..., start:start + length], length, random_crop=False)
                             for start in starts])
        return self.to_db(self.mel(clips))

    def placeholder(self) -> torch.Tensor:
        """Zeros shaped like a transformed clip, standing in for samples that lack audio."""
        return torch.zeros(1, self.cfg.n_mels, self.cfg.num_frames)
