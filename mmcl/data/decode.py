"""Raw sample (bytes per extension) to a decoded sample: a tensor per media modality, the chosen caption, a label.

A sample that cannot be used becomes a skipped marker rather than vanishing, so streams split sample by sample
keep their order, and every item carries the failures counted since the previous item to wherever batches are made.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Iterator

import torch

from mmcl.data import audio, image, text
from mmcl.data.failures import FailureCounter, SampleError
from mmcl.data.label import parse_labels
from mmcl.data.text import TextAugmentConfig
from mmcl.data.views import SecondViewConfig, image_view_transform, view_key
from mmcl.errors import UserError

# Modalities stored as encoded bytes: each module has EXTENSIONS and placeholder(transform); see load_media.
MEDIA = {"image": image, "audio": audio}
SUPPORTED_MODALITIES = ("image", "text", "audio")
FAILURES = "__failures__"
SKIPPED = "__skipped__"


def load_media(modality: str, data: bytes, transform: Callable, image_limits: image.ImageLimits) -> torch.Tensor:
    """Encoded bytes to the tower's input. Images beyond `image_limits` are refused from their header; audio reads
    only the window its transform uses."""
    return load_media_each(modality, data, [transform], image_limits)[0]


def load_media_each(modality: str, data: bytes, transforms: list[Callable],
                    image_limits: image.ImageLimits) -> list[torch.Tensor]:
    """`load_media` through each transform: an image is decoded once for all; audio is read once per transform,
    each reading its own window."""
    if modality == "image":
        return image.load_each(data, transforms, image_limits)
    return [audio.load(data, transform) for transform in transforms]


class SampleDecoder:
    """Raw sample to {__key__, <media modality>: tensor, text: str, label: int}, each only where present; with
    `second_view`, also "<m>_view" for each of its modalities m present (see mmcl.data.views).

    `label` is a `cls` entry's class index; a `cls` holding a label list (mmcl.data.label) leaves the sample
    without one (batches then hold -1 for it, as for a sample without `cls`), since a batch's `label` is one class
    per row; a malformed `cls` fails the sample as a bad label."""

    def __init__(self, modalities: list[str], transforms: dict[str, Callable], text_augment: TextAugmentConfig | None,
                 image_limits: image.ImageLimits, second_view: SecondViewConfig | None = None):
        unknown = sorted(set(modalities) - set(SUPPORTED_MODALITIES))
        if unknown:
            raise UserError(f"data.modalities: unsupported modality {unknown}; supported: {list(SUPPORTED_MODALITIES)}")
        missing = [m for m in modalities if m in MEDIA and m not in transforms]
        if missing:
            raise UserError(f"data.modalities lists {missing} but the model has no tower for it")
        self.media = [(m, MEDIA[m], transforms[m]) for m in modalities if m in MEDIA]
        self.text = "text" in modalities
        self.modalities = modalities
        self.text_augment = text_augment
        self.image_limits = image_limits
        viewed = second_view.modalities if second_view is not None else []
        self.view_transforms = {m: image_view_transform(transforms[m], second_view.image_augment) if m == "image"
                                else transforms[m] for m in viewed if m in MEDIA}
        self.text_view = second_view.text_augment if "text" in viewed else None

    def __call__(self, raw: dict, rng: random.Random | None) -> dict:
        """`rng` (training only) picks the caption and drives text augmentation."""
        key = raw.get("__key__", "?")
        out = {"__key__": key}
        for name, module, transform in self.media:
            ext = next((e for e in module.EXTENSIONS if e in raw), None)
            if ext is None:
                continue
            try:
                viewed = [self.view_transforms[name]] if name in self.view_transforms else []
                out[name], *view = load_media_each(name, raw[ext], [transform, *viewed], self.image_limits)
                if view:
                    out[view_key(name)] = view[0]
            except Exception as err:  # decoders raise many types on corrupt bytes; the sample is unusable
                raise SampleError(key, f"undecodable {name}", f"{type(err).__name__}: {err}") from err
        if self.text:
            try:
                captions = text.decode_captions(raw)
            except (UnicodeDecodeError, ValueError) as err:
                raise SampleError(key, "bad text", str(err)) from err
            if captions is not None:
                caption = text.choose_caption(captions, rng)
                out["text"] = text.augment(caption, self.text_augment, rng) if self.text_augment else caption
                if self.text_view is not None:
                    out[view_key("text")] = text.augment(caption, self.text_view, rng)
        if "cls" in raw:
            try:
                label = parse_labels(raw["cls"])
            except (UnicodeDecodeError, ValueError) as err:
                raise SampleError(key, "bad label", str(err)) from err
            if isinstance(label, int):  # a label list has no one class: the sample is kept, without a label
                out["label"] = label
        if not any(m in out for m in self.modalities):
            raise SampleError(key, "no usable modality", f"has {sorted(k for k in raw if not k.startswith('__'))}")
        return out


def decode_stream(raws: Iterable[dict], decoder: SampleDecoder, rng: random.Random | None,
                  failures: FailureCounter) -> Iterator[dict]:
    """One item per raw sample: the decoded sample or a skipped marker, with the failures counted so far."""
    for raw in raws:
        try:
            item = decoder(raw, rng)
        except SampleError as err:
            failures(err)
            item = {SKIPPED: True}
        item[FAILURES] = failures.take()
        yield item
    leftover = failures.take()  # e.g. a truncated last shard
    if leftover:
        yield {SKIPPED: True, FAILURES: leftover}


def decode_seeded(raw: dict, decoder: SampleDecoder, seed: int, failures: FailureCounter) -> dict | None:
    """A training sample decoded with randomness of its own: the python RNG (caption choice, text augmentation)
    and torch's CPU RNG (image and audio crops, SpecAugment) are both seeded from `seed` for this sample alone, so a
    sample decodes the same whatever was decoded before it, and a resumed stream need not replay earlier samples.
    None (and the failure counted) if the sample cannot be used."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed ^ 0x5DEECE66D)
        try:
            return decoder(raw, random.Random(seed))
        except SampleError as err:
            failures(err)
            return None
