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

    from loupe.indexer.encoders.imagebind import import_imagebind_model

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


# microsoft/kosmos-2-patch14-224's preprocessor_config.json (hub main), verbatim but for
# image_processor_type / processor_class: the tiny Kosmos-2 preprocesses exactly as it does.
KOSMOS2_HUB_PREPROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
    "use_square_size": True,
}

# Text the tiny Kosmos-2's sentencepiece vocabulary is trained on (offline, in a second).
_KOSMOS2_TOKENIZER_TEXT = """An image of a snowman warming himself by a fire.
A photo of an astronaut in a white space suit next to a flag.
A cat lying on a sofa with a red blanket, a dog sleeping on the floor.
A cup of coffee with foam on a wooden table, a plate of cookies.
Two people riding horses on a beach at sunset near the ocean.
A rocket launching into the blue sky over a tower and clouds.
A foggy forest with tall trees, a small house, a lake and mountains.
Describe this image in detail: a man holding a camera in front of a brick wall.
Question: what is in the sky? Answer: the moon, stars and a galaxy far away.
Find the white fish. Coins lying on a table; a motorcycle parked on the street."""


def make_tiny_kosmos2_dir(path: str, seed: int = 0) -> str:
    """Write a tiny random Kosmos-2 folder (save_pretrained layout: model, generation
    config, Kosmos2Processor with the hub's image preprocessing and an XLM-R tokenizer
    whose sentencepiece vocabulary is trained here) at ``path``; returns ``path``.

    Real architecture, 2 layers of width 32 per tower, 224 x 224 input, the real 64 image
    tokens (so the model card's processor call works unchanged) and 2048 text positions.
    Embeddings are untied and every weight jittered so that greedy answers depend on the
    picture and run on (random tied weights keep repeating one token).
    """
    import io

    import sentencepiece as spm
    import torch
    from transformers import (
        CLIPImageProcessor,
        GenerationConfig,
        Kosmos2Config,
        Kosmos2ForConditionalGeneration,
        Kosmos2Processor,
        XLMRobertaTokenizer,
    )

    os.makedirs(path, exist_ok=True)
    lines = [s for s in _KOSMOS2_TOKENIZER_TEXT.splitlines() if s.strip()] * 10
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=200, model_type="unigram",
        hard_vocab_limit=False, num_threads=1, minloglevel=2, unk_id=0, bos_id=-1, eos_id=-1)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    # XLM-R (fairseq) order: <s>=0 <pad>=1 </s>=2 <unk>=3, the pieces, <mask> last.
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces,
             ("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    # Kosmos2Processor adds <grounding>, <phrase>, ..., <patch_index_0000..1023> itself.
    processor = Kosmos2Processor(CLIPImageProcessor(**KOSMOS2_HUB_PREPROCESSOR_CONFIG),
                                 tokenizer)

    torch.manual_seed(seed)
    config = Kosmos2Config(
        text_config={"vocab_size": len(tokenizer), "embed_dim": 32, "layers": 2, "ffn_dim": 64,
                     "attention_heads": 2, "max_position_embeddings": 2048,
                     "tie_word_embeddings": False},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 224, "patch_size": 14},
        latent_query_num=64,
        tie_word_embeddings=False,
    )
    model = Kosmos2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    # The hub model's generation_config.json.
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1,
                                               no_repeat_ngram_size=3, use_cache=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
