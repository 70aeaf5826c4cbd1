"""A sample spec: where one sample's parts come from, before anything is decoded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(slots=True)  # slots: millions of these can be held at once
class SampleSpec:
    key: str
    source: str  # what a failure message names: a path stem or "manifest.csv row 3"
    image: str | None = None
    audio: str | None = None
    text: str | None = None  # a caption file
    meta_path: str | None = None  # a sidecar json: metadata, and captions under "text"
    captions: tuple[str, ...] = ()
    label: int | tuple[int, ...] | None = None  # a tuple: a label list
    meta: dict = field(default_factory=dict)
    error: tuple[str, str] | None = None  # (reason, detail) already known from the listing

    def paths(self) -> list[str]:
        return [p for p in (self.image, self.audio, self.text, self.meta_path) if p]


def make_key(name: str) -> str:
    """webdataset splits a file name at its first dot, so a key may hold none; spaces and backslashes are awkward in tars."""
    return re.sub(r"[.\s\\]", "_", name)


def mark_duplicate_keys(specs: list[SampleSpec]) -> None:
    """The first sample with a key wins; later ones become failures naming the first."""
    first: dict[str, str] = {}
    for spec in specs:
        if spec.key in first:
            if spec.error is None:
                spec.error = ("duplicate_key", f"{spec.source}: key {spec.key!r} already used by {first[spec.key]}")
        else:
            first[spec.key] = spec.source
