"""The Encoder contract, run against every backend: the test toys, a tiny open_clip
model and a tiny ImageBind, both real architectures with seeded random weights."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from helpers.toys import PixelEncoder, SoundToyEncoder, ToyEncoder

from loupe.indexer import LoupeError
from loupe.indexer.encoders import (
    EncoderSpec,
    LazyEncoder,
    backends,
    encoder_from_spec,
    load_encoder,
    same_source,
)

BACKENDS = ["toy", "toy-pixels", "toy-sound", "open_clip", "imagebind"]


@pytest.fixture(scope="module")
def made(request, tmp_path_factory):
    """{name: (encoder, CLI --model/--pretrained that built it, or None)}, made lazily."""
    cache: dict = {}

    def make(name: str):
        if name not in cache:
            if name == "toy":
                cache[name] = (ToyEncoder(), None)
            elif name == "toy-pixels":
                cache[name] = (PixelEncoder(), None)
            elif name == "toy-sound":
                cache[name] = (SoundToyEncoder(), None)
            elif name == "open_clip":
                from helpers.tiny_models import make_tiny_clip_dir

                d = make_tiny_clip_dir(str(tmp_path_factory.mktemp("m") / "tiny-clip"))
                cache[name] = (load_encoder(d, None, "cpu"), (d, None))
            else:
                from helpers.tiny_models import make_tiny_imagebind_dir

                d = make_tiny_imagebind_dir(str(tmp_path_factory.mktemp("m") / "tiny-ib"))
                cache[name] = (load_encoder(d, None, "cpu"), (d, None))
        return cache[name]

    return make


@pytest.fixture(params=BACKENDS)
def backend(request, made):
    return made(request.param)


def _pixels(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    if n:
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_the_registry_knows_every_backend_that_indexes_know():
    names = set(backends())
    assert {"open_clip", "imagebind", "toy", "toy-pixels", "toy-sound"} <= names
    assert backends()["open_clip"].fallback and backends()["imagebind"].claims("imagebind_huge")


@pytest.mark.parametrize("n", [0, 1, 3])
def test_pixels_and_texts_become_unit_vectors(backend, n):
    enc, _ = backend
    _unit_rows(enc.embed_pixels(_pixels(n, enc.preprocess.size)), n, enc.dim)
    words = ["red", "a dog on a beach", "blue"][:n]
    _unit_rows(enc.embed_texts(words), n, enc.dim)


def test_a_batch_equals_one_at_a_time(backend):
    enc, _ = backend
    px = _pixels(3, enc.preprocess.size, seed=1)
    whole = enc.embed_pixels(px)
    alone = np.concatenate([enc.embed_pixels(px[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(whole, alone, atol=1e-5)
    texts = ["red", "green and more words", "blue"]
    np.testing.assert_allclose(enc.embed_texts(texts),
                               np.concatenate([enc.embed_texts([t]) for t in texts]),
                               atol=1e-5)


def test_the_spec_round_trips_and_names_a_safe_column(backend):
    enc, _ = backend
    spec = enc.spec
    assert EncoderSpec.from_dict(spec.to_dict()) == spec
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", spec.column), spec.column
    assert EncoderSpec.from_dict(spec.to_dict()).column == spec.column


def test_the_recorded_spec_rebuilds_the_same_encoder(backend):
    enc, _ = backend
    again = encoder_from_spec(enc.spec, "cpu")
    assert enc.spec.mismatch(again.spec) is None
    px = _pixels(2, enc.preprocess.size, seed=2)
    np.testing.assert_allclose(again.embed_pixels(px), enc.embed_pixels(px), atol=1e-5)


def test_a_lazy_encoder_loads_on_first_use_and_gives_the_same_vectors(backend):
    enc, _ = backend
    lazy = LazyEncoder(enc.spec, "cpu")
    assert lazy._encoder is None and lazy.dim == enc.dim  # the spec alone answers these
    px = _pixels(2, enc.preprocess.size, seed=3)
    np.testing.assert_allclose(lazy.embed_pixels(px), enc.embed_pixels(px), atol=1e-5)
    assert lazy._encoder is not None


def test_modalities_say_what_it_embeds(backend):
    enc, _ = backend
    spec = enc.spec
    assert {"image", "text"} <= spec.modalities
    if spec.audio is None:
        assert "audio" not in spec.modalities
        with pytest.raises(LoupeError, match="cannot embed sound"):
            enc.embed_audio(np.zeros((1, 1, 128, 204), np.float32))
        return
    assert "audio" in spec.modalities
    a = spec.audio
    feats = np.random.default_rng(4).normal(size=(2, 1, a.num_mel_bins, a.target_length))
    _unit_rows(enc.embed_audio(feats.astype(np.float32)), 2, enc.dim)


def test_the_logit_scale_is_finite_and_positive(backend):
    enc, _ = backend
    assert math.isfinite(enc.logit_scale) and enc.logit_scale > 0


def test_the_cli_pair_that_built_a_spec_names_it(backend):
    enc, cli = backend
    if cli is None:
        pytest.skip("built in code, not from --model / --pretrained")
    assert same_source(enc.spec, *cli)
    assert not same_source(enc.spec, cli[0] + "-elsewhere", cli[1])
