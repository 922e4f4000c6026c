"""Shared fixtures: a deterministic toy encoder, tiny real models, temp databases.

Tests never touch the user's real data directory (LOUPE_DB points into tmp) and never
reach a model hub (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports huggingface_hub: tests never reach a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Models run in full precision in tests unless a test asks otherwise: results are compared
# with the reference libraries' fp32 (tests/test_precision.py covers bf16). Set for the
# whole session, so module-scoped fixtures and subprocesses get it too.
os.environ.setdefault("LOUPE_PRECISION", "fp32")

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from helpers.media import CORPUS  # noqa: E402
from helpers.toys import ToyEncoder  # noqa: E402  (registers the toy backends)


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
    from helpers.tiny_models import make_tiny_clip_dir

    return make_tiny_clip_dir(str(tmp_path_factory.mktemp("models") / "tiny-clip"))
