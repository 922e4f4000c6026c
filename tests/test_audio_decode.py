"""Audio decoding: streaming decode, downmix, resampling, windows, silence, ImageBind fbank."""

from __future__ import annotations

import tracemalloc
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from loupe.indexer.media.audio import AudioDecodeError, audio_windows, decode_audio, probe_audio
from loupe.indexer.media.audio_features import kaldi_fbank

SR = 16000
WIN = 2 * SR


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def write_wav(path: Path, channels: list[np.ndarray] | np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV from float signals in [-1, 1], one array per channel."""
    data = np.atleast_2d(np.asarray(channels, dtype=np.float64))
    pcm = np.clip(np.rint(data * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.T.tobytes())
    return path


def write_flac(path: Path, signal: np.ndarray, rate: int) -> Path:
    """Mono FLAC written with PyAV's encoder."""
    pcm = np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        for i in range(0, len(pcm), 4096):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 4096], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def decoded(path: Path, rate: int = SR) -> np.ndarray:
    return np.concatenate([c.samples for c in decode_audio(path, rate)])


def peak_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


# ---- windows: counts and times ------------------------------------------------------------

@pytest.mark.parametrize("seconds, expected", [
    (0.05, [(0.0, 0.05)]),  # shorter than the minimum tail, but the only audio: kept
    (0.1, [(0.0, 0.1)]),
    (2.0, [(0.0, 2.0)]),
    (2.05, [(0.0, 2.0)]),  # 0.05 s tail: below min_tail_s, no window
    (2.5, [(0.0, 2.0), (2.0, 2.5)]),
    (7.0, [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 7.0)]),
])
def test_window_times(tmp_path, seconds, expected):
    path = write_wav(tmp_path / "t.wav", sine(seconds, SR), SR)
    wins = list(audio_windows(path))
    assert [(w.start, w.end) for w in wins] == expected
    assert [w.index for w in wins] == list(range(len(expected)))
    for w in wins:
        n = round((w.end - w.start) * SR)
        assert w.samples.dtype == np.float32 and w.samples.shape == (WIN,)
        assert w.num_samples == n and len(w.valid) == n
        assert not w.samples[n:].any()  # zero padding
        assert abs(w.rms_db - 20 * np.log10(0.5 / np.sqrt(2))) < 0.3  # over real samples only
        assert not w.silent


def test_overlapping_windows(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(3.5, SR), SR)
    wins = list(audio_windows(path, window_s=2.0, hop_s=1.0))
    # full 0-2 and 1-3, then one partial 2-3.5 (3-3.5 would add nothing new)
    assert [(w.start, w.end) for w in wins] == [(0.0, 2.0), (1.0, 3.0), (2.0, 3.5)]
    full = decoded(path)
    assert np.array_equal(wins[1].samples, full[SR:3 * SR])


def test_window_samples_are_the_stream(tmp_path):
    rng = np.random.default_rng(0)
    path = write_wav(tmp_path / "noise.wav", rng.uniform(-0.5, 0.5, 5 * SR + 123), SR)
    full = decoded(path)
    assert len(full) == 5 * SR + 123
    joined = np.concatenate([w.valid for w in audio_windows(path)])
    assert np.array_equal(joined, full)


def test_ten_minutes_streamed_in_bounded_memory(tmp_path):
    minutes = 10
    rate = 8000  # small file to write; still exercises the resampler (8 -> 16 kHz)
    path = write_wav(tmp_path / "long.wav", sine(minutes * 60, rate, amp=0.3), rate)
    whole_signal = minutes * 60 * SR * 4  # bytes of the decoded float32 signal: 38.4 MB
    tracemalloc.start()
    try:
        count = 0
        last = None
        for w in audio_windows(path):
            assert w.start == 2.0 * count and w.end == w.start + 2.0
            assert not w.silent
            count += 1
            last = w
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300 and last is not None and last.end == 600.0
    assert peak < whole_signal / 20, f"peak {peak / 1e6:.1f} MB"


# ---- resampling and downmix ---------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("stereo", [False, True])
def test_sine_survives_resampling(tmp_path, rate, stereo):
    x = sine(2.0, rate)
    path = write_wav(tmp_path / "s.wav", [x, x] if stereo else x, rate)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels, info.codec) == (rate, 2 if stereo else 1,
                                                             "pcm_s16le")
    assert info.duration == pytest.approx(2.0)
    y = decoded(path)
    assert y.dtype == np.float32
    assert len(y) == 2 * SR  # exact sample count
    assert abs(peak_hz(y) - 440.0) <= 0.5
    middle = y[SR // 4: -SR // 4]  # away from the resampler's edge transients
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.01)
    assert np.sqrt(np.mean(middle.astype(np.float64) ** 2)) == pytest.approx(0.5 / np.sqrt(2),
                                                                              abs=0.005)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_stereo_downmix_is_the_average(tmp_path, rate):
    x = sine(2.0, rate)
    mono = decoded(write_wav(tmp_path / "mono.wav", x, rate))
    same = decoded(write_wav(tmp_path / "same.wav", [x, x], rate))
    np.testing.assert_allclose(same, mono, atol=1e-6)
    # sound in one channel only: the average halves it (libswresample's own mono
    # downmix would give 1/sqrt(2))
    left_only = decoded(write_wav(tmp_path / "left.wav", [x, np.zeros_like(x)], rate))
    np.testing.assert_allclose(left_only, mono / 2, atol=1e-4)
    # opposite phases cancel
    anti = decoded(write_wav(tmp_path / "anti.wav", [x, -x], rate))
    assert np.max(np.abs(anti)) < 1e-4


