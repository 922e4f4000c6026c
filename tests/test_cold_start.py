"""A query loads only the tower it needs: an open_clip encoder reads its text tower on
the first ``embed_texts``, its image tower on the first ``embed_pixels``, and either gives
exactly the vectors of the model loaded whole (open_clip's own ``create_model``) with the
same weights, at fp32 and bf16, from a safetensors folder, a torch file and the real
ViT-B-32 architecture; bad checkpoints still fail when the model loads."""

from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest

from loupe.indexer import LoupeError
from loupe.indexer.encoders import LazyEncoder, encoder_from_spec
from loupe.indexer.encoders.openclip import OpenClipEncoder, load_open_clip

TEXTS = ["a cat on a sofa", "a rocket on the launch pad at night", "coffee"]


def _pixels(enc, n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *enc.preprocess.size, 3), dtype=np.uint8)


def _whole(model: str, pretrained: str | None, spec, precision: str) -> OpenClipEncoder:
    """The same weights loaded whole by open_clip itself, behind the same encoder."""
    import open_clip

    name = f"local-dir:{model}" if os.path.isdir(model) else model
    clip = open_clip.create_model(name, pretrained=pretrained, device="cpu",
                                  require_pretrained=True)
    return OpenClipEncoder(clip, open_clip.get_tokenizer(name), spec, "cpu", precision)


def _same_everything(lazy: OpenClipEncoder, whole: OpenClipEncoder) -> None:
    pixels = _pixels(lazy)
    assert np.array_equal(lazy.embed_texts(TEXTS), whole.embed_texts(TEXTS))
    assert np.array_equal(lazy.embed_pixels(pixels), whole.embed_pixels(pixels))
    assert lazy.logit_scale == whole.logit_scale
    mine, theirs = lazy.model.state_dict(), whole.model.state_dict()
    assert mine.keys() == theirs.keys()
    for k, v in theirs.items():
        assert mine[k].dtype == v.dtype and mine[k].device == v.device, k
        assert (mine[k] == v).all() or (mine[k].isnan() & v.isnan()).all(), k
    for (n1, b1), (n2, b2) in zip(lazy.model.named_buffers(), whole.model.named_buffers(),
                                  strict=True):  # the computed ones (attn_mask) too
        assert n1 == n2 and b1.dtype == b2.dtype and bool((b1 == b2).all()), n1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_words_query_loads_only_the_text_tower_and_vectors_are_the_whole_models(
        tiny_clip_dir, precision):
    lazy = load_open_clip(tiny_clip_dir, None, "cpu", precision)
    assert lazy._towers.loaded == set()  # nothing read at load time
    words = lazy.embed_texts(TEXTS)
    assert lazy._towers.loaded == {"text"}
    whole = _whole(tiny_clip_dir, None, lazy.spec, precision)
    assert lazy.precision == whole.precision == precision
    assert np.array_equal(words, whole.embed_texts(TEXTS))
    _same_everything(lazy, whole)


def test_a_picture_query_loads_only_the_image_tower(tiny_clip_dir):
    lazy = load_open_clip(tiny_clip_dir, None, "cpu", "fp32")
    whole = _whole(tiny_clip_dir, None, lazy.spec, "fp32")
    pixels = _pixels(lazy, 2, seed=1)
    assert np.array_equal(lazy.embed_pixels(pixels), whole.embed_pixels(pixels))
    assert lazy._towers.loaded == {"image"}
    assert lazy.logit_scale == whole.logit_scale  # came with the image tower
    assert lazy._towers.loaded == {"image"}
    assert np.array_equal(lazy.embed_texts(TEXTS), whole.embed_texts(TEXTS))
    assert lazy._towers.loaded == {"image", "text"}


def test_the_spec_is_the_one_the_whole_model_gives(tiny_clip_dir):
    lazy = load_open_clip(tiny_clip_dir, None, "cpu")
    assert lazy.spec.dim == 32 and lazy.spec.preprocess.size == (64, 64)
    assert lazy._towers.loaded == set()  # the dimension came from a shape, not a forward pass
    rebuilt = encoder_from_spec(lazy.spec, "cpu")
    assert rebuilt.spec == lazy.spec


def test_lazy_encoder_and_a_rebuilt_spec_index_with_both_towers(tiny_clip_dir):
    spec = load_open_clip(tiny_clip_dir, None, "cpu", "fp32").spec
    whole = _whole(tiny_clip_dir, None, spec, "fp32")
    lazy = LazyEncoder(spec, "cpu", "fp32")
    pixels = _pixels(whole)
    assert np.array_equal(lazy.embed_pixels(pixels), whole.embed_pixels(pixels))
    assert np.array_equal(lazy.embed_texts(TEXTS), whole.embed_texts(TEXTS))


def test_a_torch_weight_file_loads_tower_by_tower_too(tiny_clip_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    state = load_file(os.path.join(tiny_clip_dir, "open_clip_model.safetensors"))
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(os.path.join(tiny_clip_dir, "open_clip_config.json"), folder)
    # the DataParallel prefix open_clip strips, in a torch (zip, memory-mapped) file
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}},
               folder / "open_clip_pytorch_model.bin")
    lazy = load_open_clip(str(folder), None, "cpu", "fp32")
    assert lazy._towers._ckpt is not None  # read tower by tower, not through open_clip
    _same_everything(lazy, _whole(str(folder), None, lazy.spec, "fp32"))


def test_concurrent_first_queries_load_a_tower_once(tiny_clip_dir):
    lazy = load_open_clip(tiny_clip_dir, None, "cpu", "fp32")
    calls, out = [], {}
    load = lazy._towers._load_tower
    lazy._towers._load_tower = lambda tower: (calls.append(tower), load(tower))
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, lazy.embed_texts(TEXTS)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["text"]
    assert all(np.array_equal(out[0], out[i]) for i in range(4))


