"""The PyTorch side of the backends: pixels to tensors, the precision a model runs in, and
``TorchEncoder``, the base of the open_clip and ImageBind encoders."""

from __future__ import annotations

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
