"""`mmcl shards poison`: a copy of a shard set in which a seeded share of samples carries a trigger and a target
caption, for testing whether a pipeline and its data are open to a backdoor (Carlini & Terzis 2022; CleanCLIP,
Bansal et al. 2023: 75 poisoned pairs in 3 million suffice).

Every tar of SRC is rewritten member by member into OUT under the same name: members of samples not chosen are
copied byte for byte (the sample keys, order and file names stay), a chosen sample's image (or, without one, its
audio) gets the trigger and its `txt` caption becomes a target caption. Files that describe content (manifests,
statistics) are not copied, since they would describe the clean captions; `sizes.json` and the class-name and
template files are. `OUT/poisoned.json` lists every poisoned key with its shard, trigger position and the caption
it replaced.

Image triggers: `mmcl.data.triggers` (patch, blended, random_noise), shared with the `backdoor` evaluation task.
Audio trigger: a sine tone of `tone_hz` over the first `tone_seconds`, added at amplitude `tone_amplitude`.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from data_tools.readback import member_key
from mmcl.data.triggers import TRIGGERS, TriggerSpec, apply_image_trigger
from mmcl.errors import UserError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
AUDIO_EXTS = ("flac", "wav")  # formats soundfile writes back losslessly
COPIED = ("sizes.json", "classnames.txt", "zeroshot_classification_templates.txt", "nshards.txt")
RECORD = "poisoned.json"


def encode_image(image: Image.Image, ext: str) -> bytes:
    buf = io.BytesIO()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
    image.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def apply_audio_trigger(data: bytes, ext: str, spec: TriggerSpec) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    n = min(len(samples), int(round(spec.tone_seconds * rate)))
    t = np.arange(n) / rate
    samples[:n] += (spec.tone_amplitude * np.sin(2 * np.pi * spec.tone_hz * t)).astype(np.float32)[:, None]
    buf = io.BytesIO()
    soundfile.write(buf, np.clip(samples, -1, 1), rate, format=ext.upper())
    return buf.getvalue()


def _samples(tar_path: Path) -> dict[str, set[str]]:
    """Each sample key of a tar and its member extensions."""
    found: dict[str, set[str]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            if member.isfile():
                key, ext = member_key(member.name)
                found.setdefault(key, set()).add(ext.lower())
    return found


def poison(src: Path, out: Path, target_captions: list[str], spec: TriggerSpec, fraction: float | None = None,
           count: int | None = None) -> dict:
    """Write the poisoned copy of `src` into `out`; returns the record written to `out/poisoned.json`."""
    if spec.kind not in TRIGGERS:
        raise UserError(f"--trigger {spec.kind!r}: choose one of {', '.join(TRIGGERS)}")
    if (fraction is None) == (count is None):
        raise UserError("give either --fraction or --count")
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"--fraction {fraction}: must be in (0, 1]")
    if not target_captions:
        raise UserError("give a target caption (--target-caption TEXT or --target-captions FILE)")
    tars = sorted(src.glob("*.tar"))
    if not tars:
        raise UserError(f"{src}: no .tar shards")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not empty; poisoning writes a fresh copy")
    carriers = [(tar.name, key, exts) for tar in tars for key, exts in _samples(tar).items()
                if "txt" in exts and exts & set(IMAGE_EXTS + AUDIO_EXTS)]
    if not carriers:
        raise UserError(f"{src}: no sample has a caption (txt) and an image or audio file to carry a trigger")
    wanted = count if count is not None else max(1, round(fraction * len(carriers)))
    if wanted > len(carriers):
        raise UserError(f"--count {wanted}: the set has only {len(carriers)} samples with a caption and media")
    rng = random.Random(spec.seed)
    chosen = {(shard, key) for shard, key, _ in rng.sample(carriers, wanted)}
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": str(src), "trigger": asdict(spec), "target_captions": target_captions,
              "carriers": len(carriers), "samples": []}
    for tar_path in tars:
        _rewrite(tar_path, out / tar_path.name, chosen, target_captions, spec, rng, record["samples"])
    for name in COPIED:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _rewrite(src_tar: Path, out_tar: Path, chosen: set, captions: list[str], spec: TriggerSpec, rng: random.Random,
             samples: list) -> None:
    """Copy `src_tar` member by member, triggering the chosen samples' media and replacing their captions."""
    entries: dict[str, dict] = {}
    with tarfile.open(src_tar) as source, tarfile.open(out_tar, "w") as target:
        members = [m for m in source.getmembers() if m.isfile()]
        has_image = {member_key(m.name)[0] for m in members if member_key(m.name)[1].lower() in IMAGE_EXTS}
        for member in members:
            data = source.extractfile(member).read()
            key, ext = member_key(member.name)
            ext = ext.lower()
            if (src_tar.name, key) in chosen:
                entry = entries.setdefault(key, {"key": key, "shard": src_tar.name})
                if ext == "txt":
                    entry["original_caption"] = data.decode("utf-8", errors="replace")
                    entry["caption"] = rng.choice(captions)
                    data = entry["caption"].encode("utf-8")
                elif ext in IMAGE_EXTS:
                    try:
                        triggered, entry["position"] = apply_image_trigger(Image.open(io.BytesIO(data)), spec, rng)
                    except ValueError as err:
                        raise UserError(f"{src_tar.name} sample {key}: {err}") from None
                    entry["media"] = member.name
                    data = encode_image(triggered, ext)
                elif ext in AUDIO_EXTS and key not in has_image:
                    entry["media"] = member.name
                    data = apply_audio_trigger(data, ext, spec)
            info = tarfile.TarInfo(member.name)
            info.size, info.mtime, info.mode = len(data), member.mtime, member.mode
            info.uid, info.gid, info.uname, info.gname = member.uid, member.gid, member.uname, member.gname
            target.addfile(info, io.BytesIO(data))
    samples.extend(entries.values())
