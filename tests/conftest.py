"""Shared fixtures: a deterministic toy encoder, tiny real models, temp databases.

Tests never touch the user's real data directory (LOUPE_DB points into tmp) and never
reach a model hub (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from indexer.encoders import register_backend  # noqa: E402
from indexer.encoders.base import Encoder, EncoderSpec, ImagePreprocess, l2_normalise  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"

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
        rgb = pixels.reshape(len(pixels), -1, 3).astype(np.float64).mean(axis=1) / 255.0
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
        return l2_normalise(np.array(out))


register_backend("toy", lambda spec, device: ToyEncoder(spec.preprocess.size[0]))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "default-db"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def toy() -> ToyEncoder:
    return ToyEncoder()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    from tiny_models import make_tiny_clip_dir

    return make_tiny_clip_dir(str(tmp_path_factory.mktemp("models") / "tiny-clip"))


def solid(path: Path, color: tuple[int, int, int], size=(40, 30), fmt: str | None = None) -> Path:
    """Write a solid-colour image."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path
