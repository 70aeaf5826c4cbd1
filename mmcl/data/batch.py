"""Decoded samples to the DESIGN.md batch dict."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Iterator

import torch

from mmcl.data.decode import FAILURES, MEDIA, SKIPPED
from mmcl.errors import UserError


class Collator:
    """Samples to a batch: a tensor per modality, `<modality>_mask`, `__key__`, `label`, `__failures__`."""

    def __init__(self, modalities: list[str], transforms: dict[str, Callable], tokenizer):
        if "text" in modalities and tokenizer is None:
            raise UserError("data.modalities lists text but the model has no text tower (no tokenizer)")
        self.modalities = modalities
        self.tokenizer = tokenizer
        self.placeholders = {m: MEDIA[m].placeholder(transforms[m]) for m in modalities if m in MEDIA}

    def __call__(self, samples: list[dict], failures: dict[str, int]) -> dict:
        batch: dict = {"__key__": [s["__key__"] for s in samples]}
        for m in self.modalities:
            batch[f"{m}_mask"] = torch.tensor([m in s for s in samples], dtype=torch.bool)
        for m, blank in self.placeholders.items():
            batch[m] = torch.stack([s.get(m, blank) for s in samples])
        if "text" in self.modalities:
            batch["text"] = self.tokenizer([s.get("text", "") for s in samples])
        if any("label" in s for s in samples):
            batch["label"] = torch.tensor([s.get("label", -1) for s in samples], dtype=torch.long)
        batch["__failures__"] = failures
        return batch


def batched(items: Iterable[dict], size: int, collate: Collator, partial: bool) -> Iterator[dict]:
    """Batches of `size` decoded samples, skipped markers dropped and their failure counts summed (evaluation's
    batching; training batches in `mmcl.data.pipeline.TrainStream`, which also records positions).

    A full batch waits for the next sample before it is emitted, so failures met after the last sample
    still reach a batch; `partial` keeps a short last batch.
    """
    samples: list[dict] = []
    failures: Counter[str] = Counter()
    for item in items:
        failures.update(item.pop(FAILURES))
        if SKIPPED in item:
            continue
        if len(samples) == size:
            yield collate(samples, dict(failures))
            samples, failures = [], Counter()
        samples.append(item)
    if samples and (partial or len(samples) == size):
        yield collate(samples, dict(failures))
