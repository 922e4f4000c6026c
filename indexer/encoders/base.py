"""The Encoder seam: images, texts and sounds in, L2-normalised float32 vectors out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image

from loupe.indexer.encoders.spec import AudioPreprocess, EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.indexer.media.audio_features import audio_feature_batches
from loupe.indexer.media.image import to_model_input

SOUND_BATCH = 32  # sound windows per model call when a sound file is embedded


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder(ABC):
    """Turns images and texts into L2-normalised float32 vectors of one space.

    Backends implement :meth:`embed_pixels` and :meth:`embed_texts`; decoding and
    resizing to :attr:`spec.preprocess` happen before, in the decode workers, so
    backends receive uint8 arrays already at model input size.
    """

    spec: EncoderSpec

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.spec.dim

    @property
    def preprocess(self) -> ImagePreprocess:
        """The image preprocessing this encoder expects."""
        return self.spec.preprocess

    @abstractmethod
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a uint8 batch of shape (N, H, W, 3) at ``preprocess.size``.

        Returns (N, dim) float32, each row of unit length.
        """

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts. Returns (N, dim) float32, each row of unit length."""

    @property
    def logit_scale(self) -> float:
        """The factor the model multiplies image-text cosine similarities by before a
        softmax over texts (CLIP learns it; 100 is its trained, clamped value)."""
        return 100.0

    @property
    def audio(self) -> AudioPreprocess | None:
        """The audio preprocessing this encoder expects, or None if it has no audio tower."""
        return self.spec.audio

    def embed_audio(self, features: np.ndarray) -> np.ndarray:
        """Embed a float32 batch of audio features of shape (N, 1, mel bins, frames).

        Features come from :func:`loupe.indexer.media.audio.kaldi_fbank` with :attr:`audio`'s
        settings. Returns (N, dim) float32, each row of unit length. Backends without an
        audio tower raise :class:`~loupe.indexer.errors.LoupeError`.
        """
        raise LoupeError(f"{self.spec.describe()} cannot embed sound; "
                         "index with an audio model (e.g. --model imagebind_huge)")

    def embed_sounds(self, paths: Sequence[str], max_seconds: float | None = None,
                     batch: int = SOUND_BATCH) -> np.ndarray:
        """Embed sound files (or videos' soundtracks): one vector per file.

        The windows that start in the first ``max_seconds`` of a file (all of them when
        None) are decoded and embedded, ``batch`` at a time; the vector is the
        renormalised mean of the windows that are not silent (of all windows if every
        one is silent).
        """
        if self.audio is None:
            return self.embed_audio(np.zeros((0,), np.float32))  # raises the clear error
        out = []
        for path in paths:
            loud, every = np.zeros(self.dim, np.float64), np.zeros(self.dim, np.float64)
            any_loud = False
            for feats, silent in audio_feature_batches(path, self.audio, batch, max_seconds):
                vecs = np.asarray(self.embed_audio(feats), np.float64)
                every += vecs.sum(axis=0)
                loud += vecs[~silent].sum(axis=0)
                any_loud = any_loud or bool((~silent).any())
            out.append(l2_normalise((loud if any_loud else every)[None, :])[0])
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images (any mode/size) with this encoder's preprocessing."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([to_model_input(im, self.preprocess) for im in images])
        return self.embed_pixels(batch)
