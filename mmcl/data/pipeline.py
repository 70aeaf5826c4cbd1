"""WebDataset shards to batches of the DESIGN.md batch dict.

shards (shuffled per epoch, same order on every rank) ▶ this rank's slice ▶ this worker's slice
▶ tar members grouped into samples ▶ shuffle buffer of raw bytes ▶ decode + transform ▶ batch
"""

from __future__ import annotations

import glob
import os
import random
from typing import Callable, Iterator

import braceexpand
import torch
import webdataset as wds

from mmcl.data import image, text
from mmcl.data.config import DataConfig
from mmcl.data.failures import FailureCounter, SampleError
from mmcl.errors import UserError

SUPPORTED_MODALITIES = ("image", "text")


def expand_urls(spec: str | list[str]) -> list[str]:
    """Shard URLs from a directory (its *.tar, sorted), brace patterns, pipe: URLs or a list of these."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in specs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.tar")))
            if not found:
                raise UserError(f"{item}: directory holds no .tar shards")
            urls.extend(found)
        else:
            urls.extend(braceexpand.braceexpand(item))
    missing = [u for u in urls if "://" not in u and not u.startswith("pipe:") and not os.path.exists(u)]
    if missing:
        raise UserError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not urls:
        raise UserError(f"no shards in {spec!r}")
    return urls


def shards_for_rank(urls: list[str], *, epoch: int, seed: int, rank: int, world_size: int, num_workers: int,
                    shuffle: bool) -> list[str]:
    """This rank's shards: one epoch-seeded order shared by all ranks, then every world_size-th shard."""
    needed = world_size * max(1, num_workers)
    if len(urls) < needed:
        raise UserError(
            f"{len(urls)} shard(s) cannot feed {world_size} process(es) x {max(1, num_workers)} loader worker(s): "
            f"need at least {needed}; write more, smaller shards or lower data.num_workers"
        )
    order = list(urls)
    if shuffle:
        random.Random(seed * 100_003 + epoch).shuffle(order)
    return order[rank::world_size]


class SampleDecoder:
    """Raw tar sample to a dict of transformed modality tensors (or raw caption strings for text)."""

    def __init__(self, modalities: list[str], transforms: dict[str, Callable], rng: random.Random | None):
        unknown = sorted(set(modalities) - set(SUPPORTED_MODALITIES))
        if unknown:
            raise UserError(f"data.modalities: unsupported modality {unknown}; supported: {list(SUPPORTED_MODALITIES)}")
        missing = [m for m in modalities if m != "text" and m not in transforms]
        if missing:
            raise UserError(f"data.modalities lists {missing} but the model has no tower for it")
        self.modalities = modalities
        self.transforms = transforms
        self.rng = rng

    def __call__(self, raw: dict) -> dict:
        key = raw.get("__key__", "?")
        out = {"__key__": key}
        if "image" in self.modalities:
            ext = next((e for e in image.EXTENSIONS if e in raw), None)
            if ext is not None:
                try:
                    out["image"] = self.transforms["image"](image.decode(raw[ext]))
                except Exception as err:  # any decoder error means this one sample is unusable
                    raise SampleError(key, "undecodable image", f"{type(err).__name__}: {err}") from err
        if "text" in self.modalities:
            try:
                captions = text.decode_captions(raw)
            except (UnicodeDecodeError, ValueError) as err:
                raise SampleError(key, "bad text", str(err)) from err
            if captions is not None:
                out["text"] = text.choose_caption(captions, self.rng)
        if "cls" in raw:
            try:
                out["label"] = int(raw["cls"].decode("utf-8").strip())
            except (UnicodeDecodeError, ValueError) as err:
                raise SampleError(key, "bad label", str(err)) from err
        if not any(m in out for m in self.modalities):
            raise SampleError(key, "no usable modality", f"has {sorted(k for k in raw if not k.startswith('__'))}")
        return out


class Collator:
    """Samples to the batch dict: a tensor per modality, `<modality>_mask`, `__key__`, `label`, `__failures__`."""

    def __init__(self, modalities: list[str], transforms: dict[str, Callable], tokenizer, failures: FailureCounter):
        if "text" in modalities and tokenizer is None:
            raise UserError("data.modalities lists text but the model has no text tower (no tokenizer)")
        self.modalities = modalities
        self.tokenizer = tokenizer
        self.failures = failures
        self.image_placeholder = image.placeholder(transforms["image"]) if "image" in modalities else None

    def __call__(self, samples: list[dict]) -> dict:
        batch: dict = {"__key__": [s["__key__"] for s in samples]}
        for m in self.modalities:
            batch[f"{m}_mask"] = torch.tensor([m in s for s in samples], dtype=torch.bool)
        if "image" in self.modalities:
            batch["image"] = torch.stack([s.get("image", self.image_placeholder) for s in samples])
        if "text" in self.modalities:
            batch["text"] = self.tokenizer([s.get("text", "") for s in samples])
        if any("label" in s for s in samples):
            batch["label"] = torch.tensor([s.get("label", -1) for s in samples], dtype=torch.long)
        batch["__failures__"] = self.failures.take()
        return batch


def _worker_seeded_shuffle(bufsize: int, seed: int):
    """A shuffle stage whose RNG depends on (seed, worker), so a run is reproducible worker by worker."""

    def stage(src: Iterator[dict]) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        rng = random.Random(seed * 1_000_003 + (info.id if info is not None else 0))
        yield from wds.shuffle(bufsize, initial=bufsize, rng=rng)(src)

    return stage


def build_loader(cfg: DataConfig, transforms: dict[str, Callable], tokenizer, *, train: bool, epoch: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> torch.utils.data.DataLoader:
    """A loader over one pass of this rank's shards, yielding batch dicts.

    Training shuffles shards (per epoch, identically on every rank) and samples (per worker), and drops the
    last partial batch; evaluation keeps file order and every sample.
    """
    urls = expand_urls(cfg.train_shards)
    rank_urls = shards_for_rank(urls, epoch=epoch, seed=seed, rank=rank, world_size=world_size,
                                num_workers=cfg.num_workers, shuffle=train)
    failures = FailureCounter()
    run_seed = (seed * 1_000 + epoch) * 1_000 + rank
    stages = [
        wds.SimpleShardList(rank_urls),
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=failures),
    ]
    if train:
        stages.append(_worker_seeded_shuffle(cfg.shuffle_buffer, run_seed))
    decoder = SampleDecoder(cfg.modalities, transforms, random.Random(run_seed) if train else None)
    stages += [
        wds.map(decoder, handler=failures),
        wds.batched(cfg.batch_size, collation_fn=Collator(cfg.modalities, transforms, tokenizer, failures),
                    partial=not train),
    ]
    return wds.WebLoader(wds.DataPipeline(*stages), batch_size=None, num_workers=cfg.num_workers)
