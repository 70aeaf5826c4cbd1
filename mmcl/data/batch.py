"""Decoded samples to the DESIGN.md batch dict."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Iterator

import torch

from mmcl.data.decode import FAILURES, MEDIA, SKIPPED
from mmcl.data.views import view_key
from mmcl.errors import UserError


class Collator:
    """Samples to a batch: a tensor per modality, `<modality>_mask`, `__key__`, `label`, `__failures__`; for each
    modality in `views`, its second view as `<modality>_view` (and its mask, equal to the modality's)."""

    def __init__(self, modalities: list[str], transforms: dict[str, Callable], tokenizer, views: list[str] = ()):
        if "text" in modalities and tokenizer is None:
            raise UserError("data.modalities lists text but the model has no text tower (no tokenizer)")
        self.tokenizer = tokenizer
        # (key the sample holds, the modality it is an input of): each modality, then each second view
        self.keys = [(m, m) for m in modalities] + [(view_key(m), m) for m in views]
        self.placeholders = {m: MEDIA[m].placeholder(transforms[m]) for m in modalities if m in MEDIA}

    def __call__(self, samples: list[dict], failures: dict[str, int]) -> dict:
        batch: dict = {"__key__": [s["__key__"] for s in samples]}
        for key, m in self.keys:
            batch[f"{key}_mask"] = torch.tensor([m in s for s in samples], dtype=torch.bool)
            if m in self.placeholders:
                batch[key] = torch.stack([s.get(key, self.placeholders[m]) for s in samples])
            elif m == "text":
                batch[key] = self.tokenizer([s.get(key, "") for s in samples])
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
