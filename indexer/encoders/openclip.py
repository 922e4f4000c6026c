"""open_clip backend: any open_clip architecture + tag, an ``hf-hub:`` id, or local weights."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from loupe.indexer.encoders.base import l2_normalise
from loupe.indexer.encoders.hub import file_sha256, hub_offline, hub_reachable, resolve_device
from loupe.indexer.encoders.openclip_import import import_open_clip
from loupe.indexer.encoders.openclip_towers import IMAGE, TEXT, Towers, deferred_checkpoint
from loupe.indexer.encoders.registry import Backend
from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.encoders.torch_encoder import TorchEncoder, pixels_to_tensor
from loupe.indexer.errors import LoupeError

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _local_dir_weights(path: str) -> str | None:
    for name in _WEIGHT_FILES:
        p = os.path.join(path, name)
        if os.path.isfile(p):
            return p
    return None


def _preprocess_from_model(model) -> ImagePreprocess:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    if isinstance(size, int):
        size = (size, size)
    base = ImagePreprocess()
    return ImagePreprocess(
        size=(int(size[0]), int(size[1])),
        mean=tuple(float(x) for x in cfg.get("mean", base.mean)),
        std=tuple(float(x) for x in cfg.get("std", base.std)),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
        fill_color=int(cfg.get("fill_color", 0)),
    )


class OpenClipEncoder(TorchEncoder):
    """An open_clip CLIP model behind the Encoder interface (fp16 autocast on CUDA, bf16
    on CPUs with native bf16, fp32 elsewhere: see ``TorchEncoder``).

    Built by :func:`load_open_clip`, each tower loads from the checkpoint when first used
    (:mod:`loupe.indexer.encoders.openclip_towers`): a words query never reads the image
    tower, a picture query never the text tower. ``model`` is the whole model, loaded.
    """

    BF16_ON_CPU = True

    def __init__(self, model, tokenizer, spec: EncoderSpec | None, device: str = "cpu",
                 precision: str | None = None, checkpoints: list[str] | None = None):
        """``model`` loaded (``checkpoints`` None), or built by ``open_clip.create_model``
        inside :func:`deferred_checkpoint` with the ``checkpoints`` it recorded, loaded
        tower by tower. ``spec`` may be set after (the loader does)."""
        self._checkpoints = checkpoints
        self._towers: Towers | None = None
        if checkpoints is None:  # a loaded model: as it is, logit_scale kept in float32
            scale = getattr(model, "logit_scale", None)
            kept = scale.detach().float().clone() if scale is not None else None
        super().__init__(model, tokenizer, spec, device, precision)
        if checkpoints is None and kept is not None:  # only zero-shot shares use it
            self._net.logit_scale.data = kept.to(device)

    def _place(self, model):
        if self._checkpoints is None:
            return super()._place(model)
        self._towers = Towers(model, self._checkpoints, self.device, self.dtype)
        return model

    def _tower(self, name: str):
        """The model with tower ``name`` loaded."""
        if self._towers is not None:
            self._towers.ensure(name)
        return self._net

    def _load_all(self) -> None:
        if self._towers is not None:
            self._towers.ensure_all()

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 at model size -> (N, dim) unit vectors."""
        torch = self._torch
        if len(pixels) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = pixels_to_tensor(pixels, self.spec.preprocess, self.device).to(self.dtype)
        model = self._tower(IMAGE)
        with torch.inference_mode(), self._autocast():
            feats = model.encode_image(x)
        return l2_normalise(feats.float().cpu().numpy())

    @property
    def logit_scale(self) -> float:
        """exp of the model's learned log logit scale (100 for the released CLIPs)."""
        loaded = self._towers is None or self._towers.loaded  # either tower brings it
        scale = getattr(self._net if loaded else self._tower(TEXT), "logit_scale", None)
        return float(scale.detach().exp().reshape(-1)[0]) if scale is not None else 100.0

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) unit vectors, tokenised with open_clip's tokenizer."""
        torch = self._torch
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        model = self._tower(TEXT)
        tokens = self.tokenizer(list(texts))
        used = _used_length(model, tokens)
        tokens = tokens.to(self.device)
        with torch.inference_mode(), self._autocast():
            if used is not None:
                feats = _encode_text_prefix(model, tokens[:, :used])
            else:
                feats = model.encode_text(tokens)
        return l2_normalise(feats.float().cpu().numpy())


def _used_length(model, tokens) -> int | None:
    """How many leading token positions decide the texts' features, when fewer than the
    context: for open_clip's CLIP with a causal text mask and end-of-text pooling, a
    position only attends to earlier ones and the pooled one is the end-of-text token,
    so the padding after the last end-of-text changes nothing and need not be computed
    (a "a photo of a cat." prompt is 7 of 77 positions: the text tower runs ~5x faster).
    None: run the model as it is."""
    import open_clip

    if type(model) is not open_clip.CLIP or getattr(model, "attn_mask", None) is None:
        return None
    pool = getattr(model, "text_pool_type", None)
    if pool == "argmax":
        ends = tokens.argmax(dim=-1)
    elif pool == "eos" and getattr(model, "text_eos_id", None) is not None:
        ends = (tokens == model.text_eos_id).int().argmax(dim=-1)
    else:
        return None
    used = int(ends.max()) + 1 if len(tokens) else 0
    return used if 0 < used < tokens.shape[1] else None


def _encode_text_prefix(model, tokens):
    """open_clip ``CLIP.encode_text`` over the first ``tokens.shape[1]`` positions
    (see :func:`_used_length` for when that is exact)."""
    import torch
    from open_clip.transformer import text_global_pool

    n = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:n].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type,
                         eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        if isinstance(model.text_projection, torch.nn.Linear):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return x


