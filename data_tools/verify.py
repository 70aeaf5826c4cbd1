"""``mmcl shards verify``: every shard readable, every sample decodable, counts equal to sizes.json.

A set without sizes.json that ``prepare`` did not write (plain webdataset, img2dataset, CLIP_benchmark) is
checked all the same and only gets a note: nothing in such a set promised one.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from data_tools.files import PLAN, SIZES, TMP_SUFFIX, read_json
from data_tools.overlap import find_overlap
from data_tools.readback import read_shard
from mmcl.errors import UserError


def _check_shard(path: Path) -> tuple[str, int, list[str]]:
    readback = read_shard(path)
    samples, problems = readback.samples, readback.problems
    keys = [s["key"] for s in samples]
    if len(set(keys)) != len(keys):
        problems.append(f"{path.name}: a key appears in more than one place")
    return path.name, len(samples), problems


def _read_sizes(output: Path, problems: list[str], notes: list[str]) -> dict | None:
    try:
        sizes = read_json(output / SIZES)
    except FileNotFoundError:
        if (output / PLAN).exists():  # prepare writes sizes.json last: without it the set is unfinished
            problems.append(f"{SIZES} missing: the set was never merged (unfinished prepare or parts; see `mmcl shards merge`)")
        else:
            notes.append(f"no {SIZES}, so sample counts were not compared; "
                         f"`mmcl shards stats {output} --write-sizes` writes one from the shards")
        return None
    except ValueError as err:
        problems.append(f"{SIZES}: not valid JSON ({err})")
        return None
    if not isinstance(sizes, dict):
        problems.append(f"{SIZES}: expected an object mapping shard names to sample counts")
        return None
    return sizes


def verify(output: Path, workers: int = 1, against: str | Path | None = None) -> dict:
    """Return a report; ``report["ok"]`` is False if any problem was found.

    ``against`` names a training set: a sample whose image or audio is also there is a problem too (overlap.py).
    """
    if not output.is_dir():
        raise UserError(f"{output}: not a directory")
    shards = sorted(output.glob("*.tar"))
    problems: list[str] = []
    notes: list[str] = []
    sizes = _read_sizes(output, problems, notes)
    if sizes is not None:
        names = {p.name for p in shards}
        problems += [f"{name}: listed in {SIZES} but missing" for name in sorted(set(sizes) - names)]
        problems += [f"{name}: not listed in {SIZES}" for name in sorted(names - set(sizes))]
    problems += [f"{p.name}: leftover temporary file from an interrupted run" for p in sorted(output.glob(f"*.tar.*{TMP_SUFFIX}"))]
    if workers > 1 and len(shards) > 1:
        with multiprocessing.get_context("fork").Pool(min(workers, len(shards))) as pool:
            results = pool.map(_check_shard, shards)
    else:
        results = [_check_shard(p) for p in shards]
    total = 0
    for name, count, shard_problems in results:
        total += count
        problems += shard_problems
        if sizes is not None and name in sizes and sizes[name] != count:
            problems.append(f"{name}: {count} samples read, {SIZES} says {sizes[name]}")
    if not shards:
        problems.append("no *.tar shards found")
    elif not total:
        problems.append(f"no samples: the {len(shards)} shard(s) are empty")
    overlap = find_overlap(output, Path(against)) if against is not None else None
    if overlap and overlap["overlapping"]:
        problems.append(f"{overlap['overlapping']} of {overlap['eval_samples']} samples are also in the training set "
                        f"{against} (each named in the overlap report)")
    return {"output": str(output), "shards": len(shards), "samples": total, "problems": problems, "notes": notes,
            "overlap": overlap, "ok": not problems}
