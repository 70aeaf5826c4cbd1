"""Build one shard sample (extension -> bytes) from a spec, with a record of what happened."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from data_tools.audio import AudioOptions, process_audio
from data_tools.errors import SampleError
from data_tools.fingerprints import sha256
from data_tools.image import ImageOptions, process_image
from data_tools.spec import SampleSpec
from data_tools.text import as_captions, decode_caption_file, normalize_captions
from mmcl.data.label import format_labels
from mmcl.data.text import captions_from_json


@dataclass(frozen=True)
class SampleOptions:
    image: ImageOptions = field(default_factory=ImageOptions)
    audio: AudioOptions = field(default_factory=AudioOptions)
    fix_unicode: bool = True


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SampleError("missing_file", path) from None
    except OSError as err:
        raise SampleError("unreadable_file", f"{path}: {err}") from None


def content_hash(spec: SampleSpec, blobs: list[bytes] | None = None) -> str:
    """sha256 over the source files and inline captions: equal content gives an equal hash."""
    digest = hashlib.sha256()
    for blob in blobs if blobs is not None else [read_file(p) for p in spec.paths()]:
        digest.update(len(blob).to_bytes(8, "little") + blob)
    for caption in spec.captions:
        digest.update(caption.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def _sidecar(data: bytes, path: str) -> tuple[dict, list[str]]:
    """A sidecar json's metadata and its captions (its `text`, shaped as the training reader requires)."""
    try:
        meta = json.loads(data.decode("utf-8"))
        captions = captions_from_json(meta) or []
    except (ValueError, RecursionError) as err:  # bad UTF-8 and bad JSON are ValueErrors; RecursionError: deep nesting
        raise SampleError("bad_json", f"{path}: {err}") from None
    meta.pop("text", None)
    return meta, captions


def build_sample(spec: SampleSpec, opts: SampleOptions) -> tuple[dict[str, bytes], dict]:
    """Return the sample for TarWriter and its manifest fields, or raise SampleError."""
    if spec.error is not None:
        raise SampleError(*spec.error)
    files = {p: read_file(p) for p in spec.paths()}
    info: dict = {"hash": content_hash(spec, list(files.values())), "source_bytes": sum(map(len, files.values()))}
    sample: dict[str, bytes] = {"__key__": spec.key}

    if spec.image:
        ext, sample[ext], image_facts = process_image(files[spec.image], spec.image, opts.image)
        info.update(image_facts, image_sha256=sha256(files[spec.image]))

    meta, sidecar_captions = _sidecar(files[spec.meta_path], spec.meta_path) if spec.meta_path else ({}, [])
    meta = {**spec.meta, **meta}
    captions = [decode_caption_file(files[spec.text], spec.text)] if spec.text else []
    captions = [*captions, *spec.captions, *sidecar_captions, *as_captions(meta.pop("text", None), spec.source)]
    captions = normalize_captions(captions, opts.fix_unicode, spec.source)
    if len(captions) == 1:
        sample["txt"] = captions[0].encode("utf-8")
    elif captions:
        meta["text"] = captions  # the contract: several captions live in json["text"]
    if captions:
        info["captions"], info["caption_chars"] = len(captions), sum(map(len, captions)) // len(captions)

    if spec.audio:
        sample["flac"], info["audio_seconds"] = process_audio(files[spec.audio], spec.audio, opts.audio)
        info["audio_sha256"] = sha256(files[spec.audio])
    if not (spec.image or spec.audio or captions):
        raise SampleError("no_content", f"{spec.source}: no image, audio or caption")
    if spec.label is not None:
        sample["cls"] = format_labels(spec.label).encode()
        info["labels" if isinstance(spec.label, tuple) else "label"] = spec.label
    if meta:
        sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")
    info["bytes"] = sum(len(v) for k, v in sample.items() if k != "__key__")
    return sample, info
