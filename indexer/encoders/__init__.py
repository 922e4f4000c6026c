"""Encoders: the one seam between pixels/texts and vectors.

``load_encoder`` builds a backend from what the CLI was given, or from the spec an
index recorded (so queries always use the encoder that built the vectors).
"""

from __future__ import annotations

from collections.abc import Callable

from loupe.indexer.encoders.base import (
    AudioPreprocess,
    Encoder,
    EncoderSpec,
    ImagePreprocess,
    l2_normalise,
)
from loupe.indexer.errors import LoupeError

# backend name -> factory(spec, device) rebuilding an encoder from a recorded spec.
_FROM_SPEC: dict[str, Callable[[EncoderSpec, str], Encoder]] = {}


def register_backend(name: str, factory: Callable[[EncoderSpec, str], Encoder]) -> None:
    """Let ``encoder_from_spec`` rebuild encoders of backend ``name`` (tests add toys)."""
    _FROM_SPEC[name] = factory


def _open_clip_from_spec(spec: EncoderSpec, device: str) -> Encoder:
    from loupe.indexer.encoders.openclip import load_open_clip

    model = spec.model
    pretrained = None if model.startswith(("local-dir:", "hf-hub:")) else spec.weights
    return load_open_clip(model, pretrained, device)


register_backend("open_clip", _open_clip_from_spec)


def _imagebind_from_spec(spec: EncoderSpec, device: str) -> Encoder:
    from loupe.indexer.encoders.imagebind import imagebind_from_spec

    return imagebind_from_spec(spec, device)


register_backend("imagebind", _imagebind_from_spec)


def encoder_from_spec(spec: EncoderSpec, device: str = "auto") -> Encoder:
    """Rebuild the encoder an index recorded, and check it is still the same one."""
    factory = _FROM_SPEC.get(spec.backend)
    if factory is None:
        raise LoupeError(f"this index was built with an unknown encoder backend {spec.backend!r}")
    enc = factory(spec, device)
    why = spec.mismatch(enc.spec)
    if why:
        raise LoupeError(f"the encoder that built this index is no longer the same: {why}")
    return enc


class LazyEncoder(Encoder):
    """The encoder an index recorded, loaded only when something needs embedding.

    An indexing run over an unchanged archive then never imports torch or loads a
    model; the loaded model is still checked against the recorded spec.
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto"):
        self.spec = spec
        self._device = device
        self._encoder: Encoder | None = None

    @property
    def loaded(self) -> Encoder:
        """The real encoder (loaded on first access)."""
        if self._encoder is None:
            self._encoder = encoder_from_spec(self.spec, self._device)
        return self._encoder

    def embed_pixels(self, pixels):
        return self.loaded.embed_pixels(pixels)

    def embed_texts(self, texts):
        return self.loaded.embed_texts(texts)

    def embed_audio(self, features):
        return self.loaded.embed_audio(features)

    @property
    def logit_scale(self) -> float:
        return self.loaded.logit_scale


def load_encoder(model: str, pretrained: str | None, device: str = "auto") -> Encoder:
    """An encoder from CLI-style ``--model`` / ``--pretrained``.

    ImageBind when ``model`` starts with "imagebind" (``--pretrained`` is then its
    checkpoint file, optional) or is a folder holding ``imagebind_config.json``;
    open_clip otherwise.
    """
    from loupe.indexer.encoders.imagebind import is_imagebind_model

    if is_imagebind_model(model):
        from loupe.indexer.encoders.imagebind import load_imagebind

        return load_imagebind(model, pretrained, device)
    from loupe.indexer.encoders.openclip import load_open_clip

    return load_open_clip(model, pretrained, device)


__all__ = [
    "AudioPreprocess",
    "Encoder",
    "LazyEncoder",
    "EncoderSpec",
    "ImagePreprocess",
    "encoder_from_spec",
    "l2_normalise",
    "load_encoder",
    "register_backend",
]
