"""Caption decoding and normalisation."""

from __future__ import annotations

import ftfy

from data_tools.errors import SampleError


def decode_caption_file(data: bytes, source: str) -> str:
    """A caption file must be UTF-8; anything else is reported rather than guessed at."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SampleError("bad_text", f"{source}: not UTF-8 ({err.reason} at byte {err.start})") from None


def is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (decoded with ``surrogateescape``, as file names are)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """Show undecodable bytes (as ``surrogateescape`` kept them) as ``\\xe9`` so any UTF-8 field can hold them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def as_captions(value, source: str) -> list[str]:
    """A caption cell may hold nothing, one caption, or a list of them; any other type (a number, an object) is a
    malformed row, never a caption made up from its repr."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SampleError("bad_caption", f"{source}: caption {repr(value)[:40]} is a {type(value).__name__}, "
                      "expected a string or a list of strings")


def normalize_caption(text: str, fix_unicode: bool = True) -> str:
    """Repair mojibake (ftfy) and collapse runs of whitespace, newlines included, to one space."""
    if fix_unicode:
        text = ftfy.fix_text(text)
    return " ".join(text.split())


def normalize_captions(captions: list[str], fix_unicode: bool, source: str) -> list[str]:
    """Normalise every caption; an empty one is an error (a missing caption is not)."""
    out = [normalize_caption(c, fix_unicode) for c in captions]
    if any(not c for c in out):
        raise SampleError("empty_caption", source)
    return out
