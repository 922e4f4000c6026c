"""ImageBind backend: loading (tiny architectures through the real loader), the missing
weights error, and parity with ImageBind's own preprocessing + model.

Parity: Loupe's image decode, kaldi fbank windows and tokenizer feed the model; the
reference is ``imagebind.data.load_and_transform_*_data`` feeding the same model object.
Here only, the reference gets what it needs to import and run today: a ``pkg_resources``
stand-in when setuptools has none, ``torchvision.transforms.functional_tensor`` (which
pytorchvideo 0.1.5 imports) aliased to its successor, and ``torchaudio.load`` (which needs
torchcodec in torchaudio 2.11) replaced for WAV files by a stdlib ``wave`` reader.

The tiny architecture runs by default; ``imagebind_huge`` (seeded random weights, saved
and loaded the way users load the real checkpoint) under ``-m slow``. Set
LOUPE_TEST_DEVICE=cuda to run the parity on a GPU (Loupe's images then go through fp16
autocast; the reference runs fp32).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import types
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loupe.indexer.encoders import EncoderSpec, LazyEncoder, encoder_from_spec, load_encoder
from loupe.indexer.encoders.imagebind import (
    CHECKPOINT_ENV,
    IMAGEBIND_CHECKPOINT_URL,
    IMAGEBIND_MODELS,
    IMAGEBIND_WEIGHTS_LICENSE,
    find_checkpoint,
    import_imagebind_model,
    is_imagebind_model,
    load_imagebind,
    weights_license,
)
from loupe.indexer.errors import LoupeError

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "camera.png",
          "coins.png", "color.png", "ihc.png"]
SOUNDS = ["alarm-clock-elapsed.oga", "phone-incoming-call.oga", "service-login.oga"]
TEXTS = ["a photo of a cat", "an alarm clock ringing", "a cup of coffee", "", "fog",
         "a very long caption " * 30]
MIN_COS = 0.999
DEVICE = os.environ.get("LOUPE_TEST_DEVICE", "cpu")
# ImageBind's ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3) starts clip
# k at k * (duration - 2) / 3 (pytorchvideo 0.1.5 divides by clips_per_video, not by
# clips_per_video - 1): an 8 s file gives clips at 0, 2 and 4 s, Loupe's first three
# consecutive 2 s windows. Loupe's whole-file vector is checked on the first 6 s of it.
REF_SECONDS = 8.0
LOUPE_SECONDS = 6.0


@pytest.fixture(scope="module")
def tiny_ib_dir(tmp_path_factory) -> str:
    from helpers.tiny_models import make_tiny_imagebind_dir

    return make_tiny_imagebind_dir(str(tmp_path_factory.mktemp("models") / "tiny-imagebind"))


@pytest.fixture(scope="module")
def tiny_ib(tiny_ib_dir):
    return load_imagebind(tiny_ib_dir, device="cpu")


# ---------------------------------------------------------------------------- loading


def test_tiny_model_through_the_loader(tiny_ib, tiny_ib_dir):
    enc = tiny_ib
    spec = enc.spec
    assert spec.backend == "imagebind"
    assert spec.model == f"local-dir:{os.path.abspath(tiny_ib_dir)}"
    assert spec.weights == os.path.abspath(tiny_ib_dir)
    assert spec.weights_id.startswith("sha256:") and len(spec.weights_id) == 7 + 64
    assert spec.dim == 32
    assert spec.modalities == {"image", "text", "audio"}
    # ImageBind's vision transform and audio recipe
    assert spec.preprocess.size == (224, 224)
    assert spec.preprocess.interpolation == "bicubic"
    assert spec.preprocess.resize_mode == "shortest"
    assert spec.audio.num_mel_bins == 128 and spec.audio.target_length == 204
    assert spec.audio.sample_rate == 16000 and spec.audio.clip_seconds == 2.0
    # eval mode (drop path off), unused towers dropped
    assert not enc.model.training
    assert sorted(enc.model.modality_trunks) == ["audio", "text", "vision"]


def test_outputs_unit_norm_shapes_deterministic(tiny_ib):
    enc = tiny_ib
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    feats = rng.standard_normal((2, 1, 128, 204)).astype(np.float32)
    for name, fn, arg, n in (("pixels", enc.embed_pixels, pixels, 3),
                             ("texts", enc.embed_texts, ["a dog", "a cat", ""], 3),
                             ("texts1", enc.embed_texts, ["one"], 1),
                             ("audio", enc.embed_audio, feats, 2)):
        a, b = fn(arg), fn(arg)
        assert a.dtype == np.float32 and a.shape == (n, 32), name
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5), name
        assert np.array_equal(a, b), name
    # batching does not change a vector
    assert np.allclose(enc.embed_texts(["a dog", "a cat"])[1], enc.embed_texts(["a cat"])[0],
                       atol=1e-5)
    for fn in (enc.embed_pixels, enc.embed_texts, enc.embed_audio):
        assert fn(np.zeros((0,), np.float32) if fn is not enc.embed_texts else []).shape == (
            0, 32)
    with pytest.raises(ValueError, match="audio features must be"):
        enc.embed_audio(np.zeros((1, 1, 64, 204), np.float32))


def test_load_encoder_and_spec_round_trip(tiny_ib, tiny_ib_dir):
    texts = ["red", "a bell"]
    ref = tiny_ib.embed_texts(texts)
    assert is_imagebind_model(tiny_ib_dir) and is_imagebind_model("imagebind_huge")
    assert not is_imagebind_model("ViT-B-32")
    for enc in (load_encoder(tiny_ib_dir, None, "cpu"),
                load_encoder(f"local-dir:{tiny_ib_dir}", None, "cpu"),
                encoder_from_spec(tiny_ib.spec, "cpu"),
                encoder_from_spec(EncoderSpec.from_dict(tiny_ib.spec.to_dict()), "cpu"),
                LazyEncoder(tiny_ib.spec, "cpu")):
        assert enc.spec == tiny_ib.spec
        assert np.array_equal(enc.embed_texts(texts), ref)
    feats = np.random.default_rng(1).standard_normal((2, 1, 128, 204)).astype(np.float32)
    assert np.array_equal(LazyEncoder(tiny_ib.spec, "cpu").embed_audio(feats),
                          tiny_ib.embed_audio(feats))


def test_other_weights_are_told_apart(tiny_ib, tmp_path):
    from helpers.tiny_models import make_tiny_imagebind_dir

    other = make_tiny_imagebind_dir(str(tmp_path / "other"), seed=1)
    spec = load_imagebind(other, device="cpu").spec
    assert spec.weights_id != tiny_ib.spec.weights_id
    # the same folder rewritten with other weights no longer rebuilds the recorded encoder
    make_tiny_imagebind_dir(str(tmp_path / "other"), seed=2)
    with pytest.raises(LoupeError, match="no longer the same: weights_id differs"):
        encoder_from_spec(spec, "cpu")


def test_import_does_not_run_imagebind_data(tiny_ib_dir):
    """Loupe imports only imagebind.models.*: imagebind/__init__.py (and with it
    imagebind.data, pkg_resources, pytorchvideo) never runs."""
    code = ("import sys\n"
            "from loupe.indexer.encoders import load_encoder\n"
            f"enc = load_encoder({tiny_ib_dir!r}, None, 'cpu')\n"
            "enc.embed_texts(['x'])\n"
            "bad = [m for m in ('imagebind.data', 'pytorchvideo') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)

    def no_download(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    for load in (lambda: load_imagebind("imagebind_huge"),
                 lambda: load_encoder("imagebind_huge", None, "cpu")):
        with pytest.raises(LoupeError) as e:
            load()
        msg = str(e.value)
        assert "\n" not in msg
        assert IMAGEBIND_CHECKPOINT_URL in msg
        assert IMAGEBIND_WEIGHTS_LICENSE in msg
        assert "--pretrained FILE" in msg
        assert f"${CHECKPOINT_ENV} (unset)" in msg
        assert str(tmp_path / ".checkpoints" / "imagebind_huge.pth") in msg
        assert str(tmp_path / "cache" / "loupe" / "imagebind_huge.pth") in msg
    with pytest.raises(LoupeError, match="--pretrained .*: no such file"):
        load_imagebind("imagebind_huge", str(tmp_path / "nope.pth"))
    with pytest.raises(LoupeError, match="unknown ImageBind model 'imagebind_tiny'"):
        load_encoder("imagebind_tiny", None, "cpu")


def test_checkpoint_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    cached = tmp_path / "cache" / "loupe" / "imagebind_huge.pth"  # XDG_CACHE_HOME: conftest
    ours = tmp_path / ".checkpoints" / "imagebind_huge.pth"
    env = tmp_path / "elsewhere" / "ib.pth"
    for p in (cached, ours, env):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    monkeypatch.setenv(CHECKPOINT_ENV, str(env))
    assert find_checkpoint() == str(env)
    monkeypatch.delenv(CHECKPOINT_ENV)
    assert find_checkpoint() == str(ours)
    ours.unlink()
    assert find_checkpoint() == str(cached)
    # a file that is not an ImageBind checkpoint: one line, no traceback to read
    with pytest.raises(LoupeError, match="cannot load ImageBind model imagebind_huge"):
        load_imagebind("imagebind_huge", device="cpu")


def test_licence_is_known():
    spec = EncoderSpec(backend="imagebind", model="imagebind_huge", weights="/x.pth",
                       weights_id="sha256:0", dim=1024)
    assert weights_license(spec) == "CC BY-NC-SA 4.0 (non-commercial)"
    assert weights_license(EncoderSpec(backend="open_clip", model="ViT-B-32", weights="t",
                                       weights_id="t", dim=512)) is None


def test_open_clip_cannot_embed_sound(tiny_clip_dir, corpus):
    enc = load_encoder(tiny_clip_dir, None, "cpu")
    assert enc.audio is None and "audio" not in enc.spec.modalities
    with pytest.raises(LoupeError, match="cannot embed sound"):
        enc.embed_audio(np.zeros((1, 1, 128, 204), np.float32))
    with pytest.raises(LoupeError, match="cannot embed sound"):
        enc.embed_sounds([str(corpus / "sounds" / "bell.oga")])


# ---------------------------------------------------------------------------- reference


def _read_wav(path, *args, **kwargs):
    """torchaudio.load for 16-bit PCM WAV: ((channels, n) float32 = int16 / 32768, rate)."""
    with wave.open(os.fspath(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV here")
        n, ch, rate = w.getnframes(), w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(n), dtype="<i2").reshape(n, ch).T
    return torch.from_numpy(data.astype(np.float32) / 32768.0), rate


def _import_reference(mp: pytest.MonkeyPatch) -> types.ModuleType:
    """``imagebind.data`` with what it needs today; the patches go into ``mp``."""
    import_imagebind_model()  # the bare package: imagebind/__init__.py is not needed
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 82
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package, resource):
            module = importlib.import_module(package)
            return os.path.join(os.path.dirname(module.__file__), resource)

        shim.resource_filename = resource_filename
        mp.setitem(sys.modules, "pkg_resources", shim)
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:  # torchvision >= 0.17 renamed it
        try:
            ft = importlib.import_module("torchvision.transforms._functional_tensor")
        except ImportError:
            ft = importlib.import_module("torchvision.transforms.functional")
        mp.setitem(sys.modules, "torchvision.transforms.functional_tensor", ft)
    try:
        import pytorchvideo.data.clip_sampling  # noqa: F401
    except ImportError as e:
        pytest.skip(f"ImageBind's reference preprocessing needs pytorchvideo: {e}")
    import torchaudio

    mp.setattr(torchaudio, "load", _read_wav)
    import imagebind.data as data

    return data


@pytest.fixture(scope="module")
def reference():
    """``imagebind.data`` (ImageBind's own preprocessing), made importable and runnable."""
    mp = pytest.MonkeyPatch()
    try:
        with warnings.catch_warnings():  # pkg_resources and pytorchvideo warn on import
            warnings.simplefilter("ignore")
            data = _import_reference(mp)
        yield data
    finally:
        mp.undo()


def _write_wav(src: Path, dst: Path, seconds: float, rate: int = 16000) -> Path:
    """A corpus sound as 16-bit mono PCM WAV at ``rate``, exactly ``seconds`` long
    (repeated when shorter, cut when longer)."""
    import av

    chunks = []
    with av.open(str(src)) as c:
        res = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in c.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in res.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    pcm = np.concatenate(chunks)
    n = round(seconds * rate)
    pcm = np.tile(pcm, -(-n // len(pcm)))[:n]
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return dst


@pytest.fixture(scope="module", params=["tiny", pytest.param("huge", marks=pytest.mark.slow)])
def pair(request, tmp_path_factory, tiny_ib_dir):
    """(size, Loupe encoder); the reference runs the encoder's own model object."""
    if request.param == "tiny":
        enc = load_imagebind(tiny_ib_dir, device=DEVICE)
    else:
        t0 = time.perf_counter()
        torch.manual_seed(1234)
        model = import_imagebind_model().ImageBindModel(**IMAGEBIND_MODELS["imagebind_huge"])
        path = tmp_path_factory.mktemp("weights") / "imagebind_huge.pth"
        torch.save(model.state_dict(), path)
        del model
        t1 = time.perf_counter()
        enc = load_imagebind("imagebind_huge", str(path), device=DEVICE)
        print(f"\nimagebind_huge: built + saved in {t1 - t0:.1f} s, loaded in "
              f"{time.perf_counter() - t1:.1f} s")
        assert enc.spec.dim == 1024 and enc.spec.model == "imagebind_huge"
    return request.param, enc


def _ref_embed(enc, modality: str, x) -> np.ndarray:
    with torch.inference_mode():
        out = enc.model({modality: x.to(enc.device)})[modality]
    return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()


def _report(size: str, what: str, cos: np.ndarray, names) -> None:
    print(f"\n{size} {what} on {DEVICE}: min cos {cos.min():.7f} "
          f"({dict(zip(names, np.round(cos, 7).tolist(), strict=True))})")
    assert cos.min() >= MIN_COS, f"{what}: {dict(zip(names, cos.round(6), strict=True))}"


def test_vision_parity(pair, reference, corpus):
    from loupe.indexer.media.image import to_model_input

    size, enc = pair
    paths = [str(corpus / "photos" / name) for name in PHOTOS]
    pixels = np.stack([to_model_input(Image.open(p), enc.preprocess) for p in paths])
    ref_x = reference.load_and_transform_vision_data(paths, "cpu")
    # the model inputs agree pixel for pixel (same resize, crop and normalisation)
    ours_x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
              - torch.tensor(enc.preprocess.mean).view(1, 3, 1, 1)) / torch.tensor(
        enc.preprocess.std).view(1, 3, 1, 1)
    assert float((ours_x - ref_x).abs().max()) <= 1e-5
    ours = np.concatenate([enc.embed_pixels(pixels[i:i + 4]) for i in range(0, len(paths), 4)])
    theirs = np.concatenate([_ref_embed(enc, "vision", ref_x[i:i + 4])
                             for i in range(0, len(paths), 4)])
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = np.sum(ours * theirs, axis=1)
    _report(size, "vision", cos, PHOTOS)
    # the check can fail: different photos are less alike than a photo and its twin
    cross = theirs @ theirs.T
    off = cross[~np.eye(len(paths), dtype=bool)]
    print(f"{size} vision: max cos between different photos {off.max():.6f}")
    assert off.max() < cos.min() - 1e-4, f"random model too flat: max cross cos {off.max()}"


def test_text_parity(pair, reference):
    size, enc = pair
    ref_tokens = reference.load_and_transform_text(TEXTS, "cpu")
    assert torch.equal(enc.tokenizer(TEXTS), ref_tokens)
    ours = enc.embed_texts(TEXTS)
    theirs = _ref_embed(enc, "text", ref_tokens)
    cos = np.sum(ours * theirs, axis=1)
    _report(size, "text", cos, [t[:20] for t in TEXTS])
    off = (theirs @ theirs.T)[~np.eye(len(TEXTS), dtype=bool)]
    assert off.max() < cos.min() - 1e-4, f"random model too flat: max cross cos {off.max()}"


@pytest.fixture(scope="module")
def wavs(corpus, tmp_path_factory) -> list[tuple[str, str]]:
    """(8 s WAV for the reference, its first 6 s for Loupe) per sound."""
    out = tmp_path_factory.mktemp("wav")
    pairs = []
    for s in SOUNDS:
        src, stem = corpus / "sounds" / s, Path(s).stem
        pairs.append((str(_write_wav(src, out / f"{stem}-8s.wav", REF_SECONDS)),
                      str(_write_wav(src, out / f"{stem}-6s.wav", LOUPE_SECONDS))))
    return pairs


def test_reference_clips_are_loupe_windows(reference):
    sampler = reference.ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3)
    assert reference.get_clip_timepoints(sampler, REF_SECONDS) == [(0, 2), (2, 4), (4, 6)]


def test_audio_parity(pair, reference, wavs):
    from loupe.indexer.media.audio import audio_windows
    from loupe.indexer.media.audio_features import window_features

    size, enc = pair
    clip_cos, file_cos, names, file_vecs = [], [], [], []
    for ref_path, path in wavs:
        ref_x = reference.load_and_transform_audio_data([ref_path], "cpu")  # (1,3,1,128,204)
        assert ref_x.shape == (1, 3, 1, 128, 204)
        with audio_windows(path, enc.audio.clip_seconds,
                           sample_rate=enc.audio.sample_rate) as windows:
            wins = list(windows)
        assert [(w.start, w.end) for w in wins] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
        assert not any(w.silent for w in wins), "pick sounds without silent windows"
        feats = torch.stack([window_features(w, enc.audio) for w in wins])
        # the fbank inputs agree (same samples: the WAV is already 16 kHz int16)
        assert float((feats - ref_x[0]).abs().max()) <= 1e-4
        ours = enc.embed_audio(feats.numpy())
        for i in range(3):  # one clip at a time through ImageBind's own forward
            theirs = _ref_embed(enc, "audio", ref_x[:, i:i + 1])[0]
            clip_cos.append(float(ours[i] @ theirs))
            names.append(f"{Path(path).stem}[{i}]")
        # the file vector: Loupe's mean over the file's windows vs ImageBind's own mean
        # over its 3 clips
        ours_file = enc.embed_sounds([path])[0]
        theirs_file = _ref_embed(enc, "audio", ref_x)[0]
        file_cos.append(float(ours_file @ theirs_file))
        file_vecs.append(theirs_file)
    _report(size, "audio clips", np.array(clip_cos), names)
    _report(size, "audio files", np.array(file_cos), [Path(p).stem for _, p in wavs])
    off = (np.array(file_vecs) @ np.array(file_vecs).T)[~np.eye(len(wavs), dtype=bool)]
    assert off.max() < min(file_cos) - 1e-4, f"random model too flat: max cross {off.max()}"
