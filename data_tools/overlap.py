"""Evaluation samples that a training set also holds: the same image or audio file (sha256 of its bytes), or the
same picture re-encoded, resized or converted (perceptual hashes at most ``PHASH_DISTANCE`` bits apart).

Hashes come from each set's manifest.parquet, written by ``prepare`` (of the source files), or else are computed
from the shards (of the stored files; slower, as every image is decoded). The evaluation set's hashes are held in
memory and the training set's are streamed, so memory grows with the evaluation set only.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet
from PIL import Image

from data_tools.audio import AUDIO_EXTENSIONS
from data_tools.files import MANIFEST
from data_tools.fingerprints import (COLOUR_DISTANCE, PHASH_DISTANCE, colour_distance, image_colours, image_phash,
                                    sha256)
from data_tools.image import IMAGE_EXTENSIONS
from data_tools.readback import tar_files
from mmcl.errors import UserError

# The 63 bits cut into PHASH_DISTANCE + 1 bands: two hashes that close agree on a whole band (pigeonhole), so
# only pairs sharing a band value are compared.
_BAND_EDGES = (0, 13, 26, 39, 51, 63)
assert len(_BAND_EDGES) - 1 > PHASH_DISTANCE
_CHUNK = 8192  # training hashes compared at once: bounds the candidate pairs in memory
_COLUMNS = ["key", "shard", "status", "image_sha256", "audio_sha256", "image_phash", "image_colours"]
_EXACT = {"image_sha256": "same image file", "audio_sha256": "same audio file"}

# key, shard, image sha256, audio sha256, image phash, image colours
Row = tuple[str, str, str | None, str | None, int | None, bytes | None]


def _from_manifest(path: Path) -> Iterator[list[Row]]:
    for batch in pyarrow.parquet.ParquetFile(path).iter_batches(columns=_COLUMNS):
        yield [(r["key"], r["shard"], r["image_sha256"], r["audio_sha256"], r["image_phash"], r["image_colours"])
               for r in batch.to_pylist() if r["status"] == "ok"]


def _stored_sample(key: str, shard: str, entries: dict[str, bytes]) -> Row:
    image = next((entries[e] for e in IMAGE_EXTENSIONS if e in entries), None)
    audio = next((entries[e] for e in AUDIO_EXTENSIONS if e in entries), None)
    phash = colours = None
    if image is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(image))
                phash, colours = image_phash(img), image_colours(img)
        except Exception:  # an image that does not decode is verify's to report; its bytes hash still counts
            pass
    return (key, shard, None if image is None else sha256(image), None if audio is None else sha256(audio), phash,
            colours)


def _from_shards(folder: Path) -> Iterator[list[Row]]:
    """One list per shard; a corrupt tar yields what precedes the damage (verify reports it)."""
    for path in sorted(folder.glob("*.tar")):
        rows, key, entries = [], None, {}
        try:
            for _, name, ext, data in tar_files(path):
                if name != key and key is not None:
                    rows.append(_stored_sample(key, path.name, entries))
                    entries = {}
                key, entries[ext] = name, data
        except (tarfile.TarError, OSError, EOFError):
            pass
        if key is not None:
            rows.append(_stored_sample(key, path.name, entries))
        yield rows


def _hashes(folder: Path, flag: str) -> tuple[Iterator[list[Row]], str]:
    if not folder.is_dir():
        raise UserError(f"{flag} {folder}: not a directory")
    manifest = folder / MANIFEST
    if manifest.exists() and set(_COLUMNS) <= set(pyarrow.parquet.read_schema(manifest).names):
        return _from_manifest(manifest), f"{MANIFEST} (hashes of the source files)"
    if not any(folder.glob("*.tar")):
        raise UserError(f"{flag} {folder}: no *.tar shards and no {MANIFEST}")
    return _from_shards(folder), "the shards (hashes of the stored files)"


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy's bitwise_count needs numpy 2)."""
    return np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _bands(values: np.ndarray) -> list[np.ndarray]:
    return [(values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1) for lo, hi in zip(_BAND_EDGES, _BAND_EDGES[1:])]


