"""The Encoder seam: images and texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocess:
    """How a decoded RGB image becomes model input (recorded with the index)."""

    size: tuple[int, int] = (224, 224)  # (height, width) of the model input
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"  # "bicubic" or "bilinear"
    resize_mode: str = "shortest"  # "shortest" (resize + centre crop), "longest" (pad), "squash"
    fill_color: int = 0  # padding value for resize_mode="longest"

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ImagePreprocess:
        """Inverse of :meth:`to_dict`."""
        return cls(
            size=tuple(d["size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d["interpolation"],
            resize_mode=d["resize_mode"],
            fill_color=int(d.get("fill_color", 0)),
        )


@dataclass(frozen=True)
class AudioPreprocess:
    """How mono audio becomes audio-encoder input (recorded with the index).

    Windows of ``clip_seconds`` at ``sample_rate`` become a kaldi log-mel fbank of
    ``num_mel_bins`` x ``target_length`` frames, normalised with ``mean``/``std``
    (ImageBind's recipe: :func:`loupe.indexer.media.audio.kaldi_fbank`).
    """

    sample_rate: int = 16000
    clip_seconds: float = 2.0
    num_mel_bins: int = 128
    target_length: int = 204
    mean: float = -4.268
    std: float = 9.138

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioPreprocess:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclass(frozen=True)
class EncoderSpec:
    """Identity of an encoder: what built an index's vectors.

    Two specs are compatible when everything that changes the vectors is equal:
    backend, architecture, weights identity, dimension and image preprocessing.
    """

    backend: str  # "open_clip", "toy", ...
    model: str  # architecture name, hub id or local dir as given
    weights: str  # pretrained tag, or the file/dir the weights came from
    weights_id: str  # tag, or "sha256:<hex>" of the weight file
    dim: int
    preprocess: ImagePreprocess = field(default_factory=ImagePreprocess)
    audio: AudioPreprocess | None = None  # set when the encoder embeds sound

    @property
    def modalities(self) -> frozenset[str]:
        """What this encoder embeds: "image" and "text" always, "audio" when it can."""
        return frozenset({"image", "text"} | ({"audio"} if self.audio else set()))

    @property
    def column(self) -> str:
        """Name of this encoder's vector column in the store."""
        slug = re.sub(r"[^a-z0-9]+", "_", f"{self.backend}_{self.model}".lower()).strip("_")
        tag = re.sub(r"[^a-z0-9]+", "_", self.weights_id.lower()).strip("_")[:24]
        return f"vec_{slug}_{tag}"

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["audio"] = self.audio.to_dict() if self.audio else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EncoderSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            backend=d["backend"],
            model=d["model"],
            weights=d["weights"],
            weights_id=d["weights_id"],
            dim=int(d["dim"]),
            preprocess=ImagePreprocess.from_dict(d["preprocess"]),
            audio=AudioPreprocess.from_dict(d["audio"]) if d.get("audio") else None,
        )

    def mismatch(self, other: EncoderSpec) -> str | None:
        """Why vectors of ``other`` cannot be compared with ours, or None if they can."""
        for name in ("backend", "model", "weights_id", "dim"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                return f"{name} differs: index has {a!r}, this encoder has {b!r}"
        if self.preprocess != other.preprocess:
            mine, theirs = self.preprocess.to_dict(), other.preprocess.to_dict()
            diff = ", ".join(f"{k} {mine[k]} vs {theirs[k]}" for k in mine if mine[k] != theirs[k])
            return f"image preprocessing differs (index vs this encoder: {diff})"
        if self.audio != other.audio:
            return (f"audio preprocessing differs: index has {self.audio}, "
                    f"this encoder {other.audio}")
        return None

    def describe(self) -> str:
        """One line for people."""
        return f"{self.backend} {self.model} ({self.weights}), dim {self.dim}"


def pixels_to_tensor(pixels: np.ndarray, pre: ImagePreprocess, device: str):
    """uint8 (N, H, W, 3) -> normalised float32 (N, 3, H, W) torch tensor on ``device``.

    The uint8 batch crosses to the device as it is (a quarter of the bytes of float32,
    from pinned memory on CUDA) and is converted there: ToTensor + Normalize's
    arithmetic, ``x / 255`` then ``(x - mean) / std``, on whichever device.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels))
    if device.startswith("cuda"):
        x = x.pin_memory()
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


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
        from loupe.indexer.errors import LoupeError

        raise LoupeError(f"{self.spec.describe()} cannot embed sound; "
                         "index with an audio model (e.g. --model imagebind_huge)")

    def embed_sounds(self, paths: Sequence[str]) -> np.ndarray:
        """Embed sound files (or videos' soundtracks): one vector per file.

        Every window of the file is embedded; the vector is the renormalised mean of the
        windows that are not silent (of all windows if every one is silent).
        """
        from loupe.indexer.media.audio import audio_features

        if self.audio is None:
            return self.embed_audio(np.zeros((0,), np.float32))  # raises the clear error
        out = []
        for path in paths:
            feats, silent = audio_features(path, self.audio)
            vecs = self.embed_audio(feats)
            keep = ~silent if (~silent).any() else np.ones_like(silent)
            out.append(l2_normalise(vecs[keep].mean(axis=0, keepdims=True))[0])
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images (any mode/size) with this encoder's preprocessing."""
        from loupe.indexer.media.image import to_model_input

        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([to_model_input(im, self.preprocess) for im in images])
        return self.embed_pixels(batch)


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX): there a
    bf16 model runs about twice as fast as fp32; elsewhere it is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str | None, device: str, bf16_capable: bool) -> str:
    """The precision a model runs in: "fp32", "bf16" (weights and activations, CPU) or
    "fp16-autocast" (CUDA). ``precision`` (or ``LOUPE_PRECISION``): "auto" is fp16
    autocast on CUDA, bf16 on a CPU with native bf16 for a model that supports it, fp32
    otherwise; "fp32" forces full precision; "bf16" forces bf16 on CPU for a model that
    supports it (``bf16_capable``; others stay fp32)."""
    import os

    p = (precision or os.environ.get("LOUPE_PRECISION") or "auto").lower()
    if p not in PRECISIONS:
        from loupe.indexer.errors import LoupeError

        raise LoupeError(f"precision {p!r}: use one of {', '.join(PRECISIONS)}")
    if device.startswith("cuda"):
        return "fp32" if p == "fp32" else "fp16-autocast"
    if bf16_capable and (p == "bf16" or (p == "auto" and cpu_has_bf16())):
        return "bf16"
    return "fp32"


class TorchEncoder(Encoder):
    """Base of the PyTorch backends: a model in eval mode on a device, and its tokenizer.

    On CUDA, :meth:`_autocast` runs the enclosed code in fp16. On a CPU with native bf16
    a backend that allows it (``BF16_ON_CPU``) keeps its weights in bf16 (about 2x the
    fp32 speed; cosine with the fp32 vectors above 0.9999); elsewhere fp32. See
    :func:`resolve_precision`.
    """

    BF16_ON_CPU = False

    def __init__(self, model, tokenizer, spec: EncoderSpec, device: str = "cpu",
                 precision: str | None = None):
        import torch

        self.precision = resolve_precision(precision, device, self.BF16_ON_CPU)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.model = model.eval().to(device=device, dtype=self.dtype)
        self.tokenizer = tokenizer
        self.spec = spec
        self.device = device
        self._torch = torch

    def _autocast(self, enabled: bool = True):
        torch = self._torch
        if enabled and self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)
