"""The encoder registry: the whole seam between a model name and an Encoder.

A backend is one ``Backend`` entry saying how it claims a ``--model`` name, loads it,
rebuilds an encoder from the spec an index recorded, tells whether a ``--model`` /
``--pretrained`` pair names a recorded spec, and names its weights' licence. The
built-in backends are the modules of this package that define ``BACKEND``; they are
found by walking the package, so a third backend is one new module and nothing else.
Tests register their toy encoders through the same :func:`register_backend`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from loupe.indexer.encoders.base import Encoder
from loupe.indexer.encoders.spec import EncoderSpec
from loupe.indexer.errors import LoupeError


def same_weights(spec: EncoderSpec, model: str, pretrained: str | None,
                 name_alone: bool = False) -> bool:
    """Whether --model/--pretrained name the weights ``spec`` recorded (the same place).

    ``name_alone``: the backend finds its weights from the model name when no
    --pretrained is given (ImageBind), so the name alone matches. The loaded model is
    still checked against the recorded spec (weight hash included) before it embeds.
    """
    if model.startswith("local-dir:") or os.path.isdir(model):
        return spec.model == "local-dir:" + os.path.abspath(model.removeprefix("local-dir:"))
    if model.startswith("hf-hub:") or (name_alone and not pretrained):
        return spec.model == model
    if pretrained and os.path.isfile(pretrained):
        pretrained = os.path.abspath(pretrained)
    return spec.model == model and spec.weights == pretrained


@dataclass(frozen=True)
class Backend:
    """One encoder backend (see the module docstring)."""

    name: str  # EncoderSpec.backend of the encoders it makes
    from_spec: Callable[[EncoderSpec, str, str | None], Encoder]  # (spec, device, precision)
    # (model, pretrained, device, precision) -> Encoder, for names it claims; None: no CLI name
    load: Callable[[str, str | None, str, str | None], Encoder] | None = None
    claims: Callable[[str], bool] = lambda model: False  # does --model name this backend?
    fallback: bool = False  # takes every --model no other backend claims (open_clip)
    same_source: Callable[[EncoderSpec, str, str | None], bool] = same_weights
    licence: Callable[[EncoderSpec], str | None] = lambda spec: None


_BACKENDS: dict[str, Backend] = {}
_discovered = False


def register_backend(backend: Backend | str,
                     factory: Callable[[EncoderSpec, str], Encoder] | None = None) -> None:
    """Add a backend. ``register_backend(name, factory)`` is the short form for encoders
    that are only ever rebuilt from a spec (the test toys): ``factory(spec, device)``."""
    if isinstance(backend, str):
        make = factory
        backend = Backend(backend, from_spec=lambda spec, device, precision: make(spec, device))
    _BACKENDS[backend.name] = backend


def backends() -> dict[str, Backend]:
    """Every registered backend by name (the built-ins found on first use)."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module("loupe.indexer.encoders")
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"loupe.indexer.encoders.{info.name}")
            found = getattr(module, "BACKEND", None)
            if isinstance(found, Backend) and found.name not in _BACKENDS:
                _BACKENDS[found.name] = found
    return _BACKENDS


def backend_for(spec: EncoderSpec) -> Backend:
    """The backend that made ``spec``'s encoder."""
    found = backends().get(spec.backend)
    if found is None:
        raise LoupeError(f"this index was built with an unknown encoder backend {spec.backend!r}")
    return found


def load_encoder(model: str, pretrained: str | None, device: str = "auto",
                 precision: str | None = None) -> Encoder:
    """An encoder from CLI-style ``--model`` / ``--pretrained``: the backend that claims
    the name (ImageBind for "imagebind..." names and ImageBind folders), else the
    fallback (open_clip)."""
    loaders = [b for b in backends().values() if b.load is not None]
    chosen = next((b for b in loaders if not b.fallback and b.claims(model)), None)
    chosen = chosen or next((b for b in loaders if b.fallback), None)
    if chosen is None:
        raise LoupeError(f"no encoder backend takes --model {model!r}")
    return chosen.load(model, pretrained, device, precision)


def encoder_from_spec(spec: EncoderSpec, device: str = "auto",
                      precision: str | None = None) -> Encoder:
    """Rebuild the encoder an index recorded, and check it is still the same one."""
    enc = backend_for(spec).from_spec(spec, device, precision)
    why = spec.mismatch(enc.spec)
    if why:
        raise LoupeError(f"the encoder that built this index is no longer the same: {why}")
    return enc


def same_source(spec: EncoderSpec, model: str, pretrained: str | None) -> bool:
    """Whether --model/--pretrained name the weights of a recorded spec."""
    found = backends().get(spec.backend)
    return found is not None and found.load is not None and found.same_source(
        spec, model, pretrained)


def licence(spec: EncoderSpec) -> str | None:
    """The licence of a spec's weights where its backend knows it (``loupe status``)."""
    found = backends().get(spec.backend)
    return found.licence(spec) if found is not None else None


class LazyEncoder(Encoder):
    """The encoder an index recorded, loaded only when something needs embedding.

    An indexing run over an unchanged archive then never imports torch or loads a
    model; the loaded model is still checked against the recorded spec.
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto", precision: str | None = None):
        self.spec = spec
        self._device = device
        self._precision = precision
        self._encoder: Encoder | None = None

    @property
    def loaded(self) -> Encoder:
        """The real encoder (loaded on first access)."""
        if self._encoder is None:
            self._encoder = encoder_from_spec(self.spec, self._device, self._precision)
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


class EncoderSet:
    """The encoders of an index's columns, each loaded once when first asked for.

    ``given`` encoders (the ones a run or a command already loaded) are used for their
    columns; the others are rebuilt lazily from the recorded specs.
    """

    def __init__(self, specs: dict[str, EncoderSpec], device: str = "auto",
                 given: list[Encoder] | tuple[Encoder, ...] = ()):
        self.specs = specs
        self.device = device
        self._by_column: dict[str, Encoder] = {e.spec.column: e for e in given}

    def get(self, column: str) -> Encoder:
        """The encoder of ``column``."""
        if column not in self._by_column:
            if column not in self.specs:
                raise LoupeError(f"this index has no vector column {column!r}")
            self._by_column[column] = LazyEncoder(self.specs[column], self.device)
        return self._by_column[column]

    __call__ = get
