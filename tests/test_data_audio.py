"""Audio front end: decode, crop/pad policy, log-mel shape and values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmcl.data.audio import AudioFrontEndConfig, AudioTransform, decode, fit_length
from tests.shard_factory import audio_bytes


def test_decode_keeps_channels_and_rate():
    stereo = np.stack([np.linspace(-0.5, 0.5, 800), np.zeros(800)], axis=1).astype("float32")
    waveform, rate = decode(audio_bytes(stereo, 8000))
    assert rate == 8000 and waveform.shape == (2, 800)
    torch.testing.assert_close(waveform[0], torch.from_numpy(stereo[:, 0]), atol=1e-4, rtol=0)


def test_fit_length_crops_start_or_repeat_pads():
    wave = torch.arange(10.0)[None]
    assert fit_length(wave, 4, random_crop=False).tolist() == [[0, 1, 2, 3]]
    assert fit_length(torch.arange(3.0)[None], 8, random_crop=False).tolist() == [[0, 1, 2, 0, 1, 2, 0, 0]]
    torch.manual_seed(0)
    windows = {tuple(fit_length(wave, 4, random_crop=True)[0].tolist()) for _ in range(50)}
    assert len(windows) > 3 and all(w == tuple(range(int(w[0]), int(w[0]) + 4)) for w in windows)


def test_log_mel_of_a_tone_peaks_at_its_band_after_resampling():
    cfg = AudioFrontEndConfig(sample_rate=16000, clip_seconds=1.0, n_fft=512, hop_length=160, n_mels=64)
    rate = 22050
    t = np.arange(int(rate * 0.6)) / rate
    tone = (0.5 * np.sin(2 * math.pi * 1000 * t)).astype("float32")
    spec = AudioTransform(cfg, train=False)(torch.from_numpy(tone)[None].repeat(2, 1), rate)
    assert spec.shape == (1, 64, cfg.num_frames) == (1, 64, 101)
    # The mel band holding 1 kHz is the loudest band on average.
    mel_hz = 700 * (10 ** (np.linspace(2595 * np.log10(1), 2595 * np.log10(1 + 8000 / 700), 66) / 2595) - 1)
    expected_band = int(np.argmin(np.abs(mel_hz[1:-1] - 1000)))
    assert abs(int(spec[0].mean(dim=1).argmax()) - expected_band) <= 1
    assert AudioTransform(cfg, train=False).placeholder().shape == spec.shape


def test_specaugment_only_in_training():
    cfg = AudioFrontEndConfig(clip_seconds=0.5, freq_mask=20, time_mask=20)
    noise = torch.randn(1, 8000) * 0.1
    torch.manual_seed(1)
    train = AudioTransform(cfg, train=True)(noise, 16000)
    evaluation = AudioTransform(cfg, train=False)(noise, 16000)
    assert (train == 0).sum() > 0  # masked cells are set to zero
    assert not torch.equal(train, evaluation)
    assert torch.equal(evaluation, AudioTransform(cfg, train=False)(noise, 16000))


def test_empty_audio_is_rejected():
    with pytest.raises(ValueError, match="no samples"):
        decode(audio_bytes(np.zeros((0, 1), dtype="float32"), 16000, format="WAV"))


def test_audio_batches_feed_the_tiny_audio_model(tmp_path):
    from mmcl.data import DataConfig, build_loader
    from mmcl.models import create_model
    from tests.shard_factory import image_text_samples, tone, write_shards

    model, transforms, tokenizer = create_model("tiny-audio")
    samples = [{**s, "flac": tone(seconds=0.5 + i)} if i % 2 else s for i, s in enumerate(image_text_samples(4))]
    write_shards(tmp_path, samples, per_shard=4)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=0, modalities=["image", "text", "audio"])
    (batch,) = list(build_loader(cfg, transforms.train, tokenizer, train=True))
    front_end = transforms.train["audio"].cfg
    assert batch["audio"].shape == (4, 1, front_end.n_mels, front_end.num_frames)
    assert batch["audio_mask"].sum() == 2
    assert {k for k, m in zip(batch["__key__"], batch["audio_mask"]) if m} == {"s00001", "s00003"}
    with torch.no_grad():
        outputs = model(batch)
    assert outputs["audio"].shape == outputs["image"].shape == (4, 64)


def test_decode_reads_only_the_window_and_it_matches_the_full_decode():
    rate = 8000
    wave = (np.random.default_rng(0).standard_normal(rate * 60) * 0.1).astype("float32")  # one minute
    data = audio_bytes(wave[:, None], rate, format="WAV")
    full, _ = decode(data)
    first, _ = decode(data, seconds=0.5)
    assert torch.equal(first, full[:, :4000])
    torch.manual_seed(3)
    window, _ = decode(data, seconds=0.5, random_start=True)
    # Where the window sits: among the places its first sample occurs, the one it matches whole.
    places = torch.nonzero(full[0] == window[0, 0]).flatten().tolist()
    start = next(s for s in places if torch.equal(window, full[:, s:s + 4000]))
    assert start > 0


def test_evaluation_clip_from_bytes_equals_the_transform_of_the_whole_waveform():
    cfg = AudioFrontEndConfig(sample_rate=16000, clip_seconds=1.0)
    wave = (np.random.default_rng(1).standard_normal((44100 * 5, 2)) * 0.1).astype("float32")
    data = audio_bytes(wave, 44100, format="WAV")
    transform = AudioTransform(cfg, train=False)
    assert torch.equal(transform.load(data), transform(*decode(data)))


def test_common_rates_resample_as_torchaudio_and_odd_rates_stay_cheap():
    import torchaudio

    from mmcl.data.audio import RESAMPLE_KERNEL_BUDGET, _kernel_floats, resample

    wave = torch.randn(1, 22050, dtype=torch.float64)
    for rate in (8000, 11025, 22050, 32000, 44100, 48000, 96000):
        # torchaudio's filter, computed in float64: mmcl's float32 output is within 2e-6 of it (unit-variance
        # noise); see tests/test_data_audio_resample.py
        torch.testing.assert_close(resample(wave.float(), rate, 16000),
                                   torchaudio.functional.resample(wave, rate, 16000).float(), atol=2e-6, rtol=0)
    from fractions import Fraction

    assert _kernel_floats(Fraction(48001, 16000)) > 100 * RESAMPLE_KERNEL_BUDGET  # what torchaudio would build
    t = torch.arange(48001) / 48001
    tone = torch.sin(2 * math.pi * 1000 * t)[None]
    out = resample(tone, 48001, 16000)  # one second: a 1 kHz tone stays a 1 kHz tone
    assert abs(out.shape[-1] - 16000) <= 1
    assert int(torch.fft.rfft(out[0]).abs().argmax()) == pytest.approx(1000, abs=1)


@pytest.mark.parametrize("rate", [1, 999, 10**9])
def test_absurd_header_rates_are_refused(rate):
    from tests.hostile_corpus import with_rate

    data = with_rate(audio_bytes(np.zeros((800, 1), "float32"), 16000, format="WAV"), rate)
    with pytest.raises(ValueError, match=f"sample rate {rate} Hz is outside"):
        decode(data)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_refused(bad):
    from tests.hostile_corpus import wav  # 32-bit float WAV: the one common format that can store NaN

    with pytest.raises(ValueError, match="NaN or infinite"):
        decode(wav(np.array([0.1, bad] * 100, "float32")))
