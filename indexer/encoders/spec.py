"""What an index records about the encoder that built a vector column: the model, its
weights, its dimension and the preprocessing its inputs need (plain data, no torch)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from loupe.indexer.kinds import Modality


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
        sound = {Modality.AUDIO} if self.audio else set()
        return frozenset({Modality.IMAGE, Modality.TEXT} | sound)

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
