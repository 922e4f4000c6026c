"""Kosmos-2 grounding throughput: the full-size architecture, frames/s per batch size.

The real weights cannot be downloaded here, so the model is a full-size
``Kosmos2ForConditionalGeneration`` (``Kosmos2Config()``'s defaults are
kosmos-2-patch14-224's: a 24-layer ViT-L/14 vision tower, a 24-layer 2048-wide text
decoder, 65,037 tokens, 64 image tokens) with random weights, driven through Loupe's
``Grounder.generate_ids`` (the batched path ``loupe ground`` uses). The tokenizer and
image processor are the tests' tiny ones (tests/tiny_models.py): the prompt is a few
tokens either way, and generation time does not depend on which words they are. EOS is
disabled and every answer is exactly ``--new-tokens`` long, so runs are comparable.

Reported: seconds per generate call and pictures (frames) grounded per second, for each
batch size; on CPU fp32 by default batch 1 only (a full-size answer takes seconds).

Run::

    python bench/bench_grounding.py                              # CPU, batch 1
    python bench/bench_grounding.py --device cuda --dtype bf16 --batches 1 8 32 64

Prints numbers; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import write_json

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    import torch
    from helpers.tiny_models import make_tiny_kosmos2_dir
    from PIL import Image
    from transformers import AutoProcessor, Kosmos2Config, Kosmos2ForConditionalGeneration

    from loupe.search.explain.grounding.kosmos2 import Grounder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="fp32 (CPU default), bf16 (GPU default), fp16")
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per batch size")
    ap.add_argument("--photos", default=str(REPO.parent / "shared" / "corpus" / "photos"))
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    dtype = args.dtype or ("bf16" if gpu else "fp32")
    batches = args.batches or ([1, 8, 32, 64] if gpu else [1])
    repeats = args.repeats or (3 if gpu else 1)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]

    work = tempfile.mkdtemp(prefix="loupe-kosmos-")
    processor = AutoProcessor.from_pretrained(make_tiny_kosmos2_dir(os.path.join(work, "tiny")))
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(args.device):
        model = Kosmos2ForConditionalGeneration(Kosmos2Config())
    model = model.to(torch_dtype).eval()
    build_s = time.perf_counter() - t0
    # EOS off: every answer is exactly --new-tokens long.
    model.generation_config.eos_token_id = None
    model.generation_config.min_new_tokens = args.new_tokens
    params = sum(p.numel() for p in model.parameters())
    grounder = Grounder(model, processor, "kosmos-2 full size (random weights)", "random",
                        args.device, dtype)

    photos = sorted(p for p in Path(args.photos).glob("*.png"))[:8] if Path(
        args.photos).is_dir() else []
    pictures = [Image.open(p).convert("RGB") for p in photos] or [
        Image.new("RGB", (640, 480), (i * 30 % 255, 90, 160)) for i in range(8)]
    res = {"device": args.device, "dtype": dtype, "new_tokens": args.new_tokens,
           "params": params, "build_s": build_s,
           "gpu": torch.cuda.get_device_name() if gpu else None, "batches": {}}
    print(f"Kosmos-2 full size, {params / 1e9:.2f} B parameters, {dtype} on {args.device} "
          f"(built in {build_s:.0f} s); {args.new_tokens} new tokens per answer")
    for b in batches:
        batch = [pictures[i % len(pictures)] for i in range(b)]
        ids = grounder.generate_ids(batch, None, args.new_tokens)  # warm-up
        assert ids.shape[0] == b
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            grounder.generate_ids(batch, None, args.new_tokens)
        if gpu:
            torch.cuda.synchronize()
        per_call = (time.perf_counter() - t0) / repeats
        res["batches"][b] = {"seconds_per_call": per_call, "frames_per_s": b / per_call,
                             "tokens_per_s": b * args.new_tokens / per_call}
        print(f"  batch {b:3d}: {per_call:6.2f} s per call, {b / per_call:7.2f} frames/s, "
              f"{b * args.new_tokens / per_call:8.0f} new tokens/s")
    if gpu:
        res["gpu_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"  peak GPU memory {res['gpu_peak_mem_gib']:.1f} GiB")
    write_json(args.out, "bench_grounding.json", res)


if __name__ == "__main__":
    main()
