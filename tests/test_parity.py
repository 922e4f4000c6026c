"""Parity with open_clip itself: Loupe's decode + preprocess + embed of a full-size
ViT-B-32 (seeded random weights, loaded from a local file the way users load real
weights offline) equals open_clip's own ``preprocess`` + ``encode_image`` + normalise."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from loupe.indexer.encoders import load_encoder
from loupe.indexer.media.image import decode_image

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
          "motorcycle_left.png", "camera.png", "coins.png"]
TEXTS = ["a photo of a cat", "an astronaut in a white suit", "a cup of coffee", "", "fog"]


@pytest.fixture(scope="module")
def vit_b32(tmp_path_factory):
    """(Loupe encoder, open_clip reference model, reference preprocess, tokenizer)."""
    import open_clip

    torch.manual_seed(1234)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    del model
    ref, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(path))
    ref.eval()
    enc = load_encoder("ViT-B-32", str(path), device="cpu")
    return enc, ref, preprocess, open_clip.get_tokenizer("ViT-B-32")


def _ref_image(ref, preprocess, img: Image.Image) -> np.ndarray:
    with torch.no_grad():
        f = ref.encode_image(preprocess(img).unsqueeze(0))
    return torch.nn.functional.normalize(f, dim=-1)[0].numpy()


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_spec_records_what_open_clip_uses(vit_b32):
    enc, ref, preprocess, _ = vit_b32
    spec = enc.spec
    assert spec.model == "ViT-B-32" and spec.dim == 512
    assert spec.weights_id.startswith("sha256:")
    assert spec.preprocess.size == (224, 224)
    assert spec.preprocess.interpolation == "bicubic"
    assert spec.preprocess.resize_mode == "shortest"
    norm = [t for t in preprocess.transforms if type(t).__name__ == "Normalize"][0]
    assert spec.preprocess.mean == pytest.approx(tuple(norm.mean))
    assert spec.preprocess.std == pytest.approx(tuple(norm.std))


@pytest.mark.parametrize("name", PHOTOS)
def test_model_input_equals_open_clip_preprocess(vit_b32, corpus, name):
    enc, _, preprocess, _ = vit_b32
    data = (corpus / "photos" / name).read_bytes()
    pixels = decode_image(data, enc.preprocess).pixels
    ours = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
            - torch.tensor(enc.preprocess.mean).view(3, 1, 1)) / torch.tensor(
        enc.preprocess.std).view(3, 1, 1)
    theirs = preprocess(Image.open(io.BytesIO(data)))
    assert ours.shape == theirs.shape
    # identical resize/crop arithmetic: the same tensor, pixel for pixel
    assert float((ours - theirs).abs().max()) <= 1e-5


def test_image_vectors_equal_open_clip(vit_b32, corpus):
    enc, ref, preprocess, _ = vit_b32
    ours, theirs = [], []
    for name in PHOTOS:
        data = (corpus / "photos" / name).read_bytes()
        ours.append(enc.embed_pixels(decode_image(data, enc.preprocess).pixels[None])[0])
        theirs.append(_ref_image(ref, preprocess, Image.open(io.BytesIO(data))))
    ours, theirs = np.array(ours), np.array(theirs)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = np.sum(ours * theirs, axis=1)
    assert cos.min() >= 0.999, dict(zip(PHOTOS, cos.round(6), strict=True))
    # the check can fail: different photos are far less alike than a photo and its twin
    cross = theirs @ theirs.T
    off = cross[~np.eye(len(PHOTOS), dtype=bool)]
    assert off.max() < cos.min() - 0.001, f"random model too flat: max cross cos {off.max()}"


def test_text_vectors_equal_open_clip(vit_b32):
    enc, ref, _, tokenizer = vit_b32
    ours = enc.embed_texts(TEXTS)
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(ref.encode_text(tokenizer(TEXTS)), dim=-1).numpy()
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 512)
    assert np.allclose(ours, theirs, atol=1e-5)


def _big_jpeg(corpus, name: str, scale: int) -> bytes:
    img = Image.open(corpus / "photos" / name).convert("RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png"])
def test_draft_decode_of_large_jpeg(vit_b32, corpus, name):
    """Default draft (>= 2x model input) stays at cos >= 0.999 of a full decode."""
    enc, ref, preprocess, _ = vit_b32
    data = _big_jpeg(corpus, name, 6)  # ~3000 px: libjpeg may decode at 1/4 or 1/2 scale
    reference = _ref_image(ref, preprocess, Image.open(io.BytesIO(data)))
    full = enc.embed_pixels(decode_image(data, enc.preprocess, draft_factor=None).pixels[None])[0]
    default = enc.embed_pixels(decode_image(data, enc.preprocess).pixels[None])[0]
    fast = enc.embed_pixels(
        decode_image(data, enc.preprocess, draft_factor=1.0).pixels[None])[0]
    assert _cos(full, reference) >= 0.9999
    assert _cos(default, reference) >= 0.999
    assert _cos(fast, reference) >= 0.99  # the fast option, figure in the closing note
    print(f"{name}: draft2 cos {_cos(default, reference):.5f}, draft1 cos "
          f"{_cos(fast, reference):.5f}")
