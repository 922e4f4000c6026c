"""Test media made on the spot (solid pictures, tones as WAV files) and where the shared
corpus lies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent


CORPUS = REPO.parent / "shared" / "corpus"


def solid(path: Path, color: tuple[int, int, int], size=(40, 30), fmt: str | None = None) -> Path:
    """Write a solid-colour image."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Write float samples in [-1, 1] ((n,) mono or (n, channels)) as 16-bit PCM WAV."""
    import wave

    data = np.asarray(samples, np.float64)
    data = data[:, None] if data.ndim == 1 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def sine(freq: float, seconds: float, rate: int = 16000, level: float = 0.5) -> np.ndarray:
    """A sine tone."""
    t = np.arange(round(seconds * rate)) / rate
    return level * np.sin(2 * np.pi * freq * t)
