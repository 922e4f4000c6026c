"""Toy encoders whose answers can be worked out by hand, registered as backends so that
indexes they built reopen (``encoder_from_spec``) like any other."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from loupe.indexer.encoders import register_backend
from loupe.indexer.encoders.base import Encoder, l2_normalise
from loupe.indexer.encoders.spec import AudioPreprocess, EncoderSpec, ImagePreprocess

TOY_WORDS = {"red": (1, 0, 0, 0), "green": (0, 1, 0, 0), "blue": (0, 0, 1, 0),
             "white": (1, 1, 1, 0), "black": (0, 0, 0, 1)}


class ToyEncoder(Encoder):
    """A deterministic encoder whose answers can be worked out by hand.

    Image vector: (mean R, mean G, mean B, darkness) of the 8x8 model input, normalised
    (so a pure red picture is (1, 0, 0, 0)). Text vector: the colour words above summed;
    any other word gets a fixed pseudo-random direction from its hash.
    """

    def __init__(self, size: int = 8):
        self.spec = EncoderSpec(backend="toy", model="toy-rgb", weights="none",
                                weights_id="toy-v1", dim=4,
                                preprocess=ImagePreprocess(size=(size, size)))
        self.pixel_calls = 0
        self.images_embedded = 0

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.pixel_calls += 1
        self.images_embedded += len(pixels)
        n = len(pixels)
        rgb = pixels.reshape(n, -1, 3).astype(np.float64).mean(axis=1) / 255.0 if n else (
            np.zeros((0, 3)))
        dark = 1.0 - rgb.max(axis=1, keepdims=True)
        return l2_normalise(np.concatenate([rgb, dark], axis=1))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for t in texts:
            v = np.zeros(4)
            for w in t.lower().split():
                if w in TOY_WORDS:
                    v += TOY_WORDS[w]
                else:
                    h = hashlib.sha256(w.encode()).digest()
                    v += np.frombuffer(h[:32], dtype=np.uint8)[:4] / 255.0 - 0.5
            out.append(v)
        return l2_normalise(np.array(out).reshape(len(out), 4))


register_backend("toy", lambda spec, device: ToyEncoder(spec.preprocess.size[0]))


class PixelEncoder(ToyEncoder):
    """An encoder whose vector *is* the model input it saw, so tests can read it back.

    Vector: (pixels / 255 flattened, 1), normalised; :func:`seen_pixels` inverts it.
    """

    def __init__(self, side: int = 8) -> None:
        super().__init__(side)
        self.side = side
        self.spec = EncoderSpec(backend="toy-pixels", model="pixels", weights="none",
                                weights_id="pixels-v1", dim=side * side * 3 + 1,
                                preprocess=ImagePreprocess(size=(side, side)))

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.pixel_calls += 1
        self.images_embedded += len(pixels)
        flat = pixels.reshape(len(pixels), self.side * self.side * 3).astype(np.float64) / 255.0
        return l2_normalise(np.concatenate([flat, np.ones((len(pixels), 1))], axis=1))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """A text embeds as a solid picture of the toy words' colour ("red": a red one)."""
        colours = ToyEncoder.embed_texts(self, texts)[:, :3].clip(0, 1) * 255
        solid = np.broadcast_to(colours[:, None, None, :].astype(np.uint8),
                                (len(texts), self.side, self.side, 3))
        return self.embed_pixels(np.ascontiguousarray(solid))


def seen_pixels(vec, side: int = 8) -> np.ndarray:
    """The (side, side, 3) 0..255 picture a PixelEncoder vector was made from."""
    v = np.asarray(vec, dtype=np.float64)
    return (v[:-1] / v[-1] * 255.0).reshape(side, side, 3)


register_backend("toy-pixels", lambda spec, device: PixelEncoder(spec.preprocess.size[0]))


# Mel bands of the sound toy: low (< ~600 Hz), mid, high (> ~3 kHz) of ImageBind's 128.
SOUND_BANDS = ((0, 30), (30, 80), (80, 128))


class SoundToyEncoder(ToyEncoder):
    """The toy encoder with an audio tower built to match its images: a sound whose
    energy lies in the low / mid / high mel band embeds like a red / green / blue
    picture, so sound-to-image rankings are known in advance."""

    def __init__(self, size: int = 8):
        super().__init__(size)
        self.spec = EncoderSpec(backend="toy-sound", model="toy-rgb-sound", weights="none",
                                weights_id="toy-sound-v1", dim=4,
                                preprocess=ImagePreprocess(size=(size, size)),
                                audio=AudioPreprocess())
        self.sounds_embedded = 0

    def embed_audio(self, features: np.ndarray) -> np.ndarray:
        self.sounds_embedded += len(features)
        a = self.spec.audio
        logmel = np.asarray(features, np.float64)[:, 0] * a.std + a.mean  # (N, mel, frames)
        power = np.exp(logmel).mean(axis=2)  # (N, mel)
        bands = np.stack([power[:, lo:hi].sum(axis=1) for lo, hi in SOUND_BANDS], axis=1)
        share = bands / bands.sum(axis=1, keepdims=True)
        return l2_normalise(np.concatenate([share ** 4, np.zeros((len(share), 1))], axis=1))


register_backend("toy-sound", lambda spec, device: SoundToyEncoder(spec.preprocess.size[0]))
