"""Image decoding: every mode to RGB, palette images with transparency without PIL's warning."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from mmcl.data import image


def png(img: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **options)
    return buf.getvalue()


def test_palette_image_with_transparency_decodes_to_its_rgb_pixels_silently():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # transparent red background
    rgba.paste((0, 128, 255, 255), (2, 2, 6, 6))
    palette = rgba.quantize(colors=4)
    alpha = bytearray(b"\x80" * 4)  # half-transparent entries, and a fully transparent background
    alpha[palette.getpixel((0, 0))] = 0
    data = png(palette, transparency=bytes(alpha))  # per-entry alpha, as Twemoji PNGs have
    with Image.open(io.BytesIO(data)) as reference:
        assert reference.mode == "P" and isinstance(reference.info["transparency"], bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = np.asarray(reference.convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        decoded = image.decode(data, image.ImageLimits())
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), expected)
    assert tuple(np.asarray(decoded)[3, 3]) == (0, 128, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "I;16"])
def test_other_modes_decode_to_rgb(mode):
    img = Image.new(mode, (4, 4))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    assert image.decode(buf.getvalue(), image.ImageLimits()).mode == "RGB"
