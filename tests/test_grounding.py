"""Kosmos-2 grounding (search/explain/grounding/kosmos2.py): answer parsing and box
mapping on canned
answers, the image preprocessing the mapping relies on, a tiny real Kosmos-2 saved and
loaded like a local model folder, batched generation identical to the model card's
one-picture-at-a-time code, and the one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest
from PIL import Image

from loupe.indexer.errors import LoupeError
from loupe.search.explain.grounding.kosmos2 import (
    DEFAULT_GROUNDING_MODEL,
    DEFAULT_PROMPT,
    MAX_PROMPT_CHARS,
    Entity,
    Grounding,
    check_squashes,
    load_grounder,
    normalise_prompt,
    parse_generation,
)

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "horse.png")
SNOWMAN = ("<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044>"
           "<patch_index_0863></object> warming himself by<phrase> a fire</phrase><object>"
           "<patch_index_0005><patch_index_0911></object>.")


@pytest.fixture(scope="module")
def kosmos_dir(tmp_path_factory) -> str:
    from helpers.tiny_models import make_tiny_kosmos2_dir

    return make_tiny_kosmos2_dir(str(tmp_path_factory.mktemp("models") / "tiny-kosmos2"))


@pytest.fixture(scope="module")
def grounder(kosmos_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # weight hashes cached in tmp, not in ~
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return load_grounder(kosmos_dir, device="cpu")


@pytest.fixture(scope="module")
def photos(corpus) -> list[Image.Image]:
    return [Image.open(corpus / "photos" / name).convert("RGB") for name in PHOTOS]


def _close(got, want, tol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=tol)


# ---- prompts -----------------------------------------------------------------------------

def test_normalise_prompt():
    assert normalise_prompt(None) == DEFAULT_PROMPT == "<grounding>An image of"
    assert normalise_prompt("") == normalise_prompt("   ") == DEFAULT_PROMPT
    assert normalise_prompt("Find the white fish") == "<grounding>Find the white fish"
    assert normalise_prompt("  <grounding> Describe this image in detail: ") == \
        "<grounding> Describe this image in detail:"
    assert normalise_prompt(DEFAULT_PROMPT) == DEFAULT_PROMPT
    with pytest.raises(LoupeError, match="too long"):
        normalise_prompt("a" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(LoupeError, match="<image>"):
        normalise_prompt("what is in </image> this")


def test_prompt_token_limit(grounder, photos, monkeypatch):
    # 2048 text positions - (64 image tokens + <s> <image> </image>) - max_new_tokens.
    assert grounder.max_prompt_tokens(64) == 2048 - 67 - 64
    prompt = normalise_prompt("a " * 400)
    n = grounder.prompt_tokens(prompt)
    assert n > 400
    fits = 2048 - 67 - n
    grounder.check_prompt(prompt, fits)  # exactly at the limit: fine
    with pytest.raises(LoupeError, match=rf"prompt too long: {n} tokens") as e:
        grounder.check_prompt(prompt, fits + 1)
    assert "\n" not in str(e.value)

    def boom(**kw):
        raise AssertionError("generate must not run for a refused prompt")

    monkeypatch.setattr(grounder.model, "generate", boom)
    with pytest.raises(LoupeError, match="prompt too long"):
        grounder.ground(photos[:1], prompt, max_new_tokens=fits + 1)


# ---- parsing and box mapping -------------------------------------------------------------

def test_parse_snowman_640x480():
    caption, ents = parse_generation(SNOWMAN, 640, 480)
    assert caption == "An image of a snowman warming himself by a fire."
    assert [(e.phrase, e.start, e.end) for e in ents] == [("a snowman", 12, 21),
                                                          ("a fire", 41, 47)]
    assert all(caption[e.start:e.end] == e.phrase for e in ents)
    # 44 = row 1, col 12; 863 = row 26, col 31 (32 x 32 grid). Different rows and columns:
    # box from the centre of the first cell to the centre of the second, in 1/32 units
    # (12.5, 1.5) -> (31.5, 26.5), times 640/32 = 20 px across and 480/32 = 15 px down.
    assert len(ents[0].boxes) == 1
    _close(ents[0].boxes[0], (12.5 * 20, 1.5 * 15, 31.5 * 20, 26.5 * 15))
    _close(ents[0].boxes[0], (250.0, 22.5, 630.0, 397.5))
    # 5 = row 0, col 5; 911 = row 28, col 15: (5.5, 0.5) -> (15.5, 28.5).
    _close(ents[1].boxes[0], (110.0, 7.5, 310.0, 427.5))


def test_parse_multiple_boxes_tall_300x900():
    text = ("<grounding> An image of<phrase> two dogs</phrase><object><patch_index_0000>"
            "<patch_index_0031></delimiter_of_multi_objects/><patch_index_0100>"
            "<patch_index_0100></delimiter_of_multi_objects/><patch_index_0002>"
            "<patch_index_0098></object> and<phrase> a ball</phrase><object><patch_index_0033>"
            "<patch_index_0290></object>.")
    caption, ents = parse_generation(text, 300, 900)
    assert caption == "An image of two dogs and a ball."
    assert [(e.phrase, e.start, e.end) for e in ents] == [("two dogs", 12, 20),
                                                          ("a ball", 25, 31)]
    cw, ch = 300 / 32, 900 / 32  # 9.375 x 28.125 px cells
    dogs = ents[0].boxes
    assert len(dogs) == 3
    # 0 -> 31: one row (row 0, cols 0..31): whole cells, the full width of the top row.
    _close(dogs[0], (0.0, 0.0, 300.0, 28.125))
    # 100 -> 100: one cell (row 3, col 4): that cell.
    _close(dogs[1], (4 * cw, 3 * ch, 5 * cw, 4 * ch))
    _close(dogs[1], (37.5, 84.375, 46.875, 112.5))
    # 2 -> 98: one column (col 2, rows 0..3): whole cells.
    _close(dogs[2], (18.75, 0.0, 28.125, 112.5))
    # 33 (row 1, col 1) -> 290 (row 9, col 2): cell centres.
    _close(ents[1].boxes[0], (1.5 * cw, 1.5 * ch, 2.5 * cw, 9.5 * ch))
    _close(ents[1].boxes[0], (14.0625, 42.1875, 23.4375, 267.1875))


def test_parse_matches_post_process_generation(grounder):
    """Same caption and spans as the processor; boxes = its normalised boxes x size."""
    raw = ("<s> <image>. the, to and of as in I that' for is was- on’ it with The as at bet he "
           "</image>" + SNOWMAN)
    caption, ents = parse_generation(raw, 300, 900)
    want_caption, want = grounder.processor.post_process_generation(raw)
    assert caption == want_caption
    assert [(e.phrase, (e.start, e.end)) for e in ents] == [(p, s) for p, s, _ in want]
    for e, (_, _, boxes) in zip(ents, want, strict=True):
        _close(e.boxes[0], (boxes[0][0] * 300, boxes[0][1] * 900,
                            boxes[0][2] * 300, boxes[0][3] * 900))


def test_parse_without_entities():
    assert parse_generation("<grounding> An image of a cat.", 10, 10) == ("An image of a cat.",
                                                                           [])


def test_grounding_dict_round_trip():
    caption, ents = parse_generation(SNOWMAN, 640, 480)
    g = Grounding(caption, ents, DEFAULT_PROMPT, DEFAULT_GROUNDING_MODEL, 640, 480, SNOWMAN)
    d = json.loads(json.dumps(g.to_dict()))
    assert d["entities"][0] == {"phrase": "a snowman", "start": 12, "end": 21,
                                "boxes": [[250.0, 22.5, 630.0, 397.5]]}
    back = Grounding.from_dict(d)
    assert back == g
    assert isinstance(back.entities[0], Entity) and isinstance(back.entities[0].boxes[0], tuple)


# ---- what the model sees: the whole picture squashed, not a centre crop ------------------

def _strip_image(size, horizontal: bool) -> Image.Image:
    """Blue picture with a red strip along the left (or top) 10 %."""
    im = Image.new("RGB", size, (0, 0, 255))
    w, h = size
    im.paste((255, 0, 0), (0, 0, w // 10, h) if horizontal else (0, 0, w, h // 10))
    return im


def test_hub_image_processor_squashes_the_whole_picture(kosmos_dir):
    from helpers.tiny_models import KOSMOS2_HUB_PREPROCESSOR_CONFIG
    from transformers import AutoProcessor, CLIPImageProcessor

    hub = CLIPImageProcessor(**KOSMOS2_HUB_PREPROCESSOR_CONFIG)
    saved = AutoProcessor.from_pretrained(kosmos_dir).image_processor  # round trip
    for ip in (hub, saved):
        assert (ip.size.height, ip.size.width, ip.size.shortest_edge) == (224, 224, None)
        assert (ip.crop_size.height, ip.crop_size.width) == (224, 224)
        check_squashes(ip)
        # 640x480, red left 10 %: squashed, columns 0..21 of 224 are red; a shortest-edge
        # resize (298x224) + centre crop would cut 37 columns and lose the strip.
        px = ip(_strip_image((640, 480), True), return_tensors="pt")["pixel_values"][0]
        assert px.shape == (3, 224, 224)
        assert px[0, 112, 5] > 1 and px[2, 112, 5] < 0  # red
        assert px[0, 112, 40] < 0 and px[2, 112, 40] > 1  # blue
        # 300x900, red top 10 %: rows 0..21 red.
        px = ip(_strip_image((300, 900), False), return_tensors="pt")["pixel_values"][0]
        assert px[0, 5, 112] > 1 and px[0, 40, 112] < 0


def test_cropping_image_processor_is_refused():
    from transformers import CLIPImageProcessor

    with pytest.raises(LoupeError, match="centre-crops"):
        check_squashes(CLIPImageProcessor(size={"shortest_edge": 224},
                                          crop_size={"height": 224, "width": 224}))


# ---- the tiny model end to end -----------------------------------------------------------

def test_load_local_folder(grounder, kosmos_dir):
    assert grounder.model_id == f"local-dir:{os.path.abspath(kosmos_dir)}"
    with open(os.path.join(kosmos_dir, "model.safetensors"), "rb") as f:
        assert grounder.weights_id == "sha256:" + hashlib.sha256(f.read()).hexdigest()
    assert (grounder.device, grounder.dtype) == ("cpu", "fp32")
    assert type(grounder.processor).__name__ == "Kosmos2Processor"
    assert grounder.num_image_tokens == 64


def test_ground_photos(grounder, photos, corpus):
    extra = Image.open(corpus / "photos" / "rocket.jpg")  # not RGB-converted by the caller
    images = [*photos, extra]
    out = grounder.ground(images, batch_size=2, max_new_tokens=12)  # batches of 2, 2, 1
    assert len(out) == len(images)
    for g, im in zip(out, images, strict=True):
        assert (g.width, g.height) == im.size
        assert g.prompt == DEFAULT_PROMPT and g.model == grounder.model_id
        assert g.text.startswith("<grounding> An image of") and "</image>" not in g.text
        assert g.caption.startswith("An image of")
        assert parse_generation(g.text, g.width, g.height) == (g.caption, g.entities)
        for e in g.entities:
            for x0, y0, x1, y1 in e.boxes:
                assert 0 <= x0 <= x1 <= g.width and 0 <= y0 <= y1 <= g.height
    assert grounder.ground([]) == []


def test_ground_maps_boxes_of_each_picture(grounder, photos, monkeypatch):
    """ground() decodes the answer and maps boxes to each picture's own size."""
    import torch

    answer = ("<phrase> a cat</phrase><object><patch_index_0044><patch_index_0863></object> "
              "on<phrase> a sofa</phrase><object><patch_index_0005><patch_index_0911></object>")
    tok = grounder.processor.tokenizer
    # The model emits "." glued to the text before it (encoding would make it "▁.").
    dot = tok.convert_tokens_to_ids(".")
    assert dot != tok.unk_token_id
    new = tok(answer, add_special_tokens=False)["input_ids"] + [dot, tok.eos_token_id]

    def canned(input_ids, **kw):
        return torch.cat([input_ids, torch.tensor([new] * len(input_ids))], dim=1)

    monkeypatch.setattr(grounder.model, "generate", canned)
    cat, coffee = photos[1], photos[2]
    assert cat.size == (451, 300) and coffee.size == (600, 400)
    out = grounder.ground([cat, coffee], batch_size=8)
    for g, (w, h) in zip(out, [(451, 300), (600, 400)], strict=True):
        assert g.caption == "An image of a cat on a sofa."
        assert [(e.phrase, g.caption[e.start:e.end]) for e in g.entities] == [
            ("a cat", "a cat"), ("a sofa", "a sofa")]
        _close(g.entities[0].boxes[0], (12.5 / 32 * w, 1.5 / 32 * h, 31.5 / 32 * w,
                                        26.5 / 32 * h))
        _close(g.entities[1].boxes[0], (5.5 / 32 * w, 0.5 / 32 * h, 15.5 / 32 * w,
                                        28.5 / 32 * h))


