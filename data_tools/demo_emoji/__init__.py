"""The demo dataset: Twemoji images, their names in several languages, and those names spoken by eSpeak NG.

``build_emoji_dataset(out_dir, languages=...)`` or ``python -m data_tools.demo_emoji OUT --languages en,es``.
"""

from data_tools.demo_emoji.build import DEMO_LANGUAGES, build_emoji_dataset

__all__ = ["DEMO_LANGUAGES", "build_emoji_dataset"]
