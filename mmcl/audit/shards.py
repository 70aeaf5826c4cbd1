"""The shard set under audit: its samples named by shard and key, the record of which are poisoned, and the media
and captions of a few samples for the report."""

from __future__ import annotations

from pathlib import Path
from itertools import islice
from typing import Iterator

from mmcl.data.failures import FailureCounter
from mmcl.config import read_json
from mmcl.errors import UserError
from mmcl.eval.datasets import RawItem, ShardSource

POISON_RECORD = "poisoned.json"  # what `mmcl shards poison` writes beside the shards it poisons
SEPARATOR = "/"  # between shard and key in a tagged key; a shard's file name holds none


def split_key(tagged: str) -> tuple[str, str]:
    """(shard file name, sample key) of a key tagged by `AuditedShards`."""
    shard, _, key = tagged.partition(SEPARATOR)
    return shard, key


class AuditedShards(ShardSource):
    """A shard set whose items' keys are tagged `SHARD/KEY`: two shards may reuse a key, and the audit reports
    each sample's shard."""

    def parts(self) -> list:
        return [_TaggedPart(part, Path(url).name) for part, url in zip(super().parts(), self.urls)]

    def items(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], RawItem]:
        """The raw items (encoded media, captions) of the `wanted` (shard, key) pairs, reading only their shards."""
        found = {}
        for part in self.parts():
            if any(shard == part.shard for shard, _ in wanted):
                for item in part(FailureCounter()):
                    if split_key(item.key) in wanted:
                        found[split_key(item.key)] = item
        return found


    def media_modality(self, model_modalities: list[str], looked_at: int = 64) -> str:
        """The media an audit pairs with captions by default: image where the model has an image tower and the
        first samples hold images, else audio where they hold audio (an image-text-audio model on audio-text
        shards), else what the model has."""
        held = {m for part in self.parts()[:1] for item in islice(part(FailureCounter()), looked_at)
                for m in item.media}
        for modality in ("image", "audio"):
            if modality in model_modalities and modality in held:
                return modality
        return "image" if "image" in model_modalities else "audio"


class _TaggedPart:
    def __init__(self, part, shard: str):
        self.part, self.shard = part, shard

    def __call__(self, failures: FailureCounter) -> Iterator[RawItem]:
        for item in self.part(failures):
            item.key = f"{self.shard}{SEPARATOR}{item.key}"
            yield item


def read_poisoned(path: Path) -> set[tuple[str, str]]:
    """The (shard, key) pairs a poison record (`mmcl shards poison`'s poisoned.json) lists."""
    record = read_json(path, "a poison record")
    try:
        return {(sample["shard"], sample["key"]) for sample in record["samples"]}
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: not a poison record as `mmcl shards poison` writes it ({{\"samples\": [{{\"shard\", "
                        f"\"key\"}}, ...]}}): {type(err).__name__}: {err}") from None
