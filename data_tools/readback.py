"""Read a shard back and decode every entry: shared by ``verify`` (problems) and ``stats`` (descriptions).

Entries are checked with the training reader's own rules (mmcl.data: captions, labels, audio), so a set that
reads back clean is one the loader will not skip samples of.
"""

from __future__ import annotations

import io
import warnings
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from PIL import Image

from data_tools.audio import AUDIO_EXTENSIONS, check_audio_header, decode_audio
from data_tools.errors import SampleError
from data_tools.image import IMAGE_EXTENSIONS, open_image
from mmcl.data.config import ImageLimits
from mmcl.data.label import parse_labels
from mmcl.data.text import decode_captions



LOADER_LIMITS = ImageLimits()  # what the training and evaluation loaders accept by default



def tar_files(path: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(member name, sample key, extension, bytes) of each file in a tar, streamed in order; tar errors reach
    the caller."""
    with tarfile.open(path, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                key, ext = member_key(member.name)
                yield member.name, key, ext, tar.extractfile(member).read()


def member_key(name: str) -> tuple[str, str]:
    """(sample key, extension) of a tar member: webdataset's rule, the key ends at the first dot of the base name."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext

def _check_image_limits(data: bytes, name: str) -> None:
    """An image the loaders would refuse by default (data.image_limits) fails here too, before it is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            width, height = Image.open(io.BytesIO(data)).size
        except Exception:  # corrupt headers are reported by the full decode that follows
            return
    if width * height > LOADER_LIMITS.max_pixels:
        raise SampleError("too_many_pixels", f"{name}: {width}x{height} exceeds the loaders' "
                          f"data.image_limits.max_pixels={LOADER_LIMITS.max_pixels}")
    if max(width, height) > LOADER_LIMITS.max_aspect_ratio * min(width, height):
        raise SampleError("extreme_aspect_ratio", f"{name}: {width}x{height} exceeds the loaders' "
                          f"data.image_limits.max_aspect_ratio={LOADER_LIMITS.max_aspect_ratio:g}")


def _image_header(data: bytes, name: str) -> dict:
    """Image size from the header alone: what stats needs, without decoding pixels."""
    try:
        width, height = Image.open(io.BytesIO(data)).size
    except Exception as err:  # as in decoding: corrupt headers fail in many ways
        raise SampleError("bad_image", f"{name}: {err}") from None
    return {"image_width": width, "image_height": height}


def _describe_text(ext: str, data: bytes, name: str) -> dict:
    """Captions (txt, json) or the label (cls: a class index or a label list), checked as the readers check them."""
    try:
        if ext in ("txt", "json"):
            captions = decode_captions({ext: data})
            return {"captions": captions} if captions else {}
        if ext == "cls":
            return {"label": parse_labels(data)}
    except (ValueError, RecursionError) as err:  # bad UTF-8 and bad JSON are ValueErrors; RecursionError: deep nesting
        raise SampleError(f"bad_{ext}", f"{name}: {err}") from None
    return {}


def describe_entry(ext: str, data: bytes, name: str, headers_only: bool = False) -> dict:
    """Decode one entry by extension and return what stats report about it; raise SampleError if undecodable.

    ``headers_only`` reads image sizes and audio durations from headers (audio headers are still checked).
    """
    if ext in IMAGE_EXTENSIONS:
        if headers_only:
            return _image_header(data, name)
        _check_image_limits(data, name)
        img = open_image(data, name, LOADER_LIMITS.max_pixels)
        return {"image_width": img.width, "image_height": img.height}
    if ext in AUDIO_EXTENSIONS:
        if headers_only:
            return {"audio_seconds": check_audio_header(data, name)}
        wave, rate = decode_audio(data, name)
        return {"audio_seconds": wave.shape[-1] / rate}
    return _describe_text(ext, data, name)


@dataclass
class ShardReadback:
    samples: list[dict] = field(default_factory=list)  # key, extensions, decoded facts, "failures": reasons
    problems: list[str] = field(default_factory=list)  # everything wrong, each naming the shard
    damaged: bool = False  # the tar itself is cut short or corrupt, so its sample count cannot be trusted


def read_shard(path: Path, headers_only: bool = False) -> ShardReadback:
    """One description per sample and the problems found; ``headers_only`` as in describe_entry."""
    result = ShardReadback()
    samples, problems = result.samples, result.problems
    if path.stat().st_size % 512:
        result.damaged = True
        problems.append(f"{path.name}: size {path.stat().st_size} is not a whole number of tar blocks (truncated?)")
    try:
        for name, key, ext, data in tar_files(path):
            if not samples or samples[-1]["key"] != key:
                samples.append({"key": key, "extensions": [], "failures": []})
            sample = samples[-1]
            sample["extensions"].append(ext)
            try:
                sample.update(describe_entry(ext, data, f"{path.name}:{name}", headers_only))
            except SampleError as err:
                sample["failures"].append(err.reason)
                problems.append(f"{path.name}: {name} does not decode ({err.reason}: {err.detail})")
    except (tarfile.TarError, OSError, EOFError) as err:
        result.damaged = True
        problems.append(f"{path.name}: corrupt or truncated tar after {len(samples)} samples ({err})")
    return result
