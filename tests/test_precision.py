"""Model precision: fp16 autocast on CUDA, bf16 weights on CPUs with native bf16, fp32
otherwise or when asked; bf16 vectors stay within 1e-3 cosine of fp32 on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.indexer.encoders import torch_encoder as base
from loupe.indexer.encoders.torch_encoder import resolve_precision
from loupe.indexer.errors import LoupeError


def test_the_precision_follows_device_hardware_and_request(monkeypatch):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cuda", True) == "fp16-autocast"
    assert resolve_precision("fp32", "cuda:1", True) == "fp32"
    assert resolve_precision("auto", "cpu", True) == "bf16"
    assert resolve_precision("auto", "cpu", False) == "fp32"  # a backend kept in fp32
    assert resolve_precision("fp32", "cpu", True) == "fp32"
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu", True) == "fp32"  # emulated bf16 is slower
    assert resolve_precision("bf16", "cpu", True) == "bf16"  # asked for: granted
    assert resolve_precision("bf16", "cpu", False) == "fp32"  # not for a backend without it
    monkeypatch.setenv("LOUPE_PRECISION", "bf16")
    assert resolve_precision(None, "cpu", True) == "bf16"
    with pytest.raises(LoupeError, match="precision 'fp8'"):
        resolve_precision("fp8", "cpu", True)


def test_bf16_vectors_match_fp32_on_real_photos(tiny_clip_dir, corpus):
    import torch

    from loupe.indexer.encoders import load_encoder
    from loupe.indexer.media.image import decode_image_file

    fp32 = load_encoder(tiny_clip_dir, None, "cpu")
    from loupe.indexer.encoders.openclip import load_open_clip

    bf16 = load_open_clip(tiny_clip_dir, None, "cpu", precision="bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    assert next(bf16.model.visual.parameters()).dtype == torch.bfloat16
    photos = sorted((corpus / "photos").glob("*.png"))[:8]
    pixels = np.stack([decode_image_file(str(p), fp32.preprocess).pixels for p in photos])
    a, b = fp32.embed_pixels(pixels), bf16.embed_pixels(pixels)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.999
    # and not the same computation: bf16 really ran
    assert np.abs(a - b).max() > 1e-6
    texts = ["a cat", "a rocket on the launch pad", "coffee"]
    assert np.sum(fp32.embed_texts(texts) * bf16.embed_texts(texts), axis=1).min() > 0.999
    # the zero-shot scale is read in full precision
    assert bf16.logit_scale == fp32.logit_scale
    # each photo is still its own nearest neighbour across precisions
    assert (np.argmax(b @ a.T, axis=1) == np.arange(len(photos))).all()
