"""Evaluation during training: every `eval.every` steps and after the last, on every process, one verdict for all.

Each process embeds its share of the evaluation data (under FSDP all of it, in step: each forward gathers the
parameters from every process); the main process writes `OUTPUT/eval/step-N.json`. A user error (a bad
`best_metric`, broken evaluation data) is raised on every process, so none is left waiting in a collective.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable

from mmcl.errors import UserError
from mmcl.eval import run_tasks, scalars
from mmcl.eval.cache import DecodedCache
from mmcl.training import checkpoints


class PeriodicEvaluator:
    def __init__(self, cfg, model, transforms: dict, tokenizer, *, device, out_dir: Path | None, rank: int,
                 world_size: int, broadcast: Callable[[object], object],
                 gathered: Callable[[], AbstractContextManager] = nullcontext, run: Callable = run_tasks):
        """`cfg` is the run's `eval` section; `out_dir` is None on processes other than the main one;
        `broadcast(obj)` returns the main process's `obj` on every process; `gathered()` is the context in which
        the model holds its full weights (FSDP); `run` is `mmcl.eval.run_tasks` or a stand-in with its signature."""
        self.cfg, self.model, self.transforms, self.tokenizer = cfg, model, transforms, tokenizer
        self.device, self.out_dir, self.rank, self.world_size = device, out_dir, rank, world_size
        self.broadcast, self.gathered, self.run = broadcast, gathered, run
        self.cache = DecodedCache(int(cfg.cache_gb * 2**30))

    def due(self, step: int, last_step: int) -> bool:
        return step % self.cfg.every == 0 or step == last_step

    def __call__(self, step: int) -> dict[str, float]:
        """The scalar results (`task/metric` → value) at `step`, the same on every process."""
        found: dict | str
        try:
            with self.gathered():
                results = self.run(self.model, self.transforms, self.tokenizer, self.cfg.tasks, self.device,
                                   self.cfg.batch_size, self.cfg.num_workers, cache=self.cache, rank=self.rank,
                                   world_size=self.world_size, image_limits=self.cfg.image_limits,
                                   bootstrap=self.cfg.bootstrap)
            found = scalars(results)
            if self.out_dir is not None:
                (self.out_dir / "eval").mkdir(exist_ok=True)
                checkpoints.write_json(self.out_dir / "eval" / f"step-{step:08d}.json", results)
            if self.cfg.best_metric is not None and self.cfg.best_metric not in found:
                raise UserError(f"eval.best_metric={self.cfg.best_metric} is not among the evaluation's metrics: "
                                + ", ".join(sorted(found)))
        except UserError as err:
            found = str(err)
        found = self.broadcast(found)
        if isinstance(found, str):
            raise UserError(found)
        return found