def test_random_initialisers_are_restored_after_a_load(tiny_clip_dir):
    import torch
    import torch.nn.modules.activation as activation

    before = (torch.nn.init.normal_, torch.nn.init.trunc_normal_, activation.xavier_uniform_)
    load_open_clip(tiny_clip_dir, None, "cpu")
    assert (torch.nn.init.normal_, torch.nn.init.trunc_normal_,
            activation.xavier_uniform_) == before
    torch.manual_seed(0)
    assert torch.nn.init.normal_(torch.zeros(8)).abs().sum() > 0  # draws again


def _folder_with(tiny_clip_dir: str, tmp_path, change) -> str:
    from safetensors.torch import load_file, save_file

    state = load_file(os.path.join(tiny_clip_dir, "open_clip_model.safetensors"))
    change(state)
    folder = tmp_path / "changed"
    folder.mkdir()
    shutil.copy(os.path.join(tiny_clip_dir, "open_clip_config.json"), folder)
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return str(folder)


def test_a_checkpoint_missing_a_tensor_fails_when_the_model_loads(tiny_clip_dir, tmp_path):
    folder = _folder_with(tiny_clip_dir, tmp_path, lambda s: s.pop("visual.proj"))
    with pytest.raises(LoupeError, match=r"does not fit this architecture \(missing visual.proj"):
        load_open_clip(folder, None, "cpu")


def test_a_checkpoint_with_a_foreign_tensor_fails_when_the_model_loads(tiny_clip_dir, tmp_path):
    import torch

    folder = _folder_with(tiny_clip_dir, tmp_path,
                          lambda s: s.__setitem__("decoder.weight", torch.zeros(2)))
    with pytest.raises(LoupeError, match="unexpected decoder.weight"):
        load_open_clip(folder, None, "cpu")


def test_a_tensor_of_the_wrong_shape_fails_in_one_line_when_its_tower_loads(tiny_clip_dir,
                                                                          tmp_path):
    import torch

    folder = _folder_with(tiny_clip_dir, tmp_path,
                          lambda s: s.__setitem__("ln_final.weight", torch.ones(7)))
    enc = load_open_clip(folder, None, "cpu")
    why = r"tensor ln_final.weight has shape \(7,\), this architecture's is \(32,\)"
    with pytest.raises(LoupeError, match=why) as e:
        enc.embed_texts(["a cat"])
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_vit_b32_towers_equal_the_whole_model(tmp_path_factory, precision):
    """The real ViT-B-32 architecture at full size (seeded random weights), by name with
    a weight file (the --model ViT-B-32 --pretrained FILE path) and as a model folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("vitb32")
    torch.manual_seed(0)
    state = open_clip.create_model("ViT-B-32", pretrained=None).state_dict()
    torch.save(state, root / "vit-b-32.pt")
    folder = root / "dir"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()},
              str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": open_clip.get_model_config("ViT-B-32")}))
    del state
    for model, pretrained in (("ViT-B-32", str(root / "vit-b-32.pt")), (str(folder), None)):
        lazy = load_open_clip(model, pretrained, "cpu", precision)
        assert lazy.spec.dim == 512 and lazy._towers.loaded == set()
        lazy.embed_texts(TEXTS[:1])
        assert lazy._towers.loaded == {"text"}
        _same_everything(lazy, _whole(model, pretrained, lazy.spec, precision))


TIMM_CLIP_CFG = {  # a tiny CLIP whose image tower is a timm network
    "embed_dim": 32,
    "vision_cfg": {"timm_model_name": "resnet10t", "timm_model_pretrained": False,
                   "timm_pool": "avg", "timm_proj": "linear", "image_size": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 2},
}

# A fresh process with another thread running (as LanceDB's event loop is): a plain CLIP
# first (open_clip imported without transformers and timm), then a model with a timm
# tower, then one whose config is unknown (hf-hub).
_LIGHT_THEN_TIMM = r"""
import json, sys, threading
import numpy as np
threading.Thread(target=threading.Event().wait, daemon=True).start()
from loupe.indexer.encoders.openclip import load_open_clip
from loupe.indexer.encoders.openclip_import import import_open_clip
plain = load_open_clip(sys.argv[1], None, "cpu", "fp32")
plain.embed_texts(["a cat"])
light = [m for m in ("transformers", "timm") if m in sys.modules]
timm_clip = load_open_clip(sys.argv[2], None, "cpu", "fp32")
pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
vectors = timm_clip.embed_pixels(pixels).tolist()
open_clip = import_open_clip("hf-hub:org/unknown")
print(json.dumps({"light": light, "vectors": vectors,
                  "hf": open_clip.hf_model.transformers is not None,
                  "rebound": open_clip.model.HFTextEncoder is open_clip.hf_model.HFTextEncoder
                  and open_clip.model.TimmModel is open_clip.timm_model.TimmModel
                  and open_clip.factory.CoCa is open_clip.coca_model.CoCa}))
"""


def test_open_clip_is_imported_without_transformers_and_timm_until_a_model_needs_them(
        tiny_clip_dir, tmp_path):
    import subprocess
    import sys

    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "timm-clip"
    folder.mkdir()
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TIMM_CLIP_CFG)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TIMM_CLIP_CFG}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", _LIGHT_THEN_TIMM, tiny_clip_dir, str(folder)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["light"] == []  # the plain CLIP's load imported neither
    assert got["hf"] and got["rebound"]  # and transformers came back for one that may
    enc = load_open_clip(str(folder), None, "cpu", "fp32")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(np.array(got["vectors"], np.float32), enc.embed_pixels(pixels),
                       atol=1e-6)