class _NearIndex:
    """The evaluation set's perceptual hashes, sorted per band, for finding training hashes within PHASH_DISTANCE."""

    def __init__(self, rows: list[Row]):
        self.owner = np.array([i for i, r in enumerate(rows) if r[4] is not None], dtype=np.int64)
        self.values = np.array([r[4] for r in rows if r[4] is not None], dtype=np.uint64)
        self.bands = []
        for band in _bands(self.values):
            order = np.argsort(band, kind="stable")
            self.bands.append((band[order], order))

    def pairs(self, values: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(training index, evaluation row, distance) for the pairs within PHASH_DISTANCE (a pair agreeing on
        several bands comes once per band)."""
        if not len(self.values) or not len(values):
            return
        for (sorted_band, order), band in zip(self.bands, _bands(values)):
            lo, hi = np.searchsorted(sorted_band, band, "left"), np.searchsorted(sorted_band, band, "right")
            counts = hi - lo
            train = np.repeat(np.arange(len(values)), counts)
            starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
            evals = order[starts + np.arange(len(train))]
            distance = _popcount(values[train] ^ self.values[evals])
            close = distance <= PHASH_DISTANCE
            yield from zip(train[close].tolist(), self.owner[evals[close]].tolist(), distance[close].tolist())


def _same_colours(a: bytes | None, b: bytes | None) -> bool:
    """The grey hash is blind to colour: near copies must also agree in their 4x4 colour thumbnails."""
    return a is None or b is None or colour_distance(a, b) <= COLOUR_DISTANCE


def find_overlap(eval_dir: Path, train_dir: Path) -> dict:
    """The evaluation samples whose image or audio is also in the training set, each with one training sample it
    matches (an identical file rather than a near picture, where both exist)."""
    eval_batches, eval_from = _hashes(Path(eval_dir), "evaluation set")
    train_batches, train_from = _hashes(Path(train_dir), "--against/--eval-of")
    rows = [row for batch in eval_batches for row in batch]
    exact = {column: {} for column in _EXACT}
    for i, row in enumerate(rows):
        for column, value in zip(_EXACT, row[2:4]):
            if value is not None:
                exact[column].setdefault(value, []).append(i)
    near = _NearIndex(rows)
    matches: dict[int, dict] = {}

    def keep(i: int, key: str, shard: str, how: str, rank: int) -> None:
        # rank 0: an identical file; else 1 + the hash distance: the closest training sample is the one named.
        if i not in matches or rank < matches[i]["rank"]:
            matches[i] = {"train_key": key, "train_shard": shard, "how": how, "rank": rank}

    train_samples = 0
    for batch in train_batches:
        train_samples += len(batch)
        for key, shard, *hashes in batch:
            for column, value in zip(_EXACT, hashes[:2]):
                for i in exact[column].get(value, ()) if value is not None else ():
                    keep(i, key, shard, _EXACT[column], 0)
        for start in range(0, len(batch), _CHUNK):
            chunk = [r for r in batch[start:start + _CHUNK] if r[4] is not None]
            for t, i, distance in near.pairs(np.array([r[4] for r in chunk], dtype=np.uint64)):
                if _same_colours(chunk[t][5], rows[i][5]):
                    keep(i, chunk[t][0], chunk[t][1], f"similar image: {distance} of 63 perceptual-hash bits differ",
                         1 + distance)
    return {
        "eval": str(eval_dir), "train": str(train_dir), "eval_samples": len(rows), "train_samples": train_samples,
        "hashes_from": {"eval": eval_from, "train": train_from},
        "overlapping": len(matches),
        "matches": [{"key": rows[i][0], "shard": rows[i][1], **{k: v for k, v in matches[i].items() if k != "rank"}}
                    for i in sorted(matches)],
    }


def overlap_lines(report: dict, limit: int = 10) -> list[str]:
    """A headline and up to ``limit`` matches, for printing."""
    if not report["overlapping"]:
        return [f"none of the {report['eval_samples']} samples of {report['eval']} is in {report['train']} "
                f"({report['train_samples']} samples compared)"]
    lines = [f"{report['overlapping']} of the {report['eval_samples']} samples of {report['eval']} are also in "
             f"{report['train']}:"]
    lines += [f"  {m['shard']}:{m['key']} = {m['train_shard']}:{m['train_key']} ({m['how']})"
              for m in report["matches"][:limit]]
    if len(report["matches"]) > limit:
        lines.append(f"  ... and {len(report['matches']) - limit} more (--json lists them all)")
    return lines
