"""Generated demo data: coloured shapes with captions, and a held-out class-folder set for zero-shot evaluation.

A stand-in until the real image-text-audio demo set exists (issue 9). Every image varies in position, size,
background and noise, so the model has to learn colour and shape rather than memorise pixels.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
CAPTION_TEMPLATES = ("a {c}", "a photo of a {c}", "a {c} on a plain background", "an image showing a {c}")
EVAL_TEMPLATES = ("a photo of a {c}.", "a {c}.")


def classnames() -> list[str]:
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def draw(colour: str, shape: str, rng: random.Random, size: int = 64) -> Image.Image:
    grey = rng.randint(150, 255)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    pen = ImageDraw.Draw(img)
    extent = rng.randint(size // 3, size * 3 // 4)
    x0, y0 = rng.randint(0, size - extent), rng.randint(0, size - extent)
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[colour])
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x0 + extent / 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)], fill=fill)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def write_pairs(folder: str | Path, per_class: int, seed: int) -> Path:
    """`folder/NAME.jpg` + `folder/NAME.txt` captioned pairs, `per_class` for each class."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name in classnames():
        colour, shape = name.split()
        for i in range(per_class):
            stem = folder / f"{colour}_{shape}_{i:05d}"
            draw(colour, shape, rng).save(stem.with_suffix(".jpg"), quality=90)
            stem.with_suffix(".txt").write_text(rng.choice(CAPTION_TEMPLATES).format(c=name), encoding="utf-8")
    return folder


def write_class_folders(folder: str | Path, per_class: int, seed: int) -> Path:
    """`folder/CLASS/NAME.jpg` evaluation images (class folder names use `_` for spaces)."""
    folder = Path(folder)
    rng = random.Random(seed)
    for name in classnames():
        colour, shape = name.split()
        class_dir = folder / name.replace(" ", "_")
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(colour, shape, rng).save(class_dir / f"{i:05d}.jpg", quality=90)
    return folder


def write_templates(path: str | Path) -> Path:
    path = Path(path)
    path.write_text("\n".join(EVAL_TEMPLATES) + "\n", encoding="utf-8")
    return path
