"""WebDataset shards to batches of the DESIGN.md batch dict.

Training, per loader worker:
  exact epochs   this rank's shards (one epoch-seeded order on all ranks) ▶ every num_workers-th shard ▶ tar samples
  resampled      per source: shards drawn with replacement ▶ tar samples; sources mixed by weight
  ▶ shuffle buffer of raw bytes ▶ decode + transform ▶ batches (a resampled epoch stops at its sample budget)
Evaluation: every worker reads every shard and decodes every (ranks x workers)-th sample; the loader's round-robin
over workers then restores file order, and batches (last one partial) are made in the calling process.
"""

from __future__ import annotations

import functools
import math
from itertools import islice
from typing import Callable

import torch
import webdataset as wds

from mmcl.data.batch import Collator, batched
from mmcl.data.config import DataConfig
from mmcl.data.decode import SampleDecoder, decode_stream
from mmcl.data.failures import FailureCounter
from mmcl.data.shards import expand_urls, seeded_rng, shards_for_rank
from mmcl.data.streams import mix, read_shards, resampled, worker_slot


class TrainStream(torch.utils.data.IterableDataset):
    """One loader worker's training batches; the worker's index is known only once iteration starts."""

    def __init__(self, cfg: DataConfig, sources: list[list[str]], decoder: SampleDecoder, collate: Collator, *,
                 epoch: int, seed: int, rank: int, world_size: int):
        self.cfg, self.sources, self.decoder, self.collate = cfg, sources, decoder, collate
        self.ids = (seed, epoch, rank)
        if cfg.resampled:
            self.rank_batches = math.ceil(cfg.samples_per_epoch / (cfg.batch_size * world_size))
        else:
            self.rank_urls = shards_for_rank([u for urls in sources for u in urls], epoch=epoch, seed=seed,
                                             rank=rank, world_size=world_size, num_workers=cfg.num_workers)

    def __iter__(self):
        worker, num_workers = worker_slot()
        ids = (*self.ids, worker)
        failures = FailureCounter()
        if self.cfg.resampled:
            streams = [resampled(urls, seeded_rng("resample", *ids, i), failures) for i, urls in enumerate(self.sources)]
            raws = mix(streams, [s.weight for s in self.cfg.shard_sources()], seeded_rng("mix", *ids))
        else:
            raws = read_shards(self.rank_urls[worker::num_workers], failures)
        raws = wds.shuffle(self.cfg.shuffle_buffer, initial=self.cfg.shuffle_buffer, rng=seeded_rng("shuffle", *ids))(raws)
        items = decode_stream(raws, self.decoder, seeded_rng("decode", *ids), failures)
        batches = batched(items, self.cfg.batch_size, self.collate, partial=False)
        if self.cfg.resampled:  # the rank's budget, split as evenly as whole batches allow
            batches = islice(batches, self.rank_batches // num_workers + (worker < self.rank_batches % num_workers))
        yield from batches


class EvalStream(torch.utils.data.IterableDataset):
    """One loader worker's share of the evaluation samples, decoded one by one, in file order."""

    def __init__(self, urls: list[str], decoder: SampleDecoder, *, rank: int, world_size: int):
        self.urls, self.decoder, self.rank, self.world_size = urls, decoder, rank, world_size

    def __iter__(self):
        worker, num_workers = worker_slot()
        slot, slots = self.rank * num_workers + worker, self.world_size * num_workers
        failures = FailureCounter()
        # Every slot reads the same tar stream, so only the first counts unreadable shards.
        raws = read_shards(self.urls, failures if slot == 0 else lambda exn: True)
        yield from decode_stream(islice(raws, slot, None, slots), self.decoder, None, failures)


def build_loader(cfg: DataConfig, transforms: dict[str, Callable], tokenizer, *, train: bool, epoch: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> wds.WebLoader:
    """An iterable over one epoch of this rank's batch dicts.

    Training shuffles shards (per epoch, identically on every rank) and samples (per worker), seeds augmentation
    per (seed, epoch, rank, worker), and drops each worker's last partial batch. Evaluation (`train=False`) yields
    every sample once, in file order, with the last batch partial.
    """
    sources = [expand_urls(s.shards) for s in cfg.shard_sources()]
    augment = cfg.text_augment if train and cfg.text_augment.enabled else None
    decoder = SampleDecoder(cfg.modalities, transforms, augment, cfg.image_limits)
    collate = Collator(cfg.modalities, transforms, tokenizer)
    if not train:
        stream = EvalStream([u for urls in sources for u in urls], decoder, rank=rank, world_size=world_size)
        loader = wds.WebLoader(stream, batch_size=None, num_workers=cfg.num_workers)
        return loader.compose(functools.partial(batched, size=cfg.batch_size, collate=collate, partial=True))
    stream = TrainStream(cfg, sources, decoder, collate, epoch=epoch, seed=seed, rank=rank, world_size=world_size)
    # Worker w's torch RNG (image crops, audio crops, SpecAugment) is seeded with this base seed + w.
    generator = torch.Generator().manual_seed(seeded_rng("torch", seed, epoch, rank).getrandbits(63))
    return wds.WebLoader(stream, batch_size=None, num_workers=cfg.num_workers, generator=generator,
                         pin_memory=torch.cuda.is_available())
