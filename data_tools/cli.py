"""``mmcl shards prepare|verify|stats|merge|poison``: argument parsing only; the work lives in the modules."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_tools.audio import AudioOptions
from data_tools.fingerprints import PHASH_DISTANCE
from data_tools.image import FORMATS, RESIZE_MODES, ImageOptions
from data_tools.manifests import ManifestColumns
from data_tools.sample import SampleOptions
from mmcl.errors import UserError

_PREPARE_EPILOG = """\
examples:
  mmcl shards prepare photos/ --output shards/                 # photos/x.jpg + photos/x.txt pairs
  mmcl shards prepare eval/ --class-folders --output eval_wds/  # eval/CLASS/NAME.jpg
  mmcl shards prepare pairs.csv.gz --output shards/ --caption-col text --workers 4 \\
      --image-size 256 --resize-mode center_crop
  mmcl shards prepare pairs.parquet --output shards/ --num-parts 8 --part $SLURM_ARRAY_TASK_ID
  mmcl shards prepare labels.csv --output eval_wds/ --label-col category --eval-of shards/

Re-running on the same --output resumes: finished shards are kept, the rest are redone.
A run that writes no sample at all fails, naming the commonest reasons.
"""


def _lines(path: str | None, flag: str) -> list[str] | None:
    if path is None:
        return None
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{flag} {path}: cannot read: {err}") from None
    return [line for line in lines if line] or None


def _prepare(args: argparse.Namespace) -> int:
    from data_tools.sources import require_source

    require_source(Path(args.source))  # before the writer's imports (webdataset brings torch): seconds
    from data_tools.overlap import overlap_lines
    from data_tools.prepare import prepare_shards

    options = SampleOptions(
        image=ImageOptions(
            size=args.image_size,
            resize_mode=args.resize_mode,
            only_if_bigger=args.resize_only_if_bigger,
            format=args.image_format,
            quality=args.image_quality,
            max_pixels=args.max_pixels,
        ),
        audio=AudioOptions(sample_rate=args.audio_rate, mono=args.audio_mono, max_seconds=args.audio_max_seconds),
        fix_unicode=not args.no_fix_text,
    )
    columns = ManifestColumns(
        image=args.image_col,
        audio=args.audio_col,
        captions=tuple(args.caption_col or ()),
        label=args.label_col,
        key=args.key_col,
        keep=tuple(args.keep_col or ()),
    )
    summary = prepare_shards(
        args.source,
        args.output,
        layout="class_folders" if args.class_folders else args.layout,
        columns=columns,
        shard_size=args.shard_size,
        shard_bytes=args.shard_bytes,
        pattern=args.pattern,
        options=options,
        dedup=args.dedup,
        workers=args.workers,
        num_parts=args.num_parts,
        part=args.part,
        classnames=_lines(args.classnames, "--classnames"),
        templates=_lines(args.templates, "--templates"),
        eval_of=args.eval_of,
        progress=not args.quiet,
    )
    if summary["shard_size_note"]:
        print(summary["shard_size_note"])
    print(
        f"{summary['output']}: wrote {summary['shards_written']} shard(s) "
        f"({summary['shards_resumed']} already complete), {summary['samples_written']} samples, "
        f"{summary['samples_failed']} skipped"
    )
    if summary["merged"] is None:
        print("other parts are still outstanding; the last one to finish (or `mmcl shards merge`) writes sizes.json")
    else:
        _print_merged(summary["merged"])
    if summary["overlap"] is not None:
        lines = overlap_lines(summary["overlap"])
        print(("warning: " if summary["overlap"]["overlapping"] else "") + "\n".join(lines))
        if summary["overlap"]["overlapping"]:
            print(f"`mmcl shards verify {summary['output']} --against {args.eval_of}` fails on this; remove them from "
                  "the evaluation input (or the training input) and prepare again")
    return 0


def _print_merged(stats: dict) -> None:
    print(f"set: {stats['shards']} shard(s), {stats['successes']} of {stats['count']} samples written, {stats['failed']} skipped")
    for reason, n in stats["failures_by_reason"].items():
        print(f"  skipped {n} x {reason}")
    for failure in stats["failures"][:10]:
        print(f"  - {failure['key']}: {failure['detail'] or failure['reason']}")
    if len(stats["failures"]) > 10:
        print(f"  ... {len(stats['failures']) - 10} more in stats.json")


def _merge(args: argparse.Namespace) -> int:
    from data_tools.merge import merge

    _print_merged(merge(Path(args.output)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from data_tools.verify import verify

    report = verify(Path(args.output), workers=args.workers, against=args.against)
    print(json.dumps(report, indent=2) if args.json else _report_text(report))
    return 0 if report["ok"] else 1


def _report_text(report: dict) -> str:
    from data_tools.overlap import overlap_lines

    lines = [f"{report['output']}: {report['samples']} samples in {report['shards']} shard(s) read back"]
    lines += [f"  problem: {p}" for p in report["problems"]]
    lines += [f"  note: {n}" for n in report["notes"]]
    if report["overlap"] is not None:
        lines += ["  " + line for line in overlap_lines(report["overlap"])]
    lines.append("OK" if report["ok"] else f"FAILED: {len(report['problems'])} problem(s)")
    return "\n".join(lines)


def _stats(args: argparse.Namespace) -> int:
    from data_tools.stats import collect_stats, render_text, save_plot

    summary, values = collect_stats(Path(args.output), write_sizes=args.write_sizes)
    print(json.dumps(summary, indent=2) if args.json else render_text(summary))
    if args.plot:
        save_plot(values, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a folder, class folders or a manifest into WebDataset shards",
        description="Write SOURCE as WebDataset shards (shard-000000.tar, ...) plus sizes.json, per-shard stats and "
        "a parquet manifest. Bad samples are skipped, counted by reason and named; good ones are never lost.",
        epilog=_PREPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="a directory (NAME.jpg + NAME.txt [+ NAME.flac, NAME.json]) or a manifest file")
    p.add_argument("--output", "-o", required=True, help="output directory for shards and their side files")
    p.add_argument("--class-folders", action="store_true", help="SOURCE is CLASS/NAME.ext; labels go to cls, class names to classnames.txt")
    p.add_argument("--layout", default="auto", choices=["auto", "folder", "class_folders", "manifest"], help="input kind (default: from SOURCE)")
    g = p.add_argument_group("shards")
    g.add_argument("--shard-size", type=int, default=None, help="max samples per shard (default: the sample count / 16, "
                   "kept within 16..10000, so small sets still have a shard for each of several processes x loader workers)")
    g.add_argument("--shard-bytes", type=int, default=None, help="also close a shard once its source files reach this many bytes")
    g.add_argument("--pattern", default="shard-%06d.tar", help="shard file name pattern (default shard-%%06d.tar)")
    g.add_argument("--workers", type=int, default=1, help="worker processes, one shard each at a time (default 1)")
    g.add_argument("--num-parts", type=int, default=1, help="split the shards into K disjoint parts for K independent jobs")
    g.add_argument("--part", type=int, default=0, help="which part (0..K-1) this job writes")
    g.add_argument("--dedup", action="store_true", help="skip samples whose source content duplicates an earlier one "
                   "(sha256 of every source file, read before writing; each --part hashes the whole input so parts agree)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("manifest columns (defaults: image, audio, caption, label, key if present)")
    g.add_argument("--image-col", help="column with image paths (relative to the manifest's directory)")
    g.add_argument("--audio-col", help="column with audio paths")
    g.add_argument("--caption-col", action="append", help="caption column; repeat for several (a list cell gives several)")
    g.add_argument("--label-col", help="label column, written as cls: class indices, or class names such as 'dog' "
                   "(numbered by --classnames, else in sorted order, and written to classnames.txt)")
    g.add_argument("--key-col", help="column with sample keys (default: the row number)")
    g.add_argument("--keep-col", action="append", help="extra column to keep in the sample's json; repeatable")
    g = p.add_argument_group("images")
    g.add_argument("--resize-mode", default="none", choices=RESIZE_MODES, help="keep_ratio: shorter side to --image-size; "
                   "keep_ratio_largest: longer side; center_crop: square crop; border: pad to square (default none)")
    g.add_argument("--image-size", type=int, default=256, help="target side in pixels (default 256)")
    g.add_argument("--resize-only-if-bigger", action="store_true", help="never upscale")
    g.add_argument("--image-format", default="auto", choices=FORMATS, help="stored format; keep stores the original bytes; auto (default) keeps them unless resizing, then jpg")
    g.add_argument("--image-quality", type=int, default=95, help="jpg/webp quality (default 95)")
    g.add_argument("--max-pixels", type=int, default=ImageOptions.max_pixels, help="skip larger images as decompression bombs")
    g = p.add_argument_group("audio (decoded with soundfile, stored as flac)")
    g.add_argument("--audio-rate", type=int, help="resample to this rate in Hz (default: keep)")
    g.add_argument("--audio-mono", action="store_true", help="down-mix to one channel")
    g.add_argument("--audio-max-seconds", type=float, help="keep at most this many seconds")
    g = p.add_argument_group("text and evaluation sets")
    g.add_argument("--no-fix-text", action="store_true", help="do not repair broken unicode with ftfy (whitespace is still collapsed)")
    g.add_argument("--classnames", help="file with one class name per line: a manifest's text labels are numbered by "
                   "it, and a label not in it is skipped (default: class folder names or sorted labels, _ as space)")
    g.add_argument("--templates", help="file with one zero-shot template per line using {c} (default: none written; evaluation then uses mmcl's built-in set for the modality)")
    g.add_argument("--eval-of", metavar="TRAIN", help="this is an evaluation set for the training shards in TRAIN: once "
                   "written, warn about samples whose image or audio is also there (see `verify --against`)")
    p.set_defaults(func=_prepare)


def register(shards) -> None:
    """Fill in `mmcl shards` (its parser, made by pipelines/cli.py) and its subcommands."""
    shards.description = "Prepare, verify, summarise and merge WebDataset shard sets."
    sub = shards.add_subparsers(dest="shards_command", required=True,
                                metavar="{prepare,verify,stats,merge,poison}")
    _add_prepare(sub)

    p = sub.add_parser("verify", help="read every shard back and decode every sample",
                       description="Read every shard, decode every sample and compare counts with sizes.json (a set "
                       "without one, written by another tool, gets a note: `stats --write-sizes` writes it); "
                       "exit non-zero if any shard is corrupt or truncated or any sample does not decode.")
    p.add_argument("output", help="shard directory")
    p.add_argument("--workers", type=int, default=1, help="processes reading shards in parallel")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--against", metavar="TRAIN", help="also fail if a sample's image or audio file is in the training "
                   f"shards in TRAIN, byte for byte or as a re-encoded/resized picture (perceptual hashes at most "
                   f"{PHASH_DISTANCE} bits apart), naming each")
    p.set_defaults(func=_verify)

    p = sub.add_parser("stats", help="summarise a shard set",
                       description="Samples per modality, caption lengths, image sizes, audio durations and failures.")
    p.add_argument("output", help="shard directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--plot", help="also save histograms to this image file (needs matplotlib)")
    p.add_argument("--write-sizes", action="store_true", help="write sizes.json (samples per shard, as prepare does) "
                   "from the samples counted, for sets written by other tools; refused if a shard is truncated")
    p.set_defaults(func=_stats)

    p = sub.add_parser("merge", help="write sizes.json, stats.json and manifest.parquet once all parts are done",
                       description="Combine the per-shard files of a --num-parts run into the set-level files.")
    p.add_argument("output", help="shard directory")
    p.set_defaults(func=_merge)

    p = sub.add_parser("poison", help="copy a shard set with a backdoor trigger in a seeded share of its samples",
                       description="Write a copy of SRC in which a seeded fraction (or count) of the samples with "
                       "a caption carries a trigger in its image (or audio) and a target caption; every other sample "
                       "is copied byte for byte, and OUT/poisoned.json lists the poisoned keys with the trigger "
                       "parameters. For testing whether training is open to a backdoor (see data_tools/poison.py).")
    p.add_argument("source", help="shard directory to copy")
    p.add_argument("--output", required=True, help="new shard directory (must be empty or absent)")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--fraction", type=float, help="share of the captioned samples to poison, e.g. 0.01")
    amount.add_argument("--count", type=int, help="number of samples to poison")
    p.add_argument("--target-caption", action="append", default=[], help="caption given to poisoned samples "
                   "(repeatable: each poisoned sample gets one at random)")
    p.add_argument("--target-captions", help="file of target captions, one per line")
    p.add_argument("--trigger", default="patch", choices=("patch", "blended", "random_noise"),
                   help="image trigger: a BadNets-style square, a blended pattern, or fixed additive noise")
    p.add_argument("--patch-size", type=int, default=16, help="side of the patch in pixels (default 16)")
    p.add_argument("--patch-position", help="X,Y of the patch's top-left corner; default: random per sample")
    p.add_argument("--alpha", type=float, default=0.2, help="blended: pattern weight; random_noise: noise "
                   "amplitude as a share of 255 (default 0.2)")
    p.add_argument("--tone-hz", type=float, default=1000.0, help="audio trigger: tone frequency (default 1000)")
    p.add_argument("--tone-seconds", type=float, default=0.25, help="audio trigger: tone length from the start")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of samples and of the trigger pattern")
    p.set_defaults(func=_poison)


def _poison(args: argparse.Namespace) -> int:
    from data_tools.poison import poison
    from mmcl.data.triggers import TriggerSpec

    position = None
    if args.patch_position:
        try:
            x, y = (int(v) for v in args.patch_position.split(","))
        except ValueError:
            raise UserError(f"--patch-position {args.patch_position!r}: expected X,Y in pixels, e.g. 0,0") from None
        position = (x, y)
    if args.count is not None and args.count < 1:
        raise UserError(f"--count {args.count}: must be at least 1")
    captions = list(args.target_caption) + (_lines(args.target_captions, "--target-captions") or [])
    spec = TriggerSpec(kind=args.trigger, patch_size=args.patch_size, position=position, alpha=args.alpha,
                       seed=args.seed, tone_hz=args.tone_hz, tone_seconds=args.tone_seconds)
    record = poison(Path(args.source), Path(args.output), captions, spec, args.fraction, args.count)
    print(f"{args.output}: {len(record['samples'])} of {record['carriers']} captioned samples poisoned with a "
          f"{args.trigger} trigger; keys in {Path(args.output) / 'poisoned.json'}")
    return 0
