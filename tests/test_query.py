"""Query parsing: rclip-style arithmetic and weights."""

from __future__ import annotations

import pytest

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import Modality
from loupe.search.query import Term, parse_query


def files(*names):
    return lambda p: p in names


def test_plain_text_and_image():
    assert parse_query(["a foggy forest"], files()) == [Term(1.0, Modality.TEXT, "a foggy forest")]
    assert parse_query(["./beach.jpg"], files("./beach.jpg")) == [
        Term(1.0, Modality.IMAGE, "./beach.jpg")]


def test_sum_and_difference():
    terms = parse_query(["dog", "+", "./beach.jpg", "-", "people"], files("./beach.jpg"))
    assert terms == [Term(1.0, Modality.TEXT, "dog"), Term(1.0, Modality.IMAGE, "./beach.jpg"),
                     Term(-1.0, Modality.TEXT, "people")]


def test_weights():
    assert parse_query(["2:dog", "-", "0.5:cat"], files()) == [Term(2.0, Modality.TEXT, "dog"),
                                                               Term(-0.5, Modality.TEXT, "cat")]
    assert parse_query(["1.5:b.png"], files("b.png")) == [Term(1.5, Modality.IMAGE, "b.png")]
    # juxtaposed terms add up
    assert parse_query(["dog", "cat"], files()) == [Term(1.0, Modality.TEXT, "dog"),
                                                    Term(1.0, Modality.TEXT, "cat")]


def test_explicit_kinds():
    assert parse_query(["text:beach.jpg"], files("beach.jpg")) == [
        Term(1.0, Modality.TEXT, "beach.jpg")]
    assert parse_query(["image:x.png"], files("x.png")) == [Term(1.0, Modality.IMAGE, "x.png")]


def test_a_file_named_like_a_weight_is_an_image():
    assert parse_query(["2:x.png"], files("2:x.png")) == [Term(1.0, Modality.IMAGE, "2:x.png")]


@pytest.mark.parametrize("tokens, message", [
    ([], "empty query"),
    (["dog", "-"], "ends with an operator"),
    (["./nope.jpg"], "query image not found"),
    (["image:nope.png"], "query image not found"),
    (["text:"], "empty query term"),
    (["-", "-"], "ends with an operator"),
])
def test_errors(tokens, message):
    with pytest.raises(LoupeError, match=message):
        parse_query(tokens, files())
