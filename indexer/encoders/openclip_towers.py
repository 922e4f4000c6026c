"""An open_clip model whose towers load from the checkpoint on first use.

``open_clip.create_model`` runs as it always does (config, hub or local folder, tag
preprocessing) with two differences (:func:`deferred_checkpoint`): random initialisation
is skipped, and the checkpoint it would load is only recorded. :class:`Towers` then loads
the text tower (every tensor not under ``visual.``, with ``logit_scale``/``logit_bias``)
or the image tower (``visual.*``) when first needed, reading only that tower's tensors
(a safetensors file is read key by key; other torch files are memory-mapped), with the
same fixes as ``open_clip.load_checkpoint`` and the same conversion as ``Module.to``, so
a tower's vectors are the eagerly loaded model's, bit for bit. A words query on ViT-B-32
then never builds 88 M random visual weights nor reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from loupe.indexer.encoders.torch_encoder import skip_random_init
from loupe.indexer.errors import LoupeError

TEXT, IMAGE = "text", "image"
TOWERS = (TEXT, IMAGE)
_SHARED = ("logit_scale", "logit_bias")  # loaded with whichever tower comes first
_DROPPED = ("text.transformer.embeddings.position_ids",)  # open_clip drops it too
# Checkpoints open_clip converts as a whole before loading (MobileCLIP, old text layout,
# big_vision .npz): those load both towers at once, through open_clip itself.
_CONVERTED_KEYS = ("image_encoder.model.patch_embed.0.rbr_conv.0.conv.weight",
                   "image_encoder.model.patch_emb.0.block.conv.weight")


def tower_of(key: str) -> str:
    """The tower a state-dict key belongs to."""
    return IMAGE if key.startswith("visual.") else TEXT


@contextmanager
def deferred_checkpoint() -> Iterator[list[str]]:
    """Within it, ``open_clip.create_model`` builds without drawing random weights and
    appends the checkpoint path it would load to the yielded list instead of loading it.
    (Both patches hold a process-wide lock: one such build at a time.)"""
    import open_clip.factory as factory

    seen: list[str] = []

    def record(model, checkpoint_path, *args, **kwargs):
        seen.append(str(checkpoint_path))
        return None

    with skip_random_init():
        saved = factory.load_checkpoint
        factory.load_checkpoint = record
        try:
            yield seen
        finally:
            factory.load_checkpoint = saved


class _Checkpoint:
    """A checkpoint's tensors by name, each read when asked for."""

    def __init__(self, path: str):
        import torch

        self.path = path
        self._file = None
        self._state: dict | None = None
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            self._file = safe_open(path, framework="pt", device="cpu")
            stored = list(self._file.keys())
        else:
            try:  # memory-mapped: pages are read only for the tensors used
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):  # only old (pre-zip) torch files cannot be mapped
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise LoupeError(f"{path} does not hold a state dict")
            self._state = state
            stored = list(state)
        # as open_clip.factory.load_state_dict: a DataParallel "module." prefix is dropped
        strip = bool(stored) and stored[0].startswith("module")
        self.names = {(k[7:] if strip else k): k for k in stored}

    def __contains__(self, key: str) -> bool:
        return key in self.names

    def __getitem__(self, key: str):
        stored = self.names[key]
        if self._file is not None:
            return self._file.get_tensor(stored)
        return self._state[stored]


