"""WebDataset shards to batches of the DESIGN.md batch dict.

Training, per loader worker ("slot" = rank x workers + worker):
  exact epochs   the epoch's samples (shards in one epoch-seeded order on all ranks, concatenated) cut into equal
                 contiguous slots; this slot's run of samples, from its first shard's start sample (earlier samples
                 are passed over by their tar headers) to its end; at most `plan.batches` batches, the same for all
  resampled      per source: shards drawn with replacement ▶ tar samples; sources mixed by weight; the rank's
                 budget of batches split over its workers
  ▶ raw samples shuffled in blocks of data.shuffle_buffer ▶ decode + transform, each sample seeded by its own
  position ▶ batches, each carrying the worker's position after it
The process side (`TrainLoader`) takes the workers' batches in turn, whatever order they arrive in, and keeps the
position after the last batch it returned: per worker (items emitted, batches, where the current shuffle block
starts), enough to start again there without reading earlier blocks or decoding anything already consumed.
Evaluation: every worker reads every shard and decodes every (ranks x workers)-th sample; the loader's round-robin
over workers then restores file order, and batches (last one partial) are made in the calling process.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from collections import Counter, deque
from itertools import islice
from typing import Callable, Iterator

import torch
import webdataset as wds

from mmcl.data.batch import Collator, batched
from mmcl.data.config import DataConfig
from mmcl.data.decode import SampleDecoder, decode_seeded, decode_stream
from mmcl.data.failures import FailureCounter
from mmcl.data.flagged import FLAGGED, FlaggedKeys, flagged_keys
from mmcl.data.shards import EpochPlan, expand_urls, plan_epoch, seeded_rng, shard_sizes
from mmcl.data.streams import BlockShuffle, ResampledReader, SlotReader, derive_seed, read_shards, worker_slot
from mmcl.errors import UserError

log = logging.getLogger("mmcl.data")

DROPPED = "dropped to balance ranks"  # the failure-count reason for samples left out so that ranks stay equal


class TrainStream(torch.utils.data.IterableDataset):
    """One loader worker's training batches; the worker's index is known only once iteration starts.

    `start[worker]` (set by `TrainLoader.seek`) makes that worker continue from a saved position. Each batch
    carries `__worker__` and `__position__`; after its last batch a worker yields an end marker (`__end__`) with
    the failures counted since, including the samples of its slot left out of batches (`DROPPED`).
    """

    def __init__(self, cfg: DataConfig, sources: list[list[str]], decoder: SampleDecoder, collate: Collator, *,
                 epoch: int, seed: int, rank: int, world_size: int, plan: EpochPlan | None,
                 flagged: FlaggedKeys | None = None):
        self.cfg, self.sources, self.decoder, self.collate = cfg, sources, decoder, collate
        self.flagged = flagged
        self.ids, self.rank, self.plan = (seed, epoch, rank), rank, plan
        self.workers = max(1, cfg.num_workers)
        if cfg.resampled:  # the rank's budget, split as evenly as whole batches allow
            rank_batches = math.ceil(cfg.samples_per_epoch / (cfg.batch_size * world_size))
            self.quotas = [rank_batches // self.workers + (w < rank_batches % self.workers)
                           for w in range(self.workers)]
        else:  # a small data set may leave some workers without a slot (see _exact_plan): they yield nothing
            self.busy = len(plan.segments) // world_size
            self.quotas = [plan.batches if w < self.busy else 0 for w in range(self.workers)]
        self.start: list[dict | None] = [None] * self.workers

    def slot(self, worker: int) -> int:
        return self.rank * self.busy + worker

    def __iter__(self):
        worker, _ = worker_slot()
        start = self.start[worker]
        if start is not None and start["ended"]:
            return
        ids, cfg = (*self.ids, worker), self.cfg
        failures, muted = FailureCounter(), [False]

        def handler(exn: Exception) -> bool:
            return True if muted[0] else failures(exn)

        def mute(on: bool) -> None:
            muted[0] = on

        at = start["block"] if start is not None else None
        if cfg.resampled:
            reader = ResampledReader(self.sources, [s.weight for s in cfg.shard_sources()], ids, handler, at)
        else:
            reader = SlotReader(self.plan.segments[self.slot(worker)] if worker < self.busy else [], handler, at)
        items = BlockShuffle(reader, cfg.shuffle_buffer, ids, mute, emitted=start["emitted"] if start else 0)
        batches, quota = (start["batches"] if start else 0), self.quotas[worker]

        def position() -> dict:
            return {"emitted": items.emitted, "batches": batches, "block": items.position_at(items.emitted)}

        stream = iter(items)
        samples: list[dict] = []
        counts: Counter[str] = Counter()
        while batches < quota:
            raw = next(stream, None)
            if raw is None:
                break
            if self.flagged is not None and raw in self.flagged:  # passed over undecoded, and counted
                counts[FLAGGED] += 1
                continue
            sample = decode_seeded(raw, self.decoder, derive_seed("sample", *ids, items.emitted - 1), failures)
            counts.update(failures.take())
            if sample is None:
                continue
            samples.append(sample)
            if len(samples) == cfg.batch_size:
                batches += 1
                batch = self.collate(samples, dict(counts))
                samples, counts = [], Counter()
                yield {**batch, "__worker__": worker, "__position__": position()}
        # The rest of an exact slot is passed over undecoded (a resampled stream is endless: nothing is left).
        dropped = len(samples) + (0 if cfg.resampled else sum(1 for _ in stream))
        counts.update(failures.take())
        if dropped:
            counts[DROPPED] += dropped
        yield {"__end__": True, "__failures__": dict(counts), "__worker__": worker, "__position__": position()}


class TrainLoader:
    """One epoch of one process's training batches: the loader workers' batches taken in turn (a worker that has
    finished is passed over), whatever order they arrive in, so the order is a function of the positions alone.

    `position()` is where the stream stands after the last batch returned (JSON-able); `seek(position)`, before
    iterating, continues from one. Failures a worker reports after its last batch ride with the next batch
    returned, or with the epoch's last one. `batches_per_epoch` is the plan (the same on every process);
    `unused_samples()` what this process's plan holds beyond what it has returned, for when an epoch is cut short.
    """

    def __init__(self, stream: TrainStream, plan: dict, *, num_workers: int, generator: torch.Generator):
        self.stream, self.plan = stream, plan
        self.num_workers, self.generator = num_workers, generator
        self.batch_size = stream.cfg.batch_size
        self.batches_per_epoch = sum(stream.quotas)
        self._state = {"next_worker": 0, "workers": [None] * stream.workers}

    def position(self) -> dict:
        return {"plan": dict(self.plan), **copy.deepcopy(self._state)}

    def seek(self, position: dict) -> None:
        saved = position["plan"]
        changed = {k: (saved.get(k), self.plan.get(k)) for k in sorted({*saved, *self.plan})
                   if saved.get(k) != self.plan.get(k)}
        if changed or len(position["workers"]) != self.stream.workers:
            named = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise UserError(f"the saved data position belongs to another data plan ({named or 'loader workers'}); "
                            "resume with the data, data.batch_size, data.shuffle_buffer, data.num_workers, "
                            "data.drop_flagged and process count it was saved with")
        self._state = {"next_worker": position["next_worker"], "workers": copy.deepcopy(position["workers"])}

    def unused_samples(self) -> int:
        unused = 0
        for w, (at, quota) in enumerate(zip(self._state["workers"], self.stream.quotas)):
            if at is not None and at["ended"]:
                continue
            if self.stream.plan is None:
                unused += (quota - (at["batches"] if at else 0)) * self.batch_size
            else:
                unused += self.stream.plan.slot_samples[self.stream.slot(w)] - (at["emitted"] if at else 0)
        return unused

    def __iter__(self) -> Iterator[dict]:
        state = copy.deepcopy(self._state)
        workers = self.stream.workers
        self.stream.start = copy.deepcopy(state["workers"])
        loader = torch.utils.data.DataLoader(self.stream, batch_size=None, num_workers=self.num_workers,
                                             generator=self.generator, pin_memory=torch.cuda.is_available())
        arrivals = iter(loader)
        queues = [deque() for _ in range(workers)]

        def take(worker: int) -> dict:
            while not queues[worker]:
                item = next(arrivals, None)
                if item is None:
                    raise RuntimeError(f"loader worker {worker} stopped without finishing its stream")
                queues[item["__worker__"]].append(item)
            return queues[worker].popleft()

        def turn() -> int | None:
            first = state["next_worker"]
            return next((w % workers for w in range(first, first + workers)
                         if not (state["workers"][w % workers] or {}).get("ended")), None)

        held, carried = None, Counter()
        try:
            while True:
                worker = turn()
                item = take(worker) if worker is not None else None
                if item is not None:
                    del item["__worker__"]
                    at = {**item.pop("__position__"), "ended": bool(item.pop("__end__", False))}
                    if at["ended"]:
                        state["workers"][worker], state["next_worker"] = at, (worker + 1) % workers
                        carried.update(item["__failures__"])
                        continue
                if held is not None:
                    held["__failures__"] = dict(Counter(held["__failures__"]) + carried)
                    carried = Counter()
                    self._state = copy.deepcopy(state)
                    yield held
                if item is None:
                    return
                state["workers"][worker], state["next_worker"] = at, (worker + 1) % workers
                held = item
        finally:  # an epoch left early stops its worker processes now, not when garbage is collected
            shutdown = getattr(arrivals, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


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


_LOGGED_PLANS: set[tuple] = set()


def _exact_plan(cfg: DataConfig, urls: list[str], *, epoch: int, seed: int, rank: int,
                world_size: int) -> EpochPlan:
    workers = max(1, cfg.num_workers)
    sizes = shard_sizes(urls)
    # With too few samples for a batch per worker, fewer workers per process take slots and the rest stay idle.
    busy = min(workers, max(1, sum(sizes) // (world_size * cfg.batch_size)))
    plan = plan_epoch(urls, sizes, epoch=epoch, seed=seed, slots=world_size * busy, batch_size=cfg.batch_size)
    if plan.batches == 0:
        raise UserError(
            f"{plan.samples} sample(s) in {len(urls)} shard(s) cannot give each of {world_size} process(es) a batch "
            f"of {cfg.batch_size}: need at least {world_size * cfg.batch_size}; add data or lower data.batch_size"
        )
    key = (tuple(urls), plan.samples, world_size, workers, cfg.batch_size)
    if rank == 0 and key not in _LOGGED_PLANS:
        _LOGGED_PLANS.add(key)
        log.info("each epoch: %d samples in %d shard(s) over %d process(es) x %d loader worker(s): %d batches of %d "
                 "per process; %d sample(s) beyond equal whole batches are dropped (counted as %r)",
                 plan.samples, len(urls), world_size, busy, plan.batches * busy, cfg.batch_size,
                 plan.dropped, DROPPED)
    return plan


def build_loader(cfg: DataConfig, transforms: dict[str, Callable], tokenizer, *, train: bool, epoch: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
    """An iterable over one epoch of this rank's batch dicts.

    Training (a `TrainLoader`, which can report and seek its position): every rank takes the same number of batches
    per epoch. Exact epochs read each sample at most once, in a per-epoch shard order shared by all ranks, and drop
    (counting them under "dropped to balance ranks") the samples beyond what equal whole batches per rank and
    loader worker can hold; resampled epochs take the rank's share of data.samples_per_epoch. Samples are shuffled
    in blocks of data.shuffle_buffer and each is augmented with its own seed, from (seed, epoch, rank, worker,
    position). Evaluation (`train=False`) yields every sample once, in file order, with the last batch partial.
    """
    sources = [expand_urls(s.shards) for s in cfg.shard_sources()]
    augment = cfg.text_augment if train and cfg.text_augment.enabled else None
    views = cfg.second_view if train else None
    decoder = SampleDecoder(cfg.modalities, transforms, augment, cfg.image_limits, views)
    collate = Collator(cfg.modalities, transforms, tokenizer, views.modalities if views is not None else [])
    if not train:
        stream = EvalStream([u for urls in sources for u in urls], decoder, rank=rank, world_size=world_size)
        loader = wds.WebLoader(stream, batch_size=None, num_workers=cfg.num_workers)
        return loader.compose(functools.partial(batched, size=cfg.batch_size, collate=collate, partial=True))
    workers = max(1, cfg.num_workers)
    fingerprint = {"batch_size": cfg.batch_size, "shuffle_buffer": cfg.shuffle_buffer, "slots": world_size * workers}
    flagged = flagged_keys(cfg.drop_flagged) if cfg.drop_flagged is not None else None
    if flagged is not None:
        fingerprint["drop_flagged"] = flagged.fingerprint()
        if rank == 0 and ("flagged", fingerprint["drop_flagged"]) not in _LOGGED_PLANS:
            _LOGGED_PLANS.add(("flagged", fingerprint["drop_flagged"]))
            log.info("data.drop_flagged: %d sample(s) of %s scored by %s are passed over (counted as %r)",
                     len(flagged), cfg.drop_flagged.scores, cfg.drop_flagged.score, FLAGGED)
    if cfg.resampled:
        plan = None
        fingerprint["samples_per_epoch"] = cfg.samples_per_epoch
    else:
        plan = _exact_plan(cfg, [u for urls in sources for u in urls], epoch=epoch, seed=seed, rank=rank,
                           world_size=world_size)
        fingerprint["samples"] = plan.samples
    stream = TrainStream(cfg, sources, decoder, collate, epoch=epoch, seed=seed, rank=rank, world_size=world_size,
                         plan=plan, flagged=flagged)
    # Seeds the loader's worker processes without drawing from the global torch RNG (each sample seeds its own).
    generator = torch.Generator().manual_seed(seeded_rng("torch", seed, epoch, rank).getrandbits(63))
    return TrainLoader(stream, fingerprint, num_workers=cfg.num_workers, generator=generator)