def _missing_weights(model: str, pretrained: str | None, error: Exception,
                     online: bool) -> LoupeError:
    import open_clip
    from huggingface_hub.constants import HF_HUB_CACHE

    where = ""
    cfg = (open_clip.get_pretrained_cfg(model, pretrained) or {}) if pretrained else {}
    if cfg.get("hf_hub"):
        where = f" (looked for hub id {cfg['hf_hub'].rstrip('/')} in {HF_HUB_CACHE})"
    elif model.startswith("hf-hub:"):
        where = f" (looked for {model} in {HF_HUB_CACHE})"
    if not online:
        why = "not in the local cache, and the hub cannot be reached (offline)"
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        why = f"{type(error).__name__}: {first[:160]}{'...' if len(first) > 160 else ''}"
    if model.startswith("hf-hub:"):
        label = model
        how = ("--model /path/to/dir (a copy of the hub repo: open_clip_config.json + "
               "open_clip_model.safetensors)")
    else:
        label = f"{model!r} / {pretrained!r}"
        how = (f"--model {model} --pretrained /path/to/open_clip_model.safetensors (or "
               "--model /path/to/dir with open_clip_config.json + weights)")
    return LoupeError(
        f"weights for open_clip model {label} are not available{where}: {why}. "
        f"Offline, pass a local copy: {how}"
    )


def describe_source(model: str, pretrained: str | None) -> tuple[str, str, str]:
    """(open_clip model name, weights label, weights id) for the CLI's --model/--pretrained."""
    open_clip = import_open_clip(model)

    if model.startswith("local-dir:") or os.path.isdir(model):
        path = os.path.abspath(model.removeprefix("local-dir:"))
        weights = _local_dir_weights(path)
        if weights is None:
            raise LoupeError(
                f"model folder {path} has no weights ({' or '.join(_WEIGHT_FILES)}); "
                "it needs open_clip_config.json and a weight file"
            )
        return f"local-dir:{path}", path, file_sha256(weights)
    if model.startswith("hf-hub:"):
        return model, model, model
    if model not in open_clip.list_models():
        raise LoupeError(
            f"unknown open_clip model {model!r}: use a name from `open_clip.list_models()` "
            "(e.g. ViT-B-32, ViT-L-14), an hf-hub:ORG/REPO id, or a local folder"
        )
    if not pretrained:
        raise LoupeError(
            f"--pretrained is needed with --model {model}: a tag "
            f"({', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none known'}) "
            "or a local weight file"
        )
    if os.path.isfile(pretrained):
        path = os.path.abspath(pretrained)
        return model, path, file_sha256(path)
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        raise LoupeError(
            f"--pretrained {pretrained!r} is neither a file nor a tag of {model} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    return model, pretrained, pretrained


def load_open_clip(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str = "auto",
    precision: str | None = None,
) -> OpenClipEncoder:
    """An open_clip encoder with real weights, or a one-line LoupeError. The architecture
    and the checkpoint are found now; each tower's weights are read on its first use.
    ``precision``: see ``loupe.indexer.encoders.torch_encoder.resolve_precision``."""
    open_clip = import_open_clip(model)

    device = resolve_device(device)
    name, weights, weights_id = describe_source(model, pretrained)
    use_pretrained = None if name.startswith(("local-dir:", "hf-hub:")) else weights
    needs_hub = name.startswith("hf-hub:") or not os.path.exists(weights)
    online = hub_reachable() if needs_hub else False
    # open_clip and huggingface_hub log at WARNING/ERROR before raising; ours replaces it.
    loggers = [logging.getLogger(), logging.getLogger("huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with hub_offline(needs_hub and not online):
            with deferred_checkpoint() as checkpoints:
                clip = open_clip.create_model(
                    name, pretrained=use_pretrained, device="cpu", require_pretrained=True
                )
            tokenizer = open_clip.get_tokenizer(name)
            encoder = OpenClipEncoder(clip, tokenizer, None, device=device, precision=precision,
                                      checkpoints=checkpoints)
    except LoupeError:
        raise
    except Exception as e:  # download/cache misses, bad files: one actionable line
        if needs_hub:
            raise _missing_weights(model, use_pretrained, e, online) from e
        raise LoupeError(
            f"cannot load open_clip model {model!r} from {weights}: {type(e).__name__}: "
            f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        ) from e
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    encoder.spec = EncoderSpec(
        backend="open_clip",
        model=model if not name.startswith("local-dir:") else name,
        weights=weights,
        weights_id=weights_id,
        dim=_output_dim(encoder),
        preprocess=_preprocess_from_model(clip),
    )
    return encoder


def _output_dim(encoder: OpenClipEncoder) -> int:
    """The vector dimension, from the text projection's shape (no weight is read), or
    by embedding a word when the architecture has none to read."""
    import torch

    proj = getattr(encoder._net, "text_projection", None)
    if isinstance(proj, torch.nn.Linear):
        return int(proj.out_features)
    if isinstance(proj, torch.Tensor) and proj.ndim == 2:
        return int(proj.shape[-1])
    model = encoder._tower(TEXT)
    with torch.inference_mode():
        return int(model.encode_text(encoder.tokenizer(["x"]).to(encoder.device)).shape[-1])


def _open_clip_from_spec(spec: EncoderSpec, device: str, precision: str | None) -> OpenClipEncoder:
    pretrained = None if spec.model.startswith(("local-dir:", "hf-hub:")) else spec.weights
    return load_open_clip(spec.model, pretrained, device, precision)


BACKEND = Backend(
    "open_clip",
    from_spec=_open_clip_from_spec,
    load=lambda model, pretrained, device, precision: load_open_clip(
        model, pretrained, device, precision),
    fallback=True,  # any name open_clip knows, an hf-hub: id or an open_clip folder
)