def test_batch_is_not_padded(grounder, photos):
    enc = grounder.inputs(photos, normalise_prompt("Describe this image in detail:"))
    assert bool(enc["attention_mask"].all())
    assert bool((enc["input_ids"] == enc["input_ids"][:1]).all())
    assert enc["pixel_values"].shape == (len(photos), 3, 224, 224)


@pytest.mark.parametrize("prompt", [None, "Describe this image in detail:"])
def test_batched_generation_matches_one_at_a_time_reference(grounder, kosmos_dir, photos,
                                                            prompt):
    """Loupe's batch of 4 == the model card's code run on each picture alone."""
    from transformers import AutoProcessor, Kosmos2ForConditionalGeneration

    n_new = 16
    full_prompt = normalise_prompt(prompt)
    model = Kosmos2ForConditionalGeneration.from_pretrained(kosmos_dir)  # independent copy
    processor = AutoProcessor.from_pretrained(kosmos_dir)
    reference = []
    for image in photos:
        inputs = processor(text=full_prompt, images=image, return_tensors="pt")
        generated_ids = model.generate(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            image_embeds=None,
            image_embeds_position_mask=inputs["image_embeds_position_mask"],
            use_cache=True,
            max_new_tokens=n_new,
        )
        reference.append(generated_ids[0])
    prompt_len = processor(text=full_prompt, images=photos[0])["input_ids"].__len__()

    batched = grounder.generate_ids(photos, prompt, max_new_tokens=n_new)
    assert batched.shape == (len(photos), prompt_len + n_new)
    for row, ref in zip(batched, reference, strict=True):
        assert len(ref) - prompt_len >= 10  # the answer is not just an EOS
        assert row.tolist() == ref.tolist()
    answers = {tuple(r[prompt_len:].tolist()) for r in reference}
    assert len(answers) >= 2  # the picture matters, so a mix-up would show

    got = grounder.ground(photos, prompt, batch_size=4, max_new_tokens=n_new)
    want = [processor.post_process_generation(t, cleanup_and_extract=False)
            for t in processor.batch_decode(reference, skip_special_tokens=True)]
    assert [g.text for g in got] == want