class Towers:
    """Loads an open_clip model's towers from its checkpoint, each once, on demand, and
    places them on ``device`` in ``dtype`` (``logit_scale`` stays float32: only zero-shot
    shares use it)."""

    def __init__(self, model, checkpoints: list[str], device: str, dtype):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.loaded: set[str] = set()
        self._lock = threading.Lock()
        if len(checkpoints) != 1:
            raise LoupeError(f"open_clip named {len(checkpoints)} checkpoints to load, not one")
        self.path = checkpoints[0]
        self._keys = list(model.state_dict())  # names only: nothing is copied
        self._ckpt: _Checkpoint | None = None  # None: loaded whole by open_clip
        if not self.path.endswith((".npz", ".npy")):
            self._ckpt = _Checkpoint(self.path)
            if any(k in self._ckpt for k in _CONVERTED_KEYS) or (
                    "positional_embedding" in self._ckpt
                    and not hasattr(model, "positional_embedding")):
                self._ckpt = None
        if self._ckpt is not None:
            self._check_names()

    def _check_names(self) -> None:
        """The strict load's key check, on names alone (no tensor is read)."""
        ckpt, keys = self._ckpt, set(self._keys)
        missing = [k for k in self._keys  # a missing logit_bias is made from logit_scale
                   if k not in ckpt and not (k == "logit_bias" and "logit_scale" in ckpt)]
        extra = [k for k in ckpt.names if k not in keys and k not in _DROPPED]
        if missing or extra:
            what = (f"missing {', '.join(missing[:3])}" if missing
                    else f"unexpected {', '.join(extra[:3])}")
            raise LoupeError(f"{self.path} does not fit this architecture ({what}"
                             f"{', ...' if len(missing or extra) > 3 else ''})")

    def ensure(self, tower: str) -> None:
        """Load ``tower`` ("text" or "image") if it is not loaded yet."""
        if tower in self.loaded:
            return
        with self._lock:
            if tower in self.loaded:
                return
            try:
                if self._ckpt is None:
                    self._load_whole()
                else:
                    self._load_tower(tower)
                    if self.loaded.issuperset(TOWERS):
                        self._ckpt = None  # every tensor is in the model: close the file
            except LoupeError:
                raise
            except Exception as e:  # a tensor of the wrong shape, a damaged file
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                raise LoupeError(f"cannot load the {tower} tower from {self.path}: "
                                 f"{type(e).__name__}: {first}") from e

    def ensure_all(self) -> None:
        """Load every tower."""
        for tower in TOWERS:
            self.ensure(tower)

    def _load_whole(self) -> None:
        """open_clip's own load, for the checkpoints it converts as a whole."""
        from open_clip.factory import load_checkpoint

        load_checkpoint(self.model, self.path, strict=True)
        scale = getattr(self.model, "logit_scale", None)
        kept = scale.detach().float().clone() if scale is not None else None
        self.model.to(device=self.device, dtype=self.dtype)
        if kept is not None:
            self.model.logit_scale.data = kept.to(self.device)
        self.loaded.update(TOWERS)

    def _load_tower(self, tower: str) -> None:
        import torch
        from open_clip.factory import resize_pos_embed, resize_text_pos_embed

        model, ckpt = self.model, self._ckpt
        shared = () if self.loaded else _SHARED  # the first tower loads them
        names = [k for k in self._keys
                 if (tower_of(k) == tower and k not in _SHARED) or k in shared]
        state = {k: ckpt[k] for k in names if k in ckpt}
        # open_clip.load_checkpoint's fixes, in its order
        for k in _SHARED:
            current = getattr(model, k, None)
            if k in state and current is not None and current.ndim != state[k].ndim:
                state[k] = state[k].reshape(current.shape)
        if ("logit_bias" in names and "logit_bias" not in state
                and getattr(model, "logit_bias", None) is not None):
            state["logit_bias"] = torch.zeros_like(ckpt["logit_scale"]).reshape(
                model.logit_bias.shape)
        resize_pos_embed(state, model)
        resize_text_pos_embed(state, model)
        current = dict(model.state_dict(keep_vars=True))
        for k, v in state.items():
            if v.shape != current[k].shape:
                raise LoupeError(f"{self.path}: tensor {k} has shape {tuple(v.shape)}, this "
                                 f"architecture's is {tuple(current[k].shape)}")
            v = v.to(current[k].dtype)  # what load_state_dict's copy_ into it would do
            if k == "logit_scale":
                state[k] = v.to(self.device, torch.float32)
            elif v.is_floating_point():
                state[k] = v.to(self.device, self.dtype)
            else:
                state[k] = v.to(self.device)
        model.load_state_dict(state, strict=False, assign=True)
        for name, buf in list(model.named_buffers()):  # the tower's computed buffers
            if name not in current and tower_of(name) == tower:
                owner, _, leaf = name.rpartition(".")
                placed = (buf.to(self.device, self.dtype) if buf.is_floating_point()
                          else buf.to(self.device))
                setattr(model.get_submodule(owner) if owner else model, leaf, placed)
        self.loaded.add(tower)

