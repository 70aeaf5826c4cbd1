"""``prepare.json``: what an output folder was prepared from, so that a rerun resumes only the same plan, and
a refused rerun says which inputs or options differ.

The fingerprint covers the options that shape shards and every sample spec (key, files, captions, label), so
shards kept from an earlier run are exactly the ones this run would write.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from data_tools.files import PLAN, read_json, write_json
from mmcl.config import flatten
from mmcl.errors import UserError

# Settings (flattened as in prepare.json) -> the flag a user sets them with.
_FLAGS = {
    "layout": "--layout",
    "shard_size": "--shard-size",
    "shard_bytes": "--shard-bytes",
    "pattern": "--pattern",
    "dedup": "--dedup",
    "options.image.size": "--image-size",
    "options.image.resize_mode": "--resize-mode",
    "options.image.only_if_bigger": "--resize-only-if-bigger",
    "options.image.format": "--image-format",
    "options.image.quality": "--image-quality",
    "options.image.max_pixels": "--max-pixels",
    "options.audio.sample_rate": "--audio-rate",
    "options.audio.mono": "--audio-mono",
    "options.audio.max_seconds": "--audio-max-seconds",
    "options.fix_unicode": "text repair (off with --no-fix-text)",
}


def fingerprint(specs, settings: dict) -> tuple[str, str]:
    """(the plan's fingerprint, the listing's alone); the first is computed as earlier versions did, so their
    outputs still resume."""
    combined = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    listing = hashlib.sha256()
    for spec in specs:
        line = json.dumps([spec.key, spec.paths(), spec.captions, spec.label, spec.error], default=str).encode()
        combined.update(line)
        listing.update(line)
    return combined.hexdigest(), listing.hexdigest()


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "unset" if value is None else str(value)


def differences(previous: dict, plan: dict) -> list[str]:
    """What differs between two plans, each as 'what old -> new', inputs first."""
    found = []
    if previous.get("source") != plan["source"]:
        found.append(f"SOURCE {previous.get('source')} -> {plan['source']}")
    if previous.get("n_samples") != plan["n_samples"]:
        found.append(f"samples listed {previous.get('n_samples')} -> {plan['n_samples']}")
    old, new = flatten(previous.get("settings", {})), flatten(plan["settings"])
    for name in [*new, *(n for n in old if n not in new)]:
        if old.get(name) != new.get(name):
            found.append(f"{_FLAGS.get(name, name)} {_shown(old.get(name))} -> {_shown(new.get(name))}")
    if not found and previous.get("listing") != plan["listing"]:
        # Same count, same options: a file, caption or label changed (or the plan predates the listing digest).
        found.append("the input's files, captions or labels changed (same number of samples)")
    return found


def check_and_write_plan(output: Path, plan: dict) -> None:
    """Refuse an output prepared from another plan, naming what differs; else (re)write prepare.json."""
    path = output / PLAN
    if path.exists():
        previous = read_json(path)
        if previous.get("fingerprint") != plan["fingerprint"]:
            raise UserError(f"{path}: this output was prepared from other inputs or options ("
                            + "; ".join(differences(previous, plan))
                            + f"), so its shards cannot be resumed; rerun with the earlier inputs and options, "
                            f"write to another --output, or remove {output} to start again")
    write_json(path, plan)
