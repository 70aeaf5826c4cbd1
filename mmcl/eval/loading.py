"""Decode a source's items into batches, in loader workers, keeping each item's place in source order.

Processes, then their workers, take whole parts (shards, runs of files) round-robin, so none reads another's
bytes. A batch never spans two parts and holds a whole number of forward groups (`embed.FORWARD_ROWS` usable
items), so which items share a forward pass depends on the data alone, not on the batch size or the number of
workers. Every batch carries its items' positions `(part, index in part)` so the caller can restore source order.
Items that cannot be decoded, or lack a modality the task needs, are skipped and counted by reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch

from mmcl.data.decode import load_media
from mmcl.data.failures import FailureCounter, SampleError
from mmcl.data.image import ImageLimits
from mmcl.eval.datasets import RawItem, Source


class DecodedBatches(torch.utils.data.IterableDataset):
    """Batches of `{"position", "key", <media modality>, "text", "text_owner", "label", "label_list", "skipped"}`.

    `label` holds each item's class index (-1 for none or a label list), `label_list` each item's label list or None.

    `text` holds every caption of every item in the batch (tokenised), `text_owner` the item each belongs to; with
    every audio window (`audio_windows`), `audio` holds all windows and `audio_owner` the item of each.
    """

    def __init__(self, source: Source, modalities: list[str], transforms: dict[str, Callable], tokenizer,
                 batch_size: int, need_labels: bool, group_rows: int, image_limits: ImageLimits, rank: int = 0,
                 world_size: int = 1, audio_windows=None):
        parts = source.parts()
        self.part_indices = list(range(rank, len(parts), world_size))  # this process's share
        self.parts = [parts[i] for i in self.part_indices]
        self.modalities = modalities
        self.transforms = transforms
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size // group_rows) * group_rows
        self.need_labels = need_labels
        self.image_limits = image_limits
        self.audio_windows = audio_windows  # an AudioWindowsConfig with mode all: every window of each audio item

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        failures = FailureCounter()
        pending: list[dict] = []
        for local in range(worker, len(self.parts), workers):
            for index, item in enumerate(self.parts[local](failures)):
                sample = self._decode(item, failures)
                if sample is not None:
                    sample["position"] = (self.part_indices[local], index)
                    pending.append(sample)
                if len(pending) == self.batch_size:
                    yield self._collate(pending, failures)
                    pending = []
            if pending:  # the part's remainder: batches do not span parts
                yield self._collate(pending, failures)
                pending = []
        yield self._collate([], failures)  # the last skip counts

    def _decode(self, item: RawItem, failures: FailureCounter) -> dict | None:
        missing = [m for m in self.modalities if (item.captions is None if m == "text" else m not in item.media)]
        if self.need_labels and item.label is None:
            missing.append("label")
        if missing:
            failures.count(f"no {'/'.join(missing)}")  # expected in mixed data: the task reports it in one line
            return None
        sample = {"key": item.key, "label": item.label, "captions": item.captions}
        for m in self.modalities:
            if m == "text":
                continue
            try:
                media = item.media[m]
                data = media.read_bytes() if isinstance(media, Path) else media
                if m == "audio" and self.audio_windows is not None:
                    sample[m] = self.transforms[m].windows(data, self.audio_windows.stride_seconds,
                                                           self.audio_windows.max_seconds)
                else:
                    sample[m] = load_media(m, data, self.transforms[m], self.image_limits)
            except Exception as err:  # any decoder error means this one item is unusable
                failures(SampleError(item.key, f"undecodable {m}", f"{type(err).__name__}: {err}"))
                return None
        return sample

    def _collate(self, samples: list[dict], failures: FailureCounter) -> dict:
        batch = {
            "position": torch.tensor([s["position"] for s in samples], dtype=torch.long).reshape(-1, 2),
            "key": [s["key"] for s in samples],
            "label": torch.tensor([s["label"] if isinstance(s["label"], int) else -1 for s in samples],
                                  dtype=torch.long),
            "label_list": [s["label"] if isinstance(s["label"], tuple) else None for s in samples],
            "skipped": failures.take(),
        }
        for m in self.modalities:
            if m == "text":
                captions = [(i, c) for i, s in enumerate(samples) for c in s["captions"]]
                batch["text_owner"] = torch.tensor([i for i, _ in captions], dtype=torch.long)
                batch["text"] = self.tokenizer([c for _, c in captions]) if captions else None
            elif m == "audio" and self.audio_windows is not None:  # [windows of all items], and whose each is
                batch[m] = torch.cat([s[m] for s in samples]) if samples else None
                batch[f"{m}_owner"] = torch.tensor([i for i, s in enumerate(samples) for _ in range(len(s[m]))],
                                                   dtype=torch.long)
            else:
                batch[m] = torch.stack([s[m] for s in samples]) if samples else None
        return batch
