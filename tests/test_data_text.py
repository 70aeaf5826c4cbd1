"""Captions from `txt` and `json` entries: the shapes accepted, the ones refused, and the length cut."""

from __future__ import annotations

import json

import pytest

from mmcl.data.label import parse_label
from mmcl.data.text import MAX_CAPTION_CHARS, decode_captions


def _json(value) -> dict:
    return {"json": json.dumps(value).encode()}


def test_json_text_may_be_one_caption_or_several():
    assert decode_captions(_json({"text": " a cat "})) == ["a cat"]
    assert decode_captions(_json({"text": ["a cat", "a small cat"], "url": "x"})) == ["a cat", "a small cat"]
    assert decode_captions(_json({"url": "x"})) is None  # no text is not an error
    assert decode_captions(_json({"text": None})) is None


@pytest.mark.parametrize("value, words", [
    ([1, 2], "json is a list"),
    ("just a string", "json is a str"),
    ({"text": 5}, "json 'text' is a int"),
    ({"text": {"x": "y"}}, "json 'text' is a dict"),
    ({"text": []}, "empty list"),
    ({"text": ["ok", 3]}, "holds a int"),
    ({"text": ["  ", ""]}, "empty caption"),
])
def test_other_json_shapes_are_refused_with_the_reason(value, words):
    with pytest.raises(ValueError, match=words):
        decode_captions(_json(value))


def test_a_megabyte_caption_is_cut():
    (caption,) = decode_captions({"txt": ("word " * 200_000).encode()})
    assert len(caption) == MAX_CAPTION_CHARS and caption.startswith("word word")


@pytest.mark.parametrize("text, label", [("0", 0), (" 7\n", 7), ("2147483647", 2**31 - 1)])
def test_labels_are_class_indices(text, label):
    assert parse_label(text.encode()) == label


@pytest.mark.parametrize("text, words", [("-3", "outside"), ("99999999999999999999", "outside"),
                                         ("2147483648", "outside"), ("three", "not an integer"),
                                         ("1.5", "not an integer"), ("", "not an integer")])
def test_other_labels_are_refused(text, words):
    with pytest.raises(ValueError, match=words):
        parse_label(text.encode())
