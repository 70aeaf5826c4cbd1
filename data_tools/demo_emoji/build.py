"""Assemble emoji image-text-audio triplets into a folder that ``mmcl shards prepare`` reads.

Symile-M3 style: image = the Twemoji PNG, text = the emoji's name in one language, audio = that name
spoken by eSpeak NG in that language. A seeded set of emoji (all languages, all skin tones of one
emoji together) is held out, so evaluation on it is zero-shot; the Unicode subgroups are its classes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import soundfile

from data_tools.demo_emoji import sources
from data_tools.demo_emoji.licenses import write_licenses
from data_tools.demo_emoji.speech import Speaker, voice_for
from mmcl.errors import UserError

DEMO_LANGUAGES = ("en", "es", "fr", "de")  # Latin-script names that eSpeak reads well and BPE tokenises
TEMPLATES = ("an emoji of a {c}.", "a {c} emoji.")
SPLITS = ("train", "heldout")
STAMP = "build.json"
FORMAT = 1  # bump when the output layout changes, so old caches rebuild


def build_emoji_dataset(
    out_dir: str | Path,
    languages: tuple[str, ...] | list[str] = DEMO_LANGUAGES,
    *,
    heldout_fraction: float = 0.15,
    seed: int = 0,
    max_emoji: int | None = None,
    skip_skin_tones: bool = True,
    voices: dict[str, str] | None = None,
    workers: int | None = None,
) -> dict:
    """Write ``train.jsonl`` / ``heldout.jsonl`` manifests with the images and audio they name into ``out_dir``.

    Also writes ``classnames.txt`` and ``zeroshot_classification_templates.txt`` (the subgroup task),
    ``LICENSES.md`` and the ``build.json`` stamp. ``workers`` processes speak one language each (default: one
    per core). A build whose options and source versions match the stamp returns its summary without doing
    any work (``summary["cached"]`` is True). ``summary["skipped"]`` counts emoji left out for a missing PNG
    (``no_image``) or name (``no_name``), and rows whose name eSpeak produced no sound for (``no_audio``).
    """
    out = Path(out_dir)
    options = _check_options(list(languages), heldout_fraction, seed, max_emoji, skip_skin_tones, voices)
    stamp = {"format": FORMAT, "options": options, "versions": sources.versions()}
    previous = _read_stamp(out)
    if previous and {k: previous.get(k) for k in stamp} == stamp and all((out / f"{s}.jsonl").exists() for s in SPLITS):
        return previous["summary"] | {"out_dir": str(out), "cached": True}

    start = time.perf_counter()
    for language in options["languages"]:
        _speaker().set_voice(voice_for(language, voices))  # every voice checked before any work
    _clear(out)
    chosen, skipped = _select(options)
    heldout = _heldout_bases(chosen, heldout_fraction, seed)
    subgroups = list(dict.fromkeys(item.subgroup for item in chosen))

    (out / "images").mkdir(parents=True)
    for item in chosen:
        shutil.copyfile(sources.images()[item.stem], out / "images" / f"{item.stem}.png")
    spoken = _speak_all(out, chosen, options["languages"], voices, workers)

    rows = {split: [] for split in SPLITS}
    for item in chosen:
        for language in options["languages"]:
            if (item.stem, language) not in spoken:
                skipped["no_audio"] += 1
                continue
            split = "heldout" if item.base in heldout else "train"
            rows[split].append(_row(item, language, subgroups.index(item.subgroup)))
    for split in SPLITS:
        _write_lines(out / f"{split}.jsonl", [json.dumps(r, ensure_ascii=False) for r in rows[split]])
    _write_lines(out / "classnames.txt", [s.replace("-", " ") for s in subgroups])
    _write_lines(out / "zeroshot_classification_templates.txt", TEMPLATES)
    write_licenses(out / "LICENSES.md", stamp["versions"])

    summary = {
        "out_dir": str(out),
        "languages": options["languages"],
        "emoji": {s: len({r["codepoints"] for r in rows[s]}) for s in SPLITS},
        "rows": {s: len(rows[s]) for s in SPLITS},
        "groups": len({item.group for item in chosen}),
        "subgroups": len(subgroups),
        "audio_seconds": round(sum(spoken.values()), 1),
        "skipped": dict(skipped),
        "build_seconds": round(time.perf_counter() - start, 2),
        "cached": False,
    }
    (out / STAMP).write_text(json.dumps(stamp | {"summary": summary}, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary


def _check_options(languages, heldout_fraction, seed, max_emoji, skip_skin_tones, voices) -> dict:
    known = sources.languages()
    if not languages:
        raise UserError(f"no language given; choose from {', '.join(known)}")
    for language in languages + list(voices or {}):
        if language not in known:
            raise UserError(f"unknown language {language!r}: emoji names exist in {', '.join(known)}")
    if len(set(languages)) != len(languages):
        raise UserError(f"languages {','.join(languages)}: a language is listed twice")
    if not 0 <= heldout_fraction < 1:
        raise UserError(f"heldout_fraction {heldout_fraction}: must be in [0, 1)")
    if max_emoji is not None and max_emoji < 1:
        raise UserError(f"max_emoji {max_emoji}: must be at least 1")
    return {"languages": languages, "heldout_fraction": heldout_fraction, "seed": seed, "max_emoji": max_emoji,
            "skip_skin_tones": skip_skin_tones, "voices": {lang: voice_for(lang, voices) for lang in languages}}


def _read_stamp(out: Path) -> dict | None:
    try:
        return json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _clear(out: Path) -> None:
    """Remove what an earlier build wrote (and only that: the folder may hold other things, such as shards)."""
    (out / STAMP).unlink(missing_ok=True)  # first, so an interrupted rebuild is never taken for a cache hit
    for folder in ("images", "audio"):
        shutil.rmtree(out / folder, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _select(options: dict) -> tuple[list[sources.Emoji], Counter]:
    """Catalogue entries with a PNG and a name in every language, in Unicode order; the rest counted by reason."""
    chosen, skipped = [], Counter()
    images = sources.images()
    for item in sources.catalogue():
        if options["skip_skin_tones"] and item.has_skin_tone:
            continue  # left out by choice, not a defect
        if item.stem not in images:
            skipped["no_image"] += 1
        elif any(sources.name(item, lang) is None for lang in options["languages"]):
            skipped["no_name"] += 1
        else:
            chosen.append(item)
    if options["max_emoji"] is not None and options["max_emoji"] < len(chosen):
        # A seeded sample rather than the first N, which would all be smileys.
        picked = set(random.Random(f"subset-{options['seed']}").sample(range(len(chosen)), options["max_emoji"]))
        chosen = [item for i, item in enumerate(chosen) if i in picked]
    return chosen, skipped


def _heldout_bases(chosen: list[sources.Emoji], fraction: float, seed: int) -> set[str]:
    bases = list(dict.fromkeys(item.base for item in chosen))
    return set(random.Random(f"heldout-{seed}").sample(bases, round(fraction * len(bases))))


@cache
def _speaker() -> Speaker:
    return Speaker()  # one per process: eSpeak NG's state is global


def _speak_language(out: Path, language: str, voice: str, phrases: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Write ``audio/LANG/STEM.flac`` for each (stem, text); return seconds per (stem, language) spoken."""
    speaker = _speaker()
    speaker.set_voice(voice)
    folder = out / "audio" / language
    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for stem, text in phrases:
        samples = speaker.say(text)
        if len(samples):  # a name eSpeak cannot voice at all is skipped, not written as silence
            soundfile.write(folder / f"{stem}.flac", samples, speaker.rate)
            seconds[(stem, language)] = len(samples) / speaker.rate
    return seconds


def _speak_all(out: Path, chosen, languages: list[str], voices, workers: int | None) -> dict[tuple[str, str], float]:
    jobs = [(out, lang, voice_for(lang, voices), [(item.stem, sources.name(item, lang)) for item in chosen])
            for lang in languages]
    # eSpeak's output depends on what its process said before (the wave generator keeps state), so each
    # language is spoken by a fresh child forked from this process, which only ever checks voices: the
    # audio is then the same for any number of workers. Fork also keeps the loaded name tables.
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    with get_context("fork").Pool(workers, maxtasksperchild=1) as pool:
        results = pool.starmap(_speak_language, jobs, chunksize=1)
    return {key: value for result in results for key, value in result.items()}


def _row(item: sources.Emoji, language: str, label: int) -> dict:
    return {
        "key": f"{item.stem}_{language}",
        "image": f"images/{item.stem}.png",
        "audio": f"audio/{language}/{item.stem}.flac",
        "caption": sources.name(item, language),
        "language": language,
        "group": item.group,
        "subgroup": item.subgroup,
        "label": label,
        "codepoints": item.stem,
        "emoji": item.char,
    }


def _write_lines(path: Path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