def test_other_rate_and_flac(tmp_path):
    x = sine(3.0, 44100, freq=1000.0)
    path = write_flac(tmp_path / "s.flac", x, 44100)
    assert probe_audio(path).codec == "flac"
    y = decoded(path, rate=22050)  # any target rate
    assert len(y) == 3 * 22050
    assert abs(peak_hz(y, 22050) - 1000.0) <= 0.5


# ---- silence ------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, 44100])
def test_silence_is_marked_not_dropped(tmp_path, rate):
    tone = sine(2.0, rate)
    path = write_wav(tmp_path / "tst.wav", np.concatenate([tone, np.zeros_like(tone), tone]),
                     rate)
    wins = list(audio_windows(path))
    assert [w.silent for w in wins] == [False, True, False]
    assert [(w.start, w.end) for w in wins] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert wins[1].rms_db < -50.0 < wins[0].rms_db


def test_silence_threshold(tmp_path):
    quiet = sine(2.0, SR, amp=10 ** (-40 / 20) * np.sqrt(2))  # RMS -40 dBFS
    path = write_wav(tmp_path / "q.wav", quiet, SR)
    (w,) = audio_windows(path)
    assert w.rms_db == pytest.approx(-40.0, abs=0.1)
    assert not w.silent
    (w,) = audio_windows(path, silence_db=-30.0)
    assert w.silent


# ---- the corpus ---------------------------------------------------------------------------

