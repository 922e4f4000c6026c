"""ImageBind backend: Meta's ImageBind (images, texts and sound in one space).

The model code comes from the ``imagebind-unofficial`` package, imported without its
``imagebind/__init__.py``: that file imports ``imagebind.data``, which needs
``pkg_resources`` (gone from setuptools >= 82) and pytorchvideo (broken against current
torchvision). Loupe only needs ``imagebind.models.*`` and does its own decoding: images
through :mod:`loupe.indexer.media.image`, sound through :mod:`loupe.indexer.media.audio`'s kaldi
fbank, which reproduce ImageBind's ``load_and_transform_*`` (tests/test_imagebind.py
checks that against ImageBind's own code).

Weights are never downloaded. ``imagebind_huge`` looks for ``imagebind_huge.pth`` in
``$LOUPE_IMAGEBIND_CHECKPOINT``, ``.checkpoints/`` (ImageBind's own place, relative to
the working directory) and Loupe's user cache directory; ``--pretrained FILE`` names a
copy anywhere. A local folder with ``imagebind_config.json`` (the ``ImageBindModel``
keyword arguments) and a weight file (``model.safetensors``, ``model.pth`` or
``imagebind_huge.pth``) loads any ImageBind architecture (tests use tiny ones).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import json
import os
import sys
import types
from collections.abc import Sequence

import numpy as np

from loupe.indexer.encoders.base import l2_normalise
from loupe.indexer.encoders.hub import file_sha256, resolve_device
from loupe.indexer.encoders.registry import Backend, same_weights
from loupe.indexer.encoders.spec import AudioPreprocess, EncoderSpec, ImagePreprocess
from loupe.indexer.encoders.torch_encoder import (
    TorchEncoder,
    pixels_to_tensor,
    skip_random_init,
)
from loupe.indexer.errors import LoupeError

DEFAULT_IMAGEBIND_MODEL = "imagebind_huge"
IMAGEBIND_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
IMAGEBIND_CHECKPOINT_NAME = "imagebind_huge.pth"
IMAGEBIND_WEIGHTS_LICENSE = "CC BY-NC-SA 4.0 (non-commercial)"
CHECKPOINT_ENV = "LOUPE_IMAGEBIND_CHECKPOINT"
CONFIG_NAME = "imagebind_config.json"
_WEIGHT_FILES = ("model.safetensors", "model.pth", IMAGEBIND_CHECKPOINT_NAME)

# Architectures by name: ImageBindModel keyword arguments (imagebind_model.imagebind_huge).
IMAGEBIND_MODELS: dict[str, dict] = {
    "imagebind_huge": dict(
        vision_embed_dim=1280,
        vision_num_blocks=32,
        vision_num_heads=16,
        text_embed_dim=1024,
        text_num_blocks=24,
        text_num_heads=16,
        out_embed_dim=1024,
        audio_drop_path=0.1,
        imu_drop_path=0.7,
    ),
}

# ImageBind's vision transform (imagebind/data.py, load_and_transform_vision_data):
# Resize(224, bicubic) on the shortest side, CenterCrop(224), CLIP mean/std.
IMAGEBIND_IMAGE_PREPROCESS = ImagePreprocess(
    size=(224, 224),
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    interpolation="bicubic",
    resize_mode="shortest",
)

_USED = ("vision", "text", "audio")  # modalities Loupe embeds; depth/thermal/imu are dropped
_UNUSED = ("depth", "thermal", "imu")
# ImageBind's modules that import a trunc_normal_ of their own (skipped while building).
_OWN_INITS = ("imagebind.models.transformer", "imagebind.models.multimodal_preprocessors")


def import_imagebind_model() -> types.ModuleType:
    """``imagebind.models.imagebind_model``, without running ``imagebind/__init__.py``.

    When ``imagebind`` is not imported yet, a bare package module whose ``__path__`` is
    the installed package folder stands in for it, so submodule imports work while the
    package's ``__init__`` (and with it ``imagebind.data``) never runs.
    """
    if "imagebind" not in sys.modules:
        found = importlib.util.find_spec("imagebind")  # locates; executes nothing
        if found is None or not found.submodule_search_locations:
            raise LoupeError(
                "the ImageBind backend needs the imagebind-unofficial package: "
                "pip install imagebind-unofficial==0.1.1 einops"
            )
        pkg = types.ModuleType("imagebind")
        pkg.__path__ = list(found.submodule_search_locations)
        pkg.__spec__ = importlib.machinery.ModuleSpec("imagebind", None, is_package=True)
        pkg.__spec__.submodule_search_locations = pkg.__path__
        pkg.__package__ = "imagebind"
        pkg.__file__ = found.origin  # for resource lookups; the file itself is never run
        sys.modules["imagebind"] = pkg
    try:
        import imagebind.models.imagebind_model as ib
    except ImportError as e:
        raise LoupeError(f"cannot import ImageBind's model code: {type(e).__name__}: {e} "
                         "(pip install imagebind-unofficial==0.1.1 einops)") from e
    return ib


def bpe_path() -> str:
    """The BPE vocabulary shipped inside the imagebind package."""
    ib = import_imagebind_model()
    pkg_dir = os.path.dirname(os.path.dirname(ib.__file__))
    return os.path.join(pkg_dir, "bpe", "bpe_simple_vocab_16e6.txt.gz")


def default_checkpoint_places() -> list[tuple[str, str]]:
    """Where ``imagebind_huge`` weights are looked for, in order: (label, path)."""
    from platformdirs import user_cache_dir

    places = []
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        places.append((f"${CHECKPOINT_ENV}", os.path.abspath(os.path.expanduser(env))))
    places.append(("ImageBind's own place",
                   os.path.abspath(os.path.join(".checkpoints", IMAGEBIND_CHECKPOINT_NAME))))
    places.append(("Loupe's cache", os.path.join(user_cache_dir("loupe", appauthor=False),
                                                 IMAGEBIND_CHECKPOINT_NAME)))
    return places


def find_checkpoint() -> str:
    """The first existing ``imagebind_huge.pth`` of :func:`default_checkpoint_places`.

    Raises one clear :class:`LoupeError` when there is none (nothing is downloaded).
    """
    places = default_checkpoint_places()
    for _, path in places:
        if os.path.isfile(path):
            return path
    looked = ", ".join(path for _, path in places)
    if not os.environ.get(CHECKPOINT_ENV):
        looked = f"${CHECKPOINT_ENV} (unset), " + looked
    raise LoupeError(
        f"ImageBind weights {IMAGEBIND_CHECKPOINT_NAME} not found (looked in {looked}). "
        f"Loupe never downloads them: fetch {IMAGEBIND_CHECKPOINT_URL} (4.8 GB; weights "
        f"licensed {IMAGEBIND_WEIGHTS_LICENSE}) into one of those places, or pass a local "
        f"copy: --model {DEFAULT_IMAGEBIND_MODEL} --pretrained FILE"
    )


def is_imagebind_dir(path: str) -> bool:
    """Whether ``path`` (optionally ``local-dir:``-prefixed) is an ImageBind model folder."""
    path = path.removeprefix("local-dir:")
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))


def is_imagebind_model(model: str) -> bool:
    """Whether a CLI ``--model`` names ImageBind (a name or a local ImageBind folder)."""
    if model.startswith("local-dir:") or os.path.isdir(model):
        return is_imagebind_dir(model)
    return model.lower().startswith("imagebind")


def weights_license(spec: EncoderSpec) -> str | None:
    """The licence of an ImageBind spec's weights (Meta's release), for ``loupe status``."""
    if spec.backend == "imagebind" and spec.model == DEFAULT_IMAGEBIND_MODEL:
        return IMAGEBIND_WEIGHTS_LICENSE
    return None


def _local_dir_config(path: str) -> tuple[dict, str]:
    """(ImageBindModel kwargs, weight file) of a local model folder."""
    try:
        with open(os.path.join(path, CONFIG_NAME), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise LoupeError(f"cannot read {os.path.join(path, CONFIG_NAME)}: {e}") from e
    if not isinstance(cfg, dict):
        raise LoupeError(f"{os.path.join(path, CONFIG_NAME)} must hold a JSON object of "
                         "ImageBindModel arguments")
    cfg = cfg.get("model_cfg", cfg)
    for name in _WEIGHT_FILES:
        weights = os.path.join(path, name)
        if os.path.isfile(weights):
            return cfg, weights
    raise LoupeError(f"ImageBind model folder {path} has no weights "
                     f"({' or '.join(_WEIGHT_FILES)}); it needs {CONFIG_NAME} and a weight file")


def _model_kwargs(ib: types.ModuleType, cfg: dict, where: str) -> dict:
    allowed = set(inspect.signature(ib.ImageBindModel.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise LoupeError(f"{where}: unknown ImageBindModel argument(s) {', '.join(unknown)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def _load_state_dict(path: str) -> dict:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:  # memory-mapped: the tensors are the file's pages, not a second copy in RAM
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # only old (pre-zip) torch files cannot be mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def build_model(kwargs: dict, weights: str, label: str):
    """An ImageBindModel with ``kwargs`` and the weights of file ``weights``, in eval mode,
    on the CPU, with the depth/thermal/IMU towers dropped."""
    import torch

    ib = import_imagebind_model()
    try:
        state = _load_state_dict(weights)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        with skip_random_init(_OWN_INITS):
            model = ib.ImageBindModel(**kwargs)
        model.load_state_dict(state, strict=True, assign=True)
    except LoupeError:
        raise
    except Exception as e:  # wrong file, other architecture, damaged file
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise LoupeError(f"cannot load ImageBind model {label} from {weights}: "
                         f"{type(e).__name__}: {first}") from e
    del state
    for group in (model.modality_preprocessors, model.modality_trunks, model.modality_heads,
                  model.modality_postprocessors):
        for name in _UNUSED:
            if name in group:
                del group[name]
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    return model.eval()


class ImageBindEncoder(TorchEncoder):
    """An ImageBind model behind the Encoder interface: images, texts and sound."""

    def _embed(self, modality: str, x, autocast: bool = False) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode(), self._autocast(autocast):
            out = self._net({modality: x.to(self.device, non_blocking=True)})[modality]
        # ImageBind scales text and audio by a logit scale after normalising: undo it.
        return l2_normalise(out.float().cpu().numpy())

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 -> (N, dim) unit vectors (fp16 autocast on CUDA)."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = pixels_to_tensor(pixels, self.spec.preprocess, self.device)
        return self._embed("vision", x, autocast=True)

    @property
    def logit_scale(self) -> float:
        """The text head's learned logit scale (clamped as ImageBind clamps it): its
        zero-shot logits are image vectors times scaled text vectors."""
        for module in self._net.modality_postprocessors["text"]:
            if hasattr(module, "log_logit_scale"):
                scale = float(module.log_logit_scale.detach().exp().reshape(-1)[0])
                return min(scale, float(getattr(module, "max_logit_scale", scale)))
        return 100.0

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) unit vectors, with ImageBind's BPE tokenizer (77 tokens)."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokenizer(list(texts)).reshape(len(texts), -1)
        return self._embed("text", tokens)

    def embed_audio(self, features: np.ndarray) -> np.ndarray:
        """(N, 1, mel bins, frames) float32 kaldi fbank windows -> (N, dim) unit vectors."""
        torch = self._torch
        audio = self.spec.audio
        assert audio is not None
        features = np.asarray(features, dtype=np.float32)
        if len(features) == 0:
            return np.zeros((0, self.dim), np.float32)
        want = (1, audio.num_mel_bins, audio.target_length)
        if features.ndim != 4 or features.shape[1:] != want:
            raise ValueError(f"audio features must be (N, {', '.join(map(str, want))}), "
                             f"not {features.shape}")
        return self._embed("audio", torch.from_numpy(np.ascontiguousarray(features)))


def _source(model: str, checkpoint: str | None) -> tuple[str, dict, str, str]:
    """(spec model name, ImageBindModel kwargs, weight file, weights label)."""
    ib = import_imagebind_model()
    if model.startswith("local-dir:") or os.path.isdir(model):
        path = os.path.abspath(model.removeprefix("local-dir:"))
        if not os.path.isfile(os.path.join(path, CONFIG_NAME)):
            raise LoupeError(f"model folder {path} has no {CONFIG_NAME}; an ImageBind "
                             f"folder needs {CONFIG_NAME} and a weight file")
        cfg, weights = _local_dir_config(path)
        return f"local-dir:{path}", _model_kwargs(ib, cfg, path), weights, path
    if model not in IMAGEBIND_MODELS:
        raise LoupeError(
            f"unknown ImageBind model {model!r}: use {', '.join(IMAGEBIND_MODELS)} or a "
            f"local folder with {CONFIG_NAME} + model.pth"
        )
    if checkpoint:
        path = os.path.abspath(os.path.expanduser(checkpoint))
        if not os.path.isfile(path):
            raise LoupeError(f"--pretrained {checkpoint}: no such file (give the path of a "
                             f"local copy of {IMAGEBIND_CHECKPOINT_NAME})")
    else:
        path = find_checkpoint()
    return model, dict(IMAGEBIND_MODELS[model]), path, path


def load_imagebind(
    model: str = DEFAULT_IMAGEBIND_MODEL,
    checkpoint: str | None = None,
    device: str = "auto",
    precision: str | None = None,
) -> ImageBindEncoder:
    """Build an ImageBind encoder from local weights, or fail with a one-line LoupeError.

    ``model`` is ``imagebind_huge`` (weights from ``checkpoint``, else looked for in
    :func:`default_checkpoint_places`) or a local folder (``imagebind_config.json`` +
    weight file; ``checkpoint`` is then ignored).
    """
    device = resolve_device(device)
    ib = import_imagebind_model()
    import imagebind.models.multimodal_preprocessors as mp  # after the import shim

    name, kwargs, weights_file, weights = _source(model, checkpoint)
    weights_id = file_sha256(weights_file)
    net = build_model(kwargs, weights_file, name)
    tokenizer = mp.SimpleTokenizer(bpe_path=bpe_path(), context_length=77)
    defaults = inspect.signature(ib.ImageBindModel.__init__).parameters
    spec = EncoderSpec(
        backend="imagebind",
        model=name,
        weights=weights,
        weights_id=weights_id,
        dim=int(kwargs.get("out_embed_dim", defaults["out_embed_dim"].default)),
        preprocess=IMAGEBIND_IMAGE_PREPROCESS,
        audio=AudioPreprocess(
            num_mel_bins=int(kwargs.get("audio_num_mel_bins",
                                        defaults["audio_num_mel_bins"].default)),
            target_length=int(kwargs.get("audio_target_len",
                                         defaults["audio_target_len"].default)),
        ),
    )
    return ImageBindEncoder(net, tokenizer, spec, device=device, precision=precision)


def imagebind_from_spec(spec: EncoderSpec, device: str = "auto",
                        precision: str | None = None) -> ImageBindEncoder:
    """Rebuild the ImageBind encoder an index recorded (the caller checks the weight hash).

    A checkpoint that moved since is looked for again in the usual places.
    """
    if spec.model.startswith("local-dir:"):
        return load_imagebind(spec.model, None, device, precision)
    checkpoint = spec.weights if os.path.isfile(spec.weights) else None
    return load_imagebind(spec.model, checkpoint, device, precision)


BACKEND = Backend(
    "imagebind",
    from_spec=imagebind_from_spec,
    load=load_imagebind,
    claims=is_imagebind_model,
    same_source=lambda spec, model, pretrained: same_weights(spec, model, pretrained,
                                                             name_alone=True),
    licence=weights_license,
)
