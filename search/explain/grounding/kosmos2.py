"""Kosmos-2 grounding: a caption (or an answer to a prompt) whose phrases come with boxes.

Kosmos-2 answers "<grounding>An image of" with text such as ``<phrase> a snowman</phrase>
<object><patch_index_0044><patch_index_0863></object>``: each phrase is cited by the
top-left and bottom-right cells of a 32 x 32 grid laid over the picture the model saw.
This module loads the model (hub id or local folder), runs batched greedy generation and
turns the answer into a caption plus boxes in the pixels of the original picture.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from loupe.indexer.encoders.hub import file_sha256, hub_offline, hub_reachable, resolve_device
from loupe.indexer.errors import LoupeError

DEFAULT_GROUNDING_MODEL = "microsoft/kosmos-2-patch14-224"
DEFAULT_PROMPT = "<grounding>An image of"
GROUNDING_TOKEN = "<grounding>"
# A cheap bound checked before any model is loaded; the real limit is in tokens and
# depends on the model and max_new_tokens (Grounder.max_prompt_tokens).
MAX_PROMPT_CHARS = 2000
# Tokens around the image placeholders: <s> <image> ...latent queries... </image>.
_IMAGE_FRAME_TOKENS = 3
_WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "pytorch_model.bin",
                    "pytorch_model-*-of-*.bin")
_DTYPES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
           "half": "fp16", "fp32": "fp32", "float32": "fp32", "float": "fp32"}

Box = tuple[float, float, float, float]


@dataclass
class Entity:
    """A phrase of the caption and the boxes that cite it."""

    phrase: str
    start: int  # character span of the phrase in the caption
    end: int
    boxes: list[Box] = field(default_factory=list)  # (x0, y0, x1, y1), original pixels


@dataclass
class Grounding:
    """Kosmos-2's answer about one picture."""

    caption: str  # the cleaned answer (prompt words included, as post_process_generation)
    entities: list[Entity]
    prompt: str
    model: str  # hub id, or "local-dir:<abs path>"
    width: int  # size of the picture the boxes refer to
    height: int
    text: str  # raw answer with <phrase>/<object>/<patch_index_...> tokens

    def to_dict(self) -> dict:
        """JSON-ready (boxes as lists)."""
        return {
            "caption": self.caption,
            "entities": [{"phrase": e.phrase, "start": e.start, "end": e.end,
                          "boxes": [list(b) for b in e.boxes]} for e in self.entities],
            "prompt": self.prompt,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Grounding:
        """The inverse of :meth:`to_dict`."""
        return cls(
            caption=d["caption"],
            entities=[Entity(e["phrase"], int(e["start"]), int(e["end"]),
                             [tuple(float(v) for v in b) for b in e["boxes"]])
                      for e in d["entities"]],
            prompt=d["prompt"],
            model=d["model"],
            width=int(d["width"]),
            height=int(d["height"]),
            text=d["text"],
        )


def normalise_prompt(prompt: str | None) -> str:
    """The prompt Kosmos-2 gets: None/blank -> DEFAULT_PROMPT; "<grounding>" prepended to
    free-form prompts that lack it (so the answer cites its phrases with boxes).

    Refuses prompts over MAX_PROMPT_CHARS characters and prompts containing <image> or
    </image> (they would collide with the image placeholders); the exact token limit is
    checked by :meth:`Grounder.ground`, which knows the model.
    """
    p = (prompt or "").strip()
    if not p:
        return DEFAULT_PROMPT
    if len(p) > MAX_PROMPT_CHARS:
        raise LoupeError(f"prompt too long ({len(p)} characters; at most {MAX_PROMPT_CHARS})")
    if "<image>" in p or "</image>" in p:
        raise LoupeError("a prompt cannot contain <image> or </image> (the picture goes there)")
    if not p.startswith(GROUNDING_TOKEN):
        p = GROUNDING_TOKEN + p
    return p


def parse_generation(text: str, width: int, height: int) -> tuple[str, list[Entity]]:
    """(caption, entities with boxes in pixels of a width x height picture) of an answer.

    ``text`` is the decoded answer, with or without the image part before ``</image>``;
    caption and entity spans are exactly those of ``Kosmos2Processor.
    post_process_generation`` (which gives boxes normalised to [0, 1] of the model input;
    an object with no phrase is named after its patch tokens, as there).

    Box mapping: the model input is the *whole* picture squashed to 224 x 224, not a crop.
    microsoft/kosmos-2-patch14-224's preprocessor_config.json is a CLIPImageProcessor with
    do_resize true, size {"shortest_edge": 224}, use_square_size true, do_center_crop true,
    crop_size 224 x 224, resample 3 (bicubic). use_square_size makes CLIPImageProcessor
    (transformers 5.23, models/clip/image_processing_clip.py) resize to exactly
    {"height": 224, "width": 224}, ignoring the aspect ratio, so the 224 x 224 centre crop
    that follows removes nothing (tests/test_grounding.py checks this on pixels). A
    normalised x therefore maps to x * width and y to y * height, with no offset.
    """
    from transformers.models.kosmos2.processing_kosmos2 import (
        clean_text_and_extract_entities_with_bboxes,
    )

    # What Kosmos2Processor.post_process_generation(text) does, without needing a processor.
    caption, raw = clean_text_and_extract_entities_with_bboxes(text.split("</image>")[-1])
    entities = [
        Entity(phrase, int(start), int(end),
               [(x0 * width, y0 * height, x1 * width, y1 * height) for x0, y0, x1, y1 in boxes])
        for phrase, (start, end), boxes in raw
    ]
    return caption, entities


def _size_hw(size) -> tuple[int | None, int | None, int | None]:
    """(height, width, shortest_edge) of an image processor's size (dict or SizeDict)."""
    def get(key: str) -> int | None:
        v = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return None if v is None else int(v)

    return get("height"), get("width"), get("shortest_edge")


def check_squashes(image_processor) -> None:
    """Refuse an image processor that would crop (boxes would not map to the picture)."""
    h, w, short = _size_hw(getattr(image_processor, "size", None))
    crops = bool(getattr(image_processor, "do_center_crop", False))
    ch, cw, _ = _size_hw(getattr(image_processor, "crop_size", None))
    if getattr(image_processor, "do_resize", True) and short is not None and crops:
        raise LoupeError(
            f"the Kosmos-2 image processor resizes by the shortest edge ({short}) and "
            "centre-crops, so boxes would miss the cropped borders; its config needs "
            '"size": {"height": N, "width": N} (as the hub\'s use_square_size gives)')
    if crops and (h, w) != (ch, cw):
        raise LoupeError(
            f"the Kosmos-2 image processor resizes to {h}x{w} then crops to {ch}x{cw}; "
            "boxes need the whole picture: crop_size must equal size")


class Grounder:
    """A loaded Kosmos-2 model and processor that ground pictures in batches."""

    def __init__(self, model, processor, model_id: str, weights_id: str, device: str,
                 dtype: str) -> None:
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.weights_id = weights_id
        self.device = device
        self.dtype = dtype
        self.num_image_tokens = int(model.config.latent_query_num)
        self.max_positions = int(model.config.text_config.max_position_embeddings)

    def max_prompt_tokens(self, max_new_tokens: int) -> int:
        """The longest prompt (in tokens) that leaves room for the picture and the answer."""
        return (self.max_positions - self.num_image_tokens - _IMAGE_FRAME_TOKENS
                - max_new_tokens)

    def prompt_tokens(self, prompt: str) -> int:
        """How many tokens ``prompt`` takes."""
        return len(self.processor.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def check_prompt(self, prompt: str, max_new_tokens: int) -> None:
        """Refuse a prompt too long for the model's context at this answer length."""
        n, limit = self.prompt_tokens(prompt), self.max_prompt_tokens(max_new_tokens)
        if n > limit:
            raise LoupeError(
                f"prompt too long: {n} tokens, {self.model_id} takes at most {max(limit, 0)} "
                f"with max_new_tokens={max_new_tokens} ({self.max_positions} positions, "
                f"{self.num_image_tokens + _IMAGE_FRAME_TOKENS} for the picture)")

    def inputs(self, images: Sequence[Image.Image], prompt: str) -> dict:
        """The processor's batch for ``images`` with one prompt: equal lengths, no padding.

        Left padding would shift Kosmos-2's positions during cached generation (pad tokens
        count in the cache length), so a padded batch is an error here, never silent.
        """
        enc = self.processor(text=[prompt] * len(images), images=list(images),
                             num_image_tokens=self.num_image_tokens, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if not (bool(mask.all()) and bool((ids == ids[:1]).all())):
            raise AssertionError("Kosmos-2 batch was padded: every row must be the same prompt")
        return enc

    def generate_ids(self, images: Sequence[Image.Image], prompt: str | None = None,
                     max_new_tokens: int = 64):
        """Token ids (prompt + answer, a (len(images), L) tensor on the CPU) of one batch.

        Greedy (do_sample=False, num_beams=1), use_cache=True, the model's generation
        config otherwise (the hub's sets no_repeat_ngram_size=3). Rows that end early are
        padded with the pad token after their EOS. In fp32 and fp16 the ids equal those of
        one picture at a time (tests/test_grounding.py; fp16 checked on an H200); in bf16
        a batch's different matrix tiling can flip a near-tie and so change an answer.
        """
        import torch

        prompt = normalise_prompt(prompt)
        self.check_prompt(prompt, max_new_tokens)
        enc = self.inputs(images, prompt)
        dev = self.device
        with torch.inference_mode():
            out = self.model.generate(
                pixel_values=enc["pixel_values"].to(dev, self.model.dtype),
                input_ids=enc["input_ids"].to(dev),
                attention_mask=enc["attention_mask"].to(dev),
                image_embeds=None,
                image_embeds_position_mask=enc["image_embeds_position_mask"].to(dev),
                use_cache=True,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_new_tokens,
            )
        return out.cpu()

    def ground(self, images: Sequence[Image.Image], prompt: str | None = None,
               batch_size: int = 8, max_new_tokens: int = 64) -> list[Grounding]:
        """Ground each picture with the same prompt, ``batch_size`` pictures per generate()."""
        if batch_size < 1 or max_new_tokens < 1:
            raise LoupeError("batch_size and max_new_tokens must be at least 1")
        prompt = normalise_prompt(prompt)
        self.check_prompt(prompt, max_new_tokens)
        out: list[Grounding] = []
        for i in range(0, len(images), batch_size):
            chunk = [im if im.mode == "RGB" else im.convert("RGB")
                     for im in images[i:i + batch_size]]
            ids = self.generate_ids(chunk, prompt, max_new_tokens)
            texts = self.processor.batch_decode(ids, skip_special_tokens=True)
            for im, decoded in zip(chunk, texts, strict=True):
                text = self.processor.post_process_generation(decoded, cleanup_and_extract=False)
                caption, entities = parse_generation(text, im.width, im.height)
                out.append(Grounding(caption, entities, prompt, self.model_id, im.width,
                                     im.height, text))
        return out


def _resolve_dtype(dtype: str | None, device: str) -> str:
    import torch

    on_cuda = device.startswith("cuda")
    if dtype is None:
        if not on_cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise LoupeError(f"unknown dtype {dtype!r}: use bf16, fp16 or fp32")
    if name == "fp16" and not on_cuda:
        raise LoupeError(f"fp16 needs a CUDA device (device is {device}); use fp32 or bf16")
    return name


def _weight_files(path: str) -> list[str]:
    found: list[str] = []
    for pattern in _WEIGHT_PATTERNS:
        found.extend(sorted(glob.glob(os.path.join(glob.escape(path), pattern))))
    return found


def _weights_id(files: list[str]) -> str:
    """sha256 of one weight file, or of the (name, sha256) list of a sharded checkpoint."""
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{os.path.basename(f)}={file_sha256(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def _looks_like_path(model: str) -> bool:
    """A folder (existing, or written like a path) rather than an "org/name" hub id."""
    return (os.path.exists(model) or model.startswith(("/", ".", "~", "local-dir:"))
            or model.count("/") > 1)


def _cached_commit(repo_id: str, cache_dir: str) -> str | None:
    """The commit of the cached snapshot of ``repo_id`` (None when it is not cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except Exception:  # an id the hub would reject is simply not cached
        return None
    if not isinstance(path, str):
        return None
    return os.path.basename(os.path.dirname(path))


def _missing(repo_id: str, cache_dir: str, why: str) -> LoupeError:
    return LoupeError(
        f"Kosmos-2 weights {repo_id!r} are not available (looked in the Hugging Face cache "
        f"{cache_dir}): {why}. Offline, pass a local copy instead: a folder saved with "
        "save_pretrained (config.json, model.safetensors, processor_config.json and the "
        "tokenizer files), e.g. --model /path/to/kosmos-2")


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    first = s.splitlines()[0] if s else ""
    return f"{type(e).__name__}: {first[:200]}{'...' if len(first) > 200 else ''}"


def load_grounder(model: str | None = None, device: str = "auto",
                  dtype: str | None = None) -> Grounder:
    """Load Kosmos-2 from a hub id (default DEFAULT_GROUNDING_MODEL) or a local folder.

    A hub id is read from the Hugging Face cache (downloaded when the hub answers; when it
    does not, a cache miss fails at once with a one-line LoupeError). A folder is the
    save_pretrained layout: config.json + weights + processor and tokenizer files.
    device "auto": CUDA when available, else CPU. dtype: bf16 on CUDA by default (fp16
    where bf16 is unsupported; fp16 may be asked for), fp32 on CPU.
    weights_id: sha256 of the weight file(s) of a folder, else the cached commit hash,
    else the hub id.
    """
    import torch
    from huggingface_hub import constants
    from transformers import AutoConfig, AutoProcessor, Kosmos2ForConditionalGeneration
    from transformers.utils import logging as hf_logging

    model = model or DEFAULT_GROUNDING_MODEL
    device = resolve_device(device)
    dt = _resolve_dtype(dtype, device)
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dt]
    kwargs: dict = {}
    if _looks_like_path(model):
        path = os.path.abspath(os.path.expanduser(model.removeprefix("local-dir:")))
        if not os.path.isdir(path):
            raise LoupeError(f"no such Kosmos-2 model folder: {path}")
        files = _weight_files(path)
        if not os.path.isfile(os.path.join(path, "config.json")) or not files:
            raise LoupeError(
                f"{path} is not a Kosmos-2 model folder: it needs config.json, weights "
                "(model.safetensors) and the processor/tokenizer files (save_pretrained)")
        source, model_id, weights_id = path, f"local-dir:{path}", _weights_id(files)
        needs_hub = online = False
    else:
        cache_dir = constants.HF_HUB_CACHE
        needs_hub = True
        online = hub_reachable()
        commit = _cached_commit(model, cache_dir)
        if not online and commit is None:
            raise _missing(model, cache_dir,
                           "not in the cache, and the hub cannot be reached (offline)")
        source, model_id = model, model
        kwargs["cache_dir"] = cache_dir

    # transformers logs warnings and progress bars while loading; ours replaces them.
    saved_level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)
    try:
        with hub_offline(needs_hub and not online):
            config = AutoConfig.from_pretrained(source, **kwargs)
            if getattr(config, "model_type", None) != "kosmos-2":
                raise LoupeError(f"{model} is not a Kosmos-2 model (model_type "
                                 f"{getattr(config, 'model_type', None)!r})")
            net = Kosmos2ForConditionalGeneration.from_pretrained(
                source, config=config, dtype=torch_dtype, **kwargs)
            processor = AutoProcessor.from_pretrained(source, **kwargs)
    except LoupeError:
        raise
    except Exception as e:  # cache misses, bad or partial files: one actionable line
        if needs_hub:
            why = ("not (fully) in the cache, and the hub cannot be reached (offline)"
                   if not online else _first_line(e))
            raise _missing(model, kwargs["cache_dir"], why) from e
        raise LoupeError(f"cannot load Kosmos-2 from {source}: {_first_line(e)}") from e
    finally:
        hf_logging.set_verbosity(saved_level)
        if bars:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)
    if type(processor).__name__ != "Kosmos2Processor":
        raise LoupeError(f"{model} has no Kosmos2Processor (found {type(processor).__name__})")
    check_squashes(processor.image_processor)
    if needs_hub:
        weights_id = _cached_commit(model, kwargs["cache_dir"]) or model
    net = net.to(device).eval()
    return Grounder(net, processor, model_id, weights_id, device, dt)

