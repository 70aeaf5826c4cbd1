"""Read a shard back and decode every entry: shared by ``verify`` (problems) and ``stats`` (descriptions)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import soundfile
from PIL import Image

from data_tools.audio import AUDIO_EXTENSIONS, decode_audio
from data_tools.errors import SampleError
from data_tools.image import IMAGE_EXTENSIONS, open_image
from data_tools.text import as_captions

_NO_PIXEL_LIMIT = 1 << 62  # a reader checks what was written, whatever limit prepare used


def _media_headers(ext: str, data: bytes, name: str) -> dict:
    """Image size or audio duration from the header alone: what stats needs, without decoding pixels or frames."""
    try:
        if ext in IMAGE_EXTENSIONS:
            width, height = Image.open(io.BytesIO(data)).size
            return {"image_width": width, "image_height": height}
        return {"audio_seconds": soundfile.info(io.BytesIO(data)).duration}
    except Exception as err:  # as in decoding: corrupt headers fail in many ways
        raise SampleError("bad_image" if ext in IMAGE_EXTENSIONS else "bad_audio", f"{name}: {err}") from None


def describe_entry(ext: str, data: bytes, name: str, headers_only: bool = False) -> dict:
    """Decode one entry by extension and return what stats report about it; raise SampleError if undecodable."""
    if headers_only and ext in (*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS):
        return _media_headers(ext, data, name)
    if ext in IMAGE_EXTENSIONS:
        img = open_image(data, name, _NO_PIXEL_LIMIT)
        return {"image_width": img.width, "image_height": img.height}
    if ext in AUDIO_EXTENSIONS:
        wave, rate = decode_audio(data, name)
        return {"audio_seconds": wave.shape[0] / rate}
    try:
        text = data.decode("utf-8")
        if ext == "txt":
            return {"captions": [text]}
        if ext == "json":
            meta = json.loads(text)
            captions = as_captions(meta.get("text")) if isinstance(meta, dict) else []
            return {"captions": captions} if captions else {}
        if ext == "cls":
            return {"label": int(text)}
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
        raise SampleError(f"bad_{ext}", f"{name}: {err}") from None
    return {}


def read_shard(path: Path, headers_only: bool = False) -> tuple[list[dict], list[str]]:
    """Return one description per sample (key, extensions, decoded facts) and the problems found.

    ``headers_only`` reads image sizes and audio durations from headers instead of decoding.
    """
    samples: list[dict] = []
    problems: list[str] = []
    if path.stat().st_size % 512:
        problems.append(f"{path.name}: size {path.stat().st_size} is not a whole number of tar blocks (truncated?)")
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                # webdataset's rule: the key ends at the first dot of the file's base name.
                directory, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                data = tar.extractfile(member).read()
                if not samples or samples[-1]["key"] != key:
                    samples.append({"key": key, "extensions": []})
                sample = samples[-1]
                sample["extensions"].append(ext)
                try:
                    sample.update(describe_entry(ext, data, f"{path.name}:{member.name}", headers_only))
                except SampleError as err:
                    problems.append(f"{path.name}: {member.name} does not decode ({err.reason}: {err.detail})")
    except (tarfile.TarError, OSError, EOFError) as err:
        problems.append(f"{path.name}: corrupt or truncated tar after {len(samples)} samples ({err})")
    return samples, problems
