"""``python -m data_tools.demo_emoji OUT [--languages en,es] ...``: build the demo dataset and print its summary."""

from __future__ import annotations

import argparse
import json
import sys

from data_tools.demo_emoji.build import DEMO_LANGUAGES, build_emoji_dataset
from mmcl.errors import UserError


def _voices(pairs: list[str]) -> dict[str, str]:
    voices = {}
    for pair in pairs:
        language, sep, voice = pair.partition("=")
        if not sep or not language or not voice:
            raise UserError(f"--voice {pair!r}: expected LANGUAGE=VOICE, e.g. en=en-gb")
        voices[language] = voice
    return voices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_tools.demo_emoji",
        description="Build emoji image-text-audio triplets (Twemoji PNG, name in a language, the name spoken by "
        "eSpeak NG) as train.jsonl / heldout.jsonl manifests for `mmcl shards prepare`. Offline; cached.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--languages", default=",".join(DEMO_LANGUAGES),
                        help=f"comma-separated emoji name languages (default {','.join(DEMO_LANGUAGES)}; all: "
                        "en,es,ja,ko,pt,it,fr,de,fa,id,zh,ru,tr,ar; ja audio is poor: eSpeak NG does not read kanji)")
    parser.add_argument("--heldout-fraction", type=float, default=0.15, help="share of emoji held out of training (default 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the held-out set and --max-emoji sample")
    parser.add_argument("--max-emoji", type=int, help="use at most this many emoji (a seeded sample)")
    parser.add_argument("--skin-tones", action="store_true", help="also use skin-tone variants (default: left out)")
    parser.add_argument("--voice", action="append", default=[], metavar="LANG=VOICE",
                        help="eSpeak NG voice for a language, e.g. en=en-gb; repeatable")
    parser.add_argument("--workers", type=int, help="processes speaking in parallel, one language each (default: one per core)")
    args = parser.parse_args(argv)
    try:
        summary = build_emoji_dataset(
            args.out,
            [lang.strip() for lang in args.languages.split(",") if lang.strip()],
            heldout_fraction=args.heldout_fraction,
            seed=args.seed,
            max_emoji=args.max_emoji,
            skip_skin_tones=not args.skin_tones,
            voices=_voices(args.voice),
            workers=args.workers,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