def expected_window_count(n_samples: int, win: int = WIN, min_tail: int = SR // 10) -> int:
    full, tail = divmod(n_samples, win)
    return full + (1 if tail >= min_tail or full == 0 else 0)


def test_every_corpus_sound_decodes(corpus):
    sounds = sorted((corpus / "sounds").glob("*.oga"))
    assert sounds
    for path in sounds:
        info = probe_audio(path)
        assert info.codec == "vorbis" and info.duration and info.duration > 0
        wins = audio_windows(path)
        out = list(wins)
        reader = wins.reader
        assert reader.complete and not reader.problems, (path.name, reader.problems)
        assert abs(reader.samples_decoded - info.duration * SR) <= 1, path.name
        assert len(out) == expected_window_count(reader.samples_decoded), path.name
        assert not out[0].silent, path.name


def test_three_shots_soundtrack(corpus):
    # bell 0-8 s, phone-incoming-call 8-16 s, alarm-clock-elapsed 16-24 s, each padded
    # with silence to 8 s
    path = corpus / "video" / "three_shots.mp4"
    assert probe_audio(path).codec == "aac"
    wins = list(audio_windows(path))
    assert len(wins) == 12
    assert [(w.start, w.end) for w in wins] == [(2.0 * k, 2.0 * k + 2.0) for k in range(12)]
    margin = 0.05  # AAC frames (1024 samples) can smear a sound's end a little
    checked = 0
    for seg_start, name in [(0, "bell"), (8, "phone-incoming-call"),
                            (16, "alarm-clock-elapsed")]:
        sound_end = seg_start + probe_audio(corpus / "sounds" / f"{name}.oga").duration
        for w in wins:
            if seg_start <= w.start < seg_start + 8:
                if w.start == seg_start:
                    assert not w.silent, (name, w.start, w.rms_db)
                elif w.start >= sound_end + margin:
                    assert w.silent, (name, w.start, w.rms_db)
                    checked += 1
    assert checked >= 6  # bell (0.14 s) and phone (1.46 s) leave three silent windows each


def test_webm_opus_soundtrack_matches_mp4(corpus):
    mp4 = list(audio_windows(corpus / "video" / "three_shots.mp4"))
    webm = list(audio_windows(corpus / "video" / "three_shots_10s.webm"))
    assert probe_audio(corpus / "video" / "three_shots_10s.webm").codec == "opus"
    assert [(w.start, w.end) for w in webm] == [(2.0 * k, 2.0 * k + 2.0) for k in range(5)]
    assert [w.silent for w in webm] == [w.silent for w in mp4[:5]]


# ---- ImageBind's fbank --------------------------------------------------------------------

def reference_fbank(x: np.ndarray) -> torch.Tensor:
    """ImageBind's preprocessing written out with torchaudio, independent of kaldi_fbank."""
    import torchaudio

    wave_ = torch.tensor(x, dtype=torch.float32)[None]
    wave_ = wave_ - wave_.mean()
    fb = torchaudio.compliance.kaldi.fbank(
        wave_, htk_compat=True, sample_frequency=16000, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_length=25,
        frame_shift=10).T
    fb = fb[:, :204]
    fb = torch.cat([fb, torch.zeros(128, 204 - fb.shape[1])], dim=1)
    return ((fb + 4.268) / 9.138)[None]


def test_kaldi_fbank_matches_imagebind_recipe():
    rng = np.random.default_rng(1)
    x = (sine(2.0, SR) + rng.normal(0, 0.05, WIN) + 0.1).astype(np.float32)  # with DC offset
    before = x.copy()
    got = kaldi_fbank(x)
    assert got.shape == (1, 128, 204) and got.dtype == torch.float32
    torch.testing.assert_close(got, reference_fbank(x), rtol=0, atol=1e-5)
    assert np.array_equal(x, before)  # input left alone
    # a 2 s clip has 1 + (32000 - 400) // 160 = 198 frames; the rest is padding (0 before
    # normalisation)
    pad = torch.full((128, 6), 4.268 / 9.138)
    torch.testing.assert_close(got[0, :, 198:], pad)
    assert not torch.allclose(got[0, :, 197], pad[:, 0])
    # the 440 Hz tone is the loudest mel band: kaldi's bins are evenly spaced in HTK mel
    # between 20 Hz and Nyquist, bin i centred on point i + 1 of 130
    def mel(f: float) -> float:
        return 1127.0 * np.log(1.0 + f / 700.0)

    band = (mel(440.0) - mel(20.0)) / ((mel(8000.0) - mel(20.0)) / 129) - 1
    assert abs(int(got[0, :, :198].mean(dim=1).argmax()) - band) <= 1


def test_kaldi_fbank_silence_short_and_long():
    for x in (np.zeros(WIN, np.float32), np.zeros(10, np.float32),
              sine(0.5, SR).astype(np.float32), sine(3.0, SR).astype(np.float32)):
        got = kaldi_fbank(x)
        assert got.shape == (1, 128, 204)
        assert torch.isfinite(got).all()
    long = sine(3.0, SR).astype(np.float32)
    torch.testing.assert_close(kaldi_fbank(long), reference_fbank(long), rtol=0, atol=1e-5)


def test_kaldi_fbank_of_a_padded_window(tmp_path):
    path = write_wav(tmp_path / "short.wav", sine(0.5, SR), SR)
    (w,) = audio_windows(path)
    torch.testing.assert_close(kaldi_fbank(w.valid), reference_fbank(w.valid), rtol=0,
                               atol=1e-5)


# ---- hostile files ------------------------------------------------------------------------

def test_zero_byte(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        probe_audio(path)
    with pytest.raises(AudioDecodeError, match="empty file"):
        audio_windows(path)  # raised at once, not on first next()


def test_garbage_with_wav_extension(tmp_path):
    path = tmp_path / "fake.wav"
    path.write_bytes(b"this is not a wav file\n" * 200)
    with pytest.raises(AudioDecodeError, match="cannot open") as e:
        decode_audio(path)
    assert "\n" not in str(e.value)


def test_photo_has_no_audio(tmp_path):
    from helpers.media import solid

    path = solid(tmp_path / "photo.jpg", (200, 10, 10))
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        probe_audio(path)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        audio_windows(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="not found"):
        audio_windows(tmp_path / "nope.ogg")


def test_wav_without_samples(tmp_path):
    path = write_wav(tmp_path / "none.wav", np.zeros(0), SR)
    wins = audio_windows(path)
    with pytest.raises(AudioDecodeError, match="no samples"):
        list(wins)


def test_truncated_ogg_decodes_its_prefix(tmp_path, corpus):
    # Documented behaviour: a cut Ogg file yields the audio of its complete pages. FFmpeg
    # takes an Ogg's duration from the last page present, so the cut is not detectable.
    source = corpus / "sounds" / "alarm-clock-elapsed.oga"
    data = source.read_bytes()
    path = tmp_path / "cut.oga"
    path.write_bytes(data[: len(data) // 2])
    full = list(audio_windows(source))
    wins = audio_windows(path)
    cut = list(wins)
    assert 0.2 * probe_audio(source).duration < wins.reader.duration < full[-1].end
    assert 0 < len(cut) < len(full)
    np.testing.assert_allclose(cut[0].samples, full[0].samples, atol=1e-5)


def test_truncated_header(tmp_path, corpus):
    data = (corpus / "sounds" / "bell.oga").read_bytes()
    path = tmp_path / "head.oga"
    path.write_bytes(data[:100])
    with pytest.raises(AudioDecodeError):
        list(audio_windows(path))


def test_stop_early_releases_the_file(tmp_path):
    path = write_wav(tmp_path / "t.wav", sine(10.0, SR), SR)
    with audio_windows(path) as wins:
        first = next(wins)
    assert first.end == 2.0
    with pytest.raises(StopIteration):
        next(wins)
