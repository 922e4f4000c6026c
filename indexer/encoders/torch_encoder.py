"""The PyTorch side of the backends: pixels to tensors, the precision a model runs in,
building a model without drawing the random weights its checkpoint replaces, and
``TorchEncoder``, the base of the open_clip and ImageBind encoders."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from loupe.indexer.encoders.base import Encoder
from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError


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
        raise LoupeError(f"precision {p!r}: use one of {', '.join(PRECISIONS)}")
    if device.startswith("cuda"):
        return "fp32" if p == "fp32" else "fp16-autocast"
    if bf16_capable and (p == "bf16" or (p == "auto" and cpu_has_bf16())):
        return "bf16"
    return "fp32"


# Random initialisers (torch.nn.init and the copies model code imports by name) that a
# model's constructor calls; the checkpoint then overwrites every tensor they fill.
_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_", "orthogonal_")
_INIT_LOCK = threading.Lock()  # one patched build at a time: restores stay in order
_INIT_IMPORTERS = ("torch.nn.modules.activation",)  # MultiheadAttention's xavier_uniform_


@contextmanager
def skip_random_init(modules: tuple[str, ...] = ()) -> Iterator[None]:
    """Random initialisation off while building a model whose tensors are then loaded.

    ``torch.nn.init``'s random initialisers (and the copies that torch's own modules or
    ``modules``, by name, imported for themselves) return their tensor untouched: building a
    full-size model on the CPU otherwise spends seconds drawing random numbers that the
    checkpoint overwrites (ViT-B-32 ~1 s, imagebind_huge ~20 s). Only what a constructor
    computes (masks, sin-cos tables, ``torch.randn`` calls) still runs, so non-persistent
    buffers are right. Callers must load every parameter afterwards (strictly).
    """
    import torch

    def keep(tensor, *args, **kwargs):
        return tensor

    with _INIT_LOCK:
        targets = [(torch.nn.init, n) for n in _RANDOM_INITS if hasattr(torch.nn.init, n)]
        for name in (*_INIT_IMPORTERS, *modules):
            mod = sys.modules.get(name)
            targets += [(mod, n) for n in _RANDOM_INITS if mod is not None and hasattr(mod, n)]
        saved = [(obj, n, getattr(obj, n)) for obj, n in targets]
        for obj, n in targets:
            setattr(obj, n, keep)
        try:
            yield
        finally:
            for obj, n, fn in saved:
                setattr(obj, n, fn)


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
        self.spec = spec
        self.device = device
        self.tokenizer = tokenizer
        self._torch = torch
        self._net = self._place(model.eval())

    def _place(self, model):
        """The model on :attr:`device` in :attr:`dtype` (a backend that loads its towers
        on first use places each as it loads it)."""
        return model.to(device=self.device, dtype=self.dtype)

    def _load_all(self) -> None:
        """Load whatever part of the model is not loaded yet (nothing, by default)."""

    @property
    def model(self):
        """The whole model, every tower loaded (the embed methods load only what they use)."""
        self._load_all()
        return self._net

    def _autocast(self, enabled: bool = True):
        torch = self._torch
        if enabled and self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)
