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


# ImageBindModel arguments of a tiny ImageBind: every tower real, 1-2 blocks, width 32.
TINY_IMAGEBIND_CFG = {
    "out_embed_dim": 32,
    "vision_embed_dim": 32, "vision_num_blocks": 2, "vision_num_heads": 2,
    "text_embed_dim": 32, "text_num_blocks": 2, "text_num_heads": 2,
    "audio_embed_dim": 32, "audio_num_blocks": 2, "audio_num_heads": 2,
    "depth_embed_dim": 16, "depth_num_blocks": 1, "depth_num_heads": 1,
    "thermal_embed_dim": 16, "thermal_num_blocks": 1, "thermal_num_heads": 1,
    "imu_embed_dim": 16, "imu_num_blocks": 1, "imu_num_heads": 1,
}


def make_tiny_imagebind_dir(path: str, seed: int = 0, cfg: dict | None = None) -> str:
    """Write a tiny random ImageBind model folder at ``path`` (imagebind_config.json +
    model.pth, the layout ``--model DIR`` reads); returns ``path``."""
    import torch

    from indexer.encoders.imagebind import import_imagebind_model

    cfg = dict(TINY_IMAGEBIND_CFG if cfg is None else cfg)
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(seed)
    model = import_imagebind_model().ImageBindModel(**cfg)
    # As for the tiny CLIP: jitter every tensor so that vectors are well spread.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(model.state_dict(), os.path.join(path, "model.pth"))
    with open(os.path.join(path, "imagebind_config.json"), "w") as f:
        json.dump(cfg, f)
    return path
