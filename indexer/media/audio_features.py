"""Sound windows to model input: ImageBind's recipe, kaldi filter banks (torchaudio),
checked against ImageBind's own preprocessing in tests/test_imagebind.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from loupe.indexer.encoders.spec import AudioPreprocess
from loupe.indexer.media.audio import (
    DEFAULT_SAMPLE_RATE,
    IMAGEBIND_MEAN,
    IMAGEBIND_NUM_MEL_BINS,
    IMAGEBIND_STD,
    IMAGEBIND_TARGET_LENGTH,
    AudioDecodeError,
    AudioWindow,
    audio_windows,
)

if TYPE_CHECKING:
    import torch


def kaldi_fbank(samples: np.ndarray | torch.Tensor, sample_rate: int = DEFAULT_SAMPLE_RATE,
                num_mel_bins: int = IMAGEBIND_NUM_MEL_BINS,
                target_length: int = IMAGEBIND_TARGET_LENGTH,
                mean: float = IMAGEBIND_MEAN, std: float = IMAGEBIND_STD) -> torch.Tensor:
    """ImageBind's audio input for one clip: a normalised log-mel spectrogram.

    Returns a float32 tensor of shape ``(1, num_mel_bins, target_length)`` (a one-channel
    image; ImageBind stacks clips to (clips, 1, 128, 204) per file).

    Same as ImageBind (``imagebind/data.py``: ``waveform2melspec`` and
    ``load_and_transform_audio_data``):

    - the waveform is float in [-1, 1] as loaded (no int16 scaling), shape (1, N), and
      its mean is subtracted;
    - ``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True``, ``use_energy=False``,
      ``window_type="hanning"``, ``num_mel_bins=128``, ``dither=0.0``,
      ``frame_length=25`` ms, ``frame_shift=10`` ms at ``sample_frequency=16000``
      (a 2 s clip gives 198 frames);
    - transposed to (mel, frames), zero-padded at the end (or cut) to 204 frames, the
      padding added before normalisation (so padded frames become ``-mean / std``);
    - normalised ``(x - (-4.268)) / 9.138``.

    Where we differ:

    - ImageBind loads the whole file with ``torchaudio.load`` and resamples it with
      ``torchaudio.functional.resample``; we stream through libswresample (a different
      low-pass filter: same pitch and level, not bit-identical samples);
    - on multichannel files ImageBind's fbank uses channel 0 only (after subtracting the
      mean over all channels); we average the channels;
    - ImageBind takes 3 clips of 2 s per file (``ConstantClipsPerVideoSampler``: starts
      evenly spread from 0 to duration - 2 s) and the model averages their embeddings;
      we window the whole file and embed every window;
    - a clip shorter than one 25 ms frame (400 samples) is zero-padded to one frame here;
      ImageBind would fail on it (division by zero frames);
    - ImageBind logs a warning when the frame count is more than 20 % off the target;
      we do not.
    """
    import torch  # loaded only where sound becomes features (not by every importer)

    wave = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(1, -1)
    wave = wave - wave.mean()  # a new tensor: the caller's samples are left alone
    frame = int(sample_rate * 0.025)
    if wave.shape[1] < frame:
        wave = torch.nn.functional.pad(wave, (0, frame - wave.shape[1]))
    import torchaudio.compliance.kaldi as kaldi  # deferred: torchaudio loads slowly

    fbank = kaldi.fbank(wave, htk_compat=True, sample_frequency=sample_rate,
                        use_energy=False, window_type="hanning",
                        num_mel_bins=num_mel_bins, dither=0.0, frame_length=25,
                        frame_shift=10)
    fbank = fbank.transpose(0, 1)  # (mel, frames)
    n = fbank.shape[1]
    if n < target_length:
        fbank = torch.nn.functional.pad(fbank, (0, target_length - n), value=0.0)
    elif n > target_length:
        fbank = fbank[:, :target_length]
    return ((fbank - mean) / std).unsqueeze(0)


def window_features(window: AudioWindow, audio: AudioPreprocess) -> torch.Tensor:
    """The encoder input of one window: its fbank, of the real samples only (no padding)."""
    return kaldi_fbank(window.valid, audio.sample_rate, audio.num_mel_bins,
                       audio.target_length, audio.mean, audio.std)


def audio_feature_batches(path: str | os.PathLike, audio: AudioPreprocess, batch: int = 32,
                          max_seconds: float | None = None,
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A file's windows as encoder input, ``batch`` windows at a time, streaming: only the
    windows that start in the first ``max_seconds`` (every window when None) are decoded.

    Yields ``(features, silent)``: float32 (n, 1, mel bins, frames) and a bool (n,) mask,
    n <= ``batch``. Raises :class:`AudioDecodeError` when the file has no decodable sound.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    feats: list[np.ndarray] = []
    silent: list[bool] = []
    seen = 0
    with audio_windows(path, audio.clip_seconds, sample_rate=audio.sample_rate) as windows:
        for w in windows:
            if max_seconds is not None and w.start >= max_seconds and seen:
                break  # closing the windows stops the decoding: the rest is never read
            feats.append(window_features(w, audio).numpy())
            silent.append(w.silent)
            seen += 1
            if len(feats) == batch:
                yield np.stack(feats), np.array(silent, dtype=bool)
                feats, silent = [], []
    if feats:
        yield np.stack(feats), np.array(silent, dtype=bool)
    elif not seen:
        raise AudioDecodeError(f"{os.fspath(path)}: no sound decoded")


def audio_features(path: str | os.PathLike, audio: AudioPreprocess,
                   max_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All windows of a file (those that start in the first ``max_seconds``, when
    given) as encoder input, for a sound query.

    Returns ``(features, silent)``: float32 (N, 1, mel bins, frames) and a bool (N,) mask.
    Raises :class:`AudioDecodeError` when the file has no decodable sound.
    """
    parts = list(audio_feature_batches(path, audio, 64, max_seconds))
    return (np.concatenate([f for f, _ in parts]),
            np.concatenate([s for _, s in parts]))
