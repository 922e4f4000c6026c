"""Zero-shot tags: vocabularies, shares worked out by hand with the toy encoder, parity
with open_clip's zero-shot classifier on real photos, index-time tags and ``tag=``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.media import solid
from helpers.toys import ToyEncoder

from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.cli import main as loupe
from loupe.search.explain.labels import (
    BUILTIN,
    label_vectors,
    load_vocabulary,
    parse_vocabulary,
    shares,
)
from loupe.search.explain.tags import (
    bare,
    enable_tagging,
    ids_with_tags,
    parse_where,
    tag_rows,
    tag_vectors,
    tags_of,
    top_labels,
    update_tags,
)
from loupe.search.store import Store

COLOURS = "# template: {}\nred\ngreen\nblue\nblack\n"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return 100 * e / e.sum()


def test_vocabulary_file_format():
    v = parse_vocabulary("# a comment\n# template: a photo of {}.\n# template: art: {}\n"
                         "cat\n\n  dog  \ncat\n", "pets")
    assert v.labels == ("cat", "dog")  # blank lines and the repeated label dropped
    assert v.prompts("dog") == ["a photo of dog.", "art: dog"]
    assert parse_vocabulary("cat\ndog\n", "x").templates == ("a photo of {}.",)
    with pytest.raises(LoupeError, match="no {}"):
        parse_vocabulary("# template: a photo\ncat\ndog\n", "x")
    with pytest.raises(LoupeError, match="at least two"):
        parse_vocabulary("cat\n", "x")
    assert v.key != parse_vocabulary("cat\ndog\n", "pets").key  # the prompts are part of it


def test_shipped_vocabularies_load():
    sizes = {name: len(load_vocabulary(name).labels) for name in BUILTIN}
    assert sizes["imagenet-1k"] == 998  # 1,000 classes; "missile" and "sunglasses" repeat
    assert sizes["everyday"] >= 100 and sizes["artists"] >= 100
    assert sizes["art-movements"] >= 40
    assert load_vocabulary("imagenet-1k").labels[:2] == ("tench", "goldfish")
    assert all(len(load_vocabulary(n).templates) >= 3 for n in BUILTIN)
    with pytest.raises(LoupeError, match="no label file"):
        load_vocabulary("/nonexistent/labels.txt")


def test_shares_by_hand_with_the_toy_encoder(tmp_path):
    toy = ToyEncoder()
    vocab = parse_vocabulary(COLOURS, "colours")
    lv = label_vectors(toy, vocab)
    # An orange picture (255, 128, 0): vector (1, .502, 0, 0) / norm; the toy's label
    # vectors are the colour axes, so the cosines are the normalised components.
    img = toy.embed_images([_image((255, 128, 0))])
    norm = np.hypot(1.0, 128 / 255)
    expected = _softmax(100 * np.array([1 / norm, (128 / 255) / norm, 0.0, 0.0]))
    got = shares(img, lv, toy.logit_scale)[0]
    assert got.sum() == pytest.approx(100.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    (tags, other), = tag_vectors(img, toy, vocab, top=2)
    assert [t.label for t in tags] == ["red", "green"]
    assert sum(t.share for t in tags) + other == pytest.approx(100.0)
    # A softer scale spreads the shares but keeps the order.
    soft = shares(img, lv, 5.0)[0]
    assert soft[0] < got[0] and list(np.argsort(-soft)) == list(np.argsort(-got))


def test_top_labels_and_matching():
    tags, other = top_labels(np.array([10.0, 60.0, 30.0]), ["a", "b", "c"], top=2)
    assert [(t.label, t.share) for t in tags] == [("b", 60.0), ("c", 30.0)]
    assert other == pytest.approx(10.0)
    assert bare("A Cat") == bare("cat") == bare("the cat") == "cat"
    assert bare("an apple") == "apple" and bare("Abstract art") == "abstract art"
    assert parse_where(["tag=dog", " TAG = a cat "]) == ["dog", "a cat"]
    with pytest.raises(LoupeError, match="tag=LABEL"):
        parse_where(["kind=photo"])


def _image(rgb):
    from PIL import Image

    return Image.new("RGB", (16, 16), rgb)


def test_label_vectors_match_open_clip_zero_shot_classifier(tiny_clip_dir, corpus, tmp_path):
    """Our prompt ensemble and softmax equal open_clip's build_zero_shot_classifier on a
    (tiny, random) CLIP with a non-default logit scale, on real photos."""
    import open_clip
    import torch

    from loupe.indexer.encoders import load_encoder

    enc = load_encoder(tiny_clip_dir, None, "cpu")
    with torch.no_grad():
        enc.model.logit_scale.fill_(np.log(42.0))
    assert enc.logit_scale == pytest.approx(42.0, rel=1e-5)
    vocab = parse_vocabulary("# template: a photo of a {}.\n# template: a drawing of a {}.\n"
                             "cat\nastronaut\ncup of coffee\nrocket\nhorse\n", "x")
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the tiny model's tokenizer
    with torch.no_grad():
        ref = open_clip.build_zero_shot_classifier(
            enc.model, tokenizer, vocab.labels, [t.replace("{}", "{}") for t in vocab.templates],
            num_classes_per_batch=2, device="cpu", use_tqdm=False).numpy().T  # (C, D)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    ours = label_vectors(enc, vocab, str(tmp_path / "cache"))
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    from PIL import Image

    pics = [Image.open(corpus / "photos" / n).convert("RGB")
            for n in ("chelsea.png", "astronaut.png", "coffee.png")]
    img = enc.embed_images(pics)
    with torch.no_grad():
        logits = enc.model.logit_scale.exp() * torch.from_numpy(img) @ torch.from_numpy(ref.T)
        ref_probs = (100 * logits.softmax(dim=-1)).numpy()
    np.testing.assert_allclose(shares(img, ours, enc.logit_scale), ref_probs, atol=1e-3)
    # The cache returns the same vectors without embedding again.
    calls = []
    enc.embed_texts = lambda texts: calls.append(texts)  # type: ignore[method-assign]
    np.testing.assert_array_equal(label_vectors(enc, vocab, str(tmp_path / "cache")), ours)
    assert calls == []


@pytest.fixture
def coloured_index(tmp_path):
    root = tmp_path / "photos"
    solid(root / "red.png", (255, 0, 0))
    solid(root / "dark-red.png", (128, 0, 0))
    solid(root / "green.png", (0, 255, 0))
    solid(root / "blue.jpg", (0, 0, 255))
    labels = tmp_path / "colours.txt"
    labels.write_text(COLOURS)
    store = Store(str(tmp_path / "db"), create=True)
    toy = ToyEncoder()
    store.register_encoder(toy.spec)
    enable_tagging(store, str(labels), top=2, min_share=10.0)
    report = index_paths([str(root)], store, toy, IndexOptions(workers=0, progress=False))
    return root, store, toy, report


def _names(store, ids):
    rows = store.get_items(sorted(ids))
    return sorted(r["path"].rsplit("/", 1)[1] for r in rows.values())


def test_index_time_tags_are_stored_and_filterable(coloured_index):
    root, store, toy, report = coloured_index
    assert report.tagged == 4
    assert _names(store, ids_with_tags(store, ["red"])) == ["dark-red.png", "red.png"]
    assert _names(store, ids_with_tags(store, ["Blue"])) == ["blue.jpg"]
    assert ids_with_tags(store, ["red", "green"]) == set()
    all_tags = tags_of(store, list(store.get_items(list(ids_with_tags(store, ["red"])))))
    for tags in all_tags.values():
        assert tags[0].label == "red" and all(t.share >= 10.0 for t in tags)
    # dark red (128,0,0) is (0.502, 0, 0, 0.498) before normalising: red and black
    # nearly tie (cosines differ by 0.0055), so both pass the 10% minimum.
    dark = next(i for i in all_tags if store.get_items([i])[i]["path"].endswith("dark-red.png"))
    assert [t.label for t in all_tags[dark]] == ["red", "black"]
    r, d = 128 / 255, 1 - 128 / 255
    red_share = 100 / (1 + np.exp(-100 * (r - d) / np.hypot(r, d)))
    assert all_tags[dark][0].share == pytest.approx(red_share, abs=0.01)


def test_tags_follow_the_index(coloured_index):
    root, store, toy, _ = coloured_index
    assert update_tags(store, lambda c: toy) == 0  # nothing changed: returns at once
    (root / "green.png").unlink()
    solid(root / "more-blue.png", (0, 0, 200))
    report = index_paths([str(root)], store, toy, IndexOptions(workers=0, progress=False))
    assert report.tagged == 1
    assert _names(store, ids_with_tags(store, ["blue"])) == ["blue.jpg", "more-blue.png"]
    assert ids_with_tags(store, ["green"]) == set()
    assert tag_rows(store).num_rows == 4  # the gone file's tags went with it


def test_where_tag_in_search_cli(coloured_index, capsys):
    root, store, toy, _ = coloured_index
    capsys.readouterr()
    assert loupe(["search", "blue", "--db", store.dir, "--where", "tag=red", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert sorted(h["path"].rsplit("/", 1)[1] for h in hits) == ["dark-red.png", "red.png"]


def test_where_tag_needs_a_tagged_index(tmp_path, toy, capsys):
    solid(tmp_path / "p" / "red.png", (255, 0, 0))
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(tmp_path / "p")], store, toy, IndexOptions(workers=0, progress=False))
    assert loupe(["search", "red", "--db", store.dir, "--where", "tag=red"]) == 1
    assert "no tags" in capsys.readouterr().err


def test_tag_cli_json_sums_to_100(coloured_index, capsys):
    root, store, toy, _ = coloured_index
    capsys.readouterr()
    labels = str(root.parent / "colours.txt")
    assert loupe(["tag", str(root / "green.png"), "--db", store.dir, "--labels", labels,
                  "--top", "3", "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["tags"][0]["label"] == "green" and res["tags"][0]["share"] > 99
    assert sum(t["share"] for t in res["tags"]) + res["other"] == pytest.approx(100.0)
    # An item id uses the stored vector; the human output names the file.
    item = next(iter(ids_with_tags(store, ["blue"])))
    assert loupe(["tag", item, "--db", store.dir, "--labels", labels]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("blue.jpg") and "blue" in out.splitlines()[1]


def test_index_tags_flag_and_bad_vocabulary(tmp_path, capsys):
    solid(tmp_path / "p" / "red.png", (255, 0, 0))
    db = str(tmp_path / "db")
    assert loupe(["index", str(tmp_path / "p"), "--db", db, "--model", "nope",
                  "--tags", str(tmp_path / "missing.txt"), "--quiet"]) == 1
    assert "no label file" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_imagebind_logit_scale_is_its_text_heads(tmp_path):
    """ImageBind's zero-shot logits are vision vectors times text vectors scaled by the
    text head's learned (clamped) factor: that factor is the encoder's logit scale."""
    import torch
    from helpers.tiny_models import make_tiny_imagebind_dir

    from loupe.indexer.encoders import load_encoder

    enc = load_encoder(make_tiny_imagebind_dir(str(tmp_path / "ib")), None, "cpu")
    scaling = enc.model.modality_postprocessors["text"][1]
    with torch.no_grad():
        scaling.log_logit_scale.fill_(np.log(33.0))
        assert enc.logit_scale == pytest.approx(33.0, rel=1e-5)
        scaling.log_logit_scale.fill_(np.log(500.0))  # clamped at 100, as ImageBind does
        assert enc.logit_scale == pytest.approx(100.0)
        out = enc.model({"text": enc.tokenizer(["a dog"]).reshape(1, -1)})["text"]
    assert float(out.norm()) == pytest.approx(100.0, rel=1e-4)


def test_text_features_skip_the_padding_exactly(tiny_clip_dir):
    """open_clip's CLIP text tower is causal and pools the end-of-text token: running
    only the positions up to the last end-of-text gives the full model's features."""
    import torch

    from loupe.indexer.encoders import load_encoder
    from loupe.indexer.encoders.openclip import _used_length

    enc = load_encoder(tiny_clip_dir, None, "cpu")
    texts = ["a cat", "a photo of a large tabby cat sleeping on a red sofa by the window.",
             "", "dog + beach"]
    tokens = enc.tokenizer(texts)
    used = _used_length(enc.model, tokens)
    assert used is not None and used < tokens.shape[1]
    assert used == int(tokens.argmax(dim=-1).max()) + 1
    with torch.no_grad():
        full = enc.model.encode_text(tokens).numpy()
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(enc.embed_texts(texts), full, atol=1e-5)
    # one text at a time: each trimmed to its own length, same answers
    one = np.concatenate([enc.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(one, full, atol=1e-5)