# ---- loading from the hub cache, and the errors ------------------------------------------

def test_hub_id_from_cache_offline(kosmos_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / ("models--" + DEFAULT_GROUNDING_MODEL.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(kosmos_dir, repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    g = load_grounder(device="cpu")
    assert (g.model_id, g.weights_id) == (DEFAULT_GROUNDING_MODEL, commit)


def test_missing_hub_weights_fail_fast_in_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = str(tmp_path / "empty-hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    t0 = time.monotonic()
    with pytest.raises(LoupeError) as e:
        load_grounder(device="cpu")
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert "\n" not in msg
    assert DEFAULT_GROUNDING_MODEL in msg and cache in msg
    assert "offline" in msg and "save_pretrained" in msg and "--model" in msg


def test_local_folder_errors(tmp_path):
    with pytest.raises(LoupeError, match="no such Kosmos-2 model folder"):
        load_grounder(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(LoupeError, match="not a Kosmos-2 model folder"):
        load_grounder(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(LoupeError, match="cannot load Kosmos-2 from") as e:
        load_grounder(str(tmp_path), device="cpu")
    assert "\n" not in str(e.value)


def test_dtype_errors(kosmos_dir):
    with pytest.raises(LoupeError, match="fp16 needs a CUDA device"):
        load_grounder(kosmos_dir, device="cpu", dtype="fp16")
    with pytest.raises(LoupeError, match="unknown dtype"):
        load_grounder(kosmos_dir, device="cpu", dtype="int3")


def test_bad_batch_arguments(grounder, photos):
    with pytest.raises(LoupeError, match="at least 1"):
        grounder.ground(photos, batch_size=0)
