"""Real open_clip architectures, built small with seeded random weights, saved as
local model folders (the layout `--model DIR` reads: open_clip_config.json + weights)."""

from __future__ import annotations

import json
import os

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16,
                   "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 2},
}


def make_tiny_clip_dir(path: str, seed: int = 0) -> str:
    """Write a tiny random open_clip model folder at ``path``; returns ``path``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    # Random init leaves the projections tiny; scale them so vectors are well spread.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(path, "open_clip_model.safetensors"))
    with open(os.path.join(path, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": TINY_CLIP_CFG,
                   "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                                      "std": list(open_clip.OPENAI_DATASET_STD),
                                      "interpolation": "bicubic", "resize_mode": "shortest"}},
                  f)
    return path
