"""Resampling and windowed decoding of 44.1 kHz Ogg Vorbis and FLAC clips, against independent references:
torchaudio's own resampler computed in float64, and the frames cut out of a full decode."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from mmcl.data.audio import AudioFrontEndConfig, AudioTransform, _polyphase, decode, resample, window_frames

RATES = (8000, 11025, 12000, 22050, 24000, 32000, 37800, 44100, 48000, 88200, 96000, 192000)


@pytest.mark.parametrize("rate", RATES)
def test_resample_equals_torchaudios_filter_within_float32_rounding(rate):
    """Same filter (Hann-windowed sinc, 6 zero crossings, roll-off 0.99) and output length as
    torchaudio.functional.resample; the reference is computed in float64, where torchaudio's own float32 path is off
    by up to 1.4e-4 (11025 Hz: its kernel's arguments are rounded to float32) and mmcl's by at most 2e-6."""
    rng = torch.Generator().manual_seed(rate)
    for n in (1, 2, 7, 100, 441, 4410, 2 * rate + 3):
        wave = torch.randn(2, n, dtype=torch.float64, generator=rng)
        reference = torchaudio.functional.resample(wave, rate, 16000)
        out = resample(wave.float(), rate, 16000)
        assert out.shape == reference.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, reference.float(), atol=2e-6, rtol=0)


def test_resample_keeps_leading_dimensions_and_float64():
    wave = torch.randn(3, 2, 1000, dtype=torch.float64)
    out = resample(wave, 44100, 16000)
    assert out.shape == (3, 2, 363) and out.dtype == torch.float64
    torch.testing.assert_close(out[1, 0], resample(wave[1, 0], 44100, 16000))
    assert resample(wave, 16000, 16000) is wave
    assert resample(torch.zeros(2, 0), 44100, 16000).shape == (2, 0)


def test_resample_passes_the_band_and_stops_aliases():
    t = torch.arange(2 * 44100) / 44100

    def gain_db(hz: float) -> float:
        tone = torch.sin(2 * math.pi * hz * t)[None]
        out = resample(tone, 44100, 16000)[:, 400:-400]  # away from the zero-padded edges
        return 20 * math.log10(float(out.pow(2).mean().sqrt() / tone.pow(2).mean().sqrt()))

    assert abs(gain_db(1000)) < 0.05
    assert gain_db(12000) < -45  # would fold onto 4 kHz
    assert gain_db(20000) < -45


def test_resample_plans_are_cached_per_rate_pair():
    resample(torch.randn(1, 1000), 44100, 16000)
    before = _polyphase.cache_info().hits
    resample(torch.randn(1, 500), 44100, 16000)
    assert _polyphase.cache_info().hits == before + 1


def _clip(fmt: str, seconds: float = 6.0, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    left = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.1 * t)) + 0.02 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([left, right], axis=1).astype("float32"), rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["OGG", "FLAC"])
def test_training_clip_is_the_transform_of_the_same_frames_cut_from_a_full_decode(fmt):
    """The training path seeks and decodes only its window; the reference decodes everything and slices."""
    cfg = AudioFrontEndConfig(sample_rate=16000, clip_seconds=2.0, freq_mask=8, time_mask=10)
    transform = AudioTransform(cfg, train=True)
    data = _clip(fmt)
    full, rate = decode(data)
    count = window_frames(cfg.clip_seconds, rate)
    starts = set()
    for seed in range(4):
        torch.manual_seed(seed)
        clip = transform.load(data)
        torch.manual_seed(seed)  # the window's start is the first draw; SpecAugment's masks follow
        start = int(torch.randint(0, full.shape[-1] - count + 1, ()))
        assert torch.equal(clip, transform(full[:, start:start + count], rate))
        torch.manual_seed(seed)
        assert torch.equal(clip, transform.load(data))  # the same seed gives the same clip
        starts.add(start)
    assert len(starts) == 4


def test_corrupt_ogg_and_flac_are_skipped_and_counted(tmp_path):
    from mmcl.data import DataConfig, build_loader
    from tests.shard_factory import image_text_samples, tokenizer, write_shards

    good = [{**s, "ogg": _clip("OGG", 1.0)} for s in image_text_samples(3, prefix="good")]
    ogg, flac = _clip("OGG", 3.0), _clip("FLAC", 3.0)
    bad = [{"__key__": "garbage_ogg", "txt": "x", "ogg": b"OggS" + bytes(200)},
           {"__key__": "header_only_flac", "txt": "x", "flac": flac[:60]},
           {"__key__": "half_ogg", "txt": "x", "ogg": ogg[: len(ogg) // 2]}]
    write_shards(tmp_path, good + bad, per_shard=6)
    transform = AudioTransform(AudioFrontEndConfig(clip_seconds=2.0), train=True)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=1, num_workers=0, modalities=["text", "audio"])
    batches = list(build_loader(cfg, {"audio": transform}, tokenizer(), train=True))
    decoded = {k for b in batches for k, has in zip(b["__key__"], b["audio_mask"]) if has}
    failures = sum(b["__failures__"].get("undecodable audio", 0) for b in batches)
    assert {"good00000", "good00001", "good00002"} <= decoded
    assert "garbage_ogg" not in decoded and "header_only_flac" not in decoded
    # A cut-off Ogg stream is either decoded as far as it goes or refused and counted; never a crash.
    assert failures == 2 + ("half_ogg" not in decoded)


def test_training_says_once_that_it_resamples(caplog, monkeypatch):
    import mmcl.data.audio as audio

    monkeypatch.setattr(audio, "_RESAMPLING_NOTED", set())
    cfg = AudioFrontEndConfig(sample_rate=16000, clip_seconds=0.1)
    wave = torch.randn(1, 4410)
    with caplog.at_level("INFO", logger="mmcl.data"):
        AudioTransform(cfg, train=False)(wave, 44100)  # evaluation: quiet
        for _ in range(3):
            AudioTransform(cfg, train=True)(wave, 44100)
        AudioTransform(cfg, train=True)(torch.randn(1, 1600), 16000)  # nothing to resample
    notes = [r.getMessage() for r in caplog.records if "resampled" in r.getMessage()]
    assert len(notes) == 1 and "44100 Hz is resampled to 16000 Hz" in notes[0]
    assert "--audio-rate 16000 --audio-mono" in notes[0]
