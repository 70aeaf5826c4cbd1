"""Image decoding, validation, resizing and re-encoding (Pillow).

Resize modes follow img2dataset's names so users can carry their flags over:
``keep_ratio`` scales the shorter side to ``size``, ``keep_ratio_largest`` the longer side,
``center_crop`` scales the shorter side then crops a square, ``border`` scales the longer side
then pads to a square.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from data_tools.errors import SampleError
from data_tools.fingerprints import image_colours, image_phash
from mmcl.data.config import MAX_PIXELS
from mmcl.errors import UserError

RESIZE_MODES = ("none", "keep_ratio", "keep_ratio_largest", "center_crop", "border")
FORMATS = ("auto", "jpg", "webp", "png", "keep")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
RESIZE_EFFECTS = ("cropped", "padded", "upscaled")
_PIL_FORMAT = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
_EXT_OF_PIL_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class ImageOptions:
    size: int = 256
    resize_mode: str = "none"
    only_if_bigger: bool = False
    format: str = "auto"  # keep the original bytes unless resizing, then jpg
    quality: int = 95
    # The training and evaluation loaders' default limit (Pillow's decompression-bomb threshold).
    max_pixels: int = MAX_PIXELS

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise UserError(f"--resize-mode {self.resize_mode!r}: choose one of {', '.join(RESIZE_MODES)}")
        if self.format not in FORMATS:
            raise UserError(f"--image-format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.format == "keep" and self.resize_mode != "none":
            raise UserError("--image-format keep stores the original bytes, so it cannot be combined with --resize-mode")
        if self.resize_mode != "none" and self.size <= 0:
            raise UserError(f"--image-size {self.size}: must be a positive number of pixels")
        if not 1 <= self.quality <= 100:
            raise UserError(f"--image-quality {self.quality}: must be between 1 and 100")


def _target_size(width: int, height: int, opts: ImageOptions) -> tuple[int, int]:
    side = min(width, height) if opts.resize_mode in ("keep_ratio", "center_crop") else max(width, height)
    scale = opts.size / side
    if opts.only_if_bigger:
        scale = min(scale, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _output_size(width: int, height: int, opts: ImageOptions) -> tuple[int, int]:
    """The size stored after resizing: what memory the result needs."""
    if opts.resize_mode == "border":
        return opts.size, opts.size
    target = _target_size(width, height, opts)
    if opts.resize_mode == "center_crop":
        return min(target[0], opts.size), min(target[1], opts.size)
    return target


def _check_output_size(width: int, height: int, opts: ImageOptions, source: str) -> None:
    """A thin strip scaled by its short side (1x100000 to 256 wide) would need gigabytes: refuse it from the header."""
    out_w, out_h = _output_size(width, height, opts)
    if out_w * out_h > opts.max_pixels:
        raise SampleError("too_many_pixels", f"{source}: {width}x{height} would be resized to {out_w}x{out_h}, "
                          f"over {opts.max_pixels} pixels (--max-pixels)")


def resize_effects(width: int, height: int, opts: ImageOptions) -> dict[str, bool]:
    """What resizing a width x height image does to it besides scaling: ``cropped`` (center_crop cut content off),
    ``padded`` (border added bars) and ``upscaled`` (enlarged, as it was smaller than the target)."""
    if opts.resize_mode == "none":
        return dict.fromkeys(RESIZE_EFFECTS, False)
    target = _target_size(width, height, opts)
    return {
        "cropped": opts.resize_mode == "center_crop" and _output_size(width, height, opts) != target,
        "padded": opts.resize_mode == "border" and target != (opts.size, opts.size),
        "upscaled": target[0] > width,
    }


def open_image(data: bytes, source: str, max_pixels: int, opts: ImageOptions | None = None) -> Image.Image:
    """Decode fully (so truncation is caught here, not by a reader later) after a header-only size check."""
    return _decode(data, source, max_pixels, opts)[0]


def _decode(data: bytes, source: str, max_pixels: int, opts: ImageOptions | None) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image and the size its header gives.

    With resize options, a JPEG is decoded at the smallest DCT scale that still covers the
    target size (Pillow's draft mode, as ``Image.thumbnail`` does): several times faster, but the
    image is then smaller than the source, hence the header's size beside it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            header_size = img.size
            if img.width * img.height > max_pixels:
                raise SampleError("too_many_pixels", f"{source}: {img.width}x{img.height} exceeds {max_pixels} pixels")
            if opts is not None and opts.resize_mode != "none":
                _check_output_size(img.width, img.height, opts, source)
                if img.format == "JPEG":
                    img.draft("RGB", _target_size(img.width, img.height, opts))
            img.load()
    except Image.DecompressionBombError as err:
        raise SampleError("too_many_pixels", f"{source}: {err}") from None
    except SampleError:
        raise
    except Exception as err:  # Pillow's decoders raise many types (struct.error, IndexError...) on corrupt data
        raise SampleError("bad_image", f"{source}: {type(err).__name__}: {err}") from None
    return img, header_size


def _resample_filter(new_width: float, old_width: float) -> Image.Resampling:
    return Image.Resampling.LANCZOS if new_width < old_width else Image.Resampling.BICUBIC


def _center_crop(img: Image.Image, opts: ImageOptions) -> Image.Image:
    """Resize only the centre square's source pixels: scaling the whole image first would make a 1x100000 strip
    256x25600000 before the crop."""
    (target_w, target_h), (out_w, out_h) = _target_size(img.width, img.height, opts), _output_size(img.width, img.height, opts)
    box_w, box_h = out_w * img.width / target_w, out_h * img.height / target_h
    left, top = (img.width - box_w) / 2, (img.height - box_h) / 2
    if (out_w, out_h) == img.size and (box_w, box_h) == img.size:
        return img
    return img.resize((out_w, out_h), _resample_filter(out_w, box_w), box=(left, top, left + box_w, top + box_h))


def resize(img: Image.Image, opts: ImageOptions) -> Image.Image:
    if opts.resize_mode == "none":
        return img
    if opts.resize_mode == "center_crop":
        return _center_crop(img, opts)
    size = _target_size(img.width, img.height, opts)
    if size != img.size:
        img = img.resize(size, _resample_filter(size[0], img.width))
    if opts.resize_mode == "border":
        canvas = Image.new(img.mode, (opts.size, opts.size))
        canvas.paste(img, ((opts.size - img.width) // 2, (opts.size - img.height) // 2))
        img = canvas
    return img


def process_image(data: bytes, source: str, opts: ImageOptions) -> tuple[str, bytes, dict]:
    """Return (extension, encoded bytes, facts for the manifest) or raise SampleError.

    The facts: the size stored and the source's, what resizing did (resize_effects), and the
    decoded image's perceptual hash (image_phash) and 4x4 colour thumbnail (image_colours), close for re-encoded or
    resized copies.
    """
    img, (width, height) = _decode(data, source, opts.max_pixels, opts)
    facts = {"source_width": width, "source_height": height, **resize_effects(width, height, opts),
             "image_phash": image_phash(img), "image_colours": image_colours(img)}
    keep = opts.format == "keep" or (opts.format == "auto" and opts.resize_mode == "none")
    if keep and img.format in _EXT_OF_PIL_FORMAT:
        return _EXT_OF_PIL_FORMAT[img.format], data, {"image_width": width, "image_height": height, **facts}
    # A kept image in a format readers do not expect (gif, bmp, tiff) is stored losslessly as png.
    fmt = "png" if keep else "jpg" if opts.format == "auto" else opts.format
    try:
        # Re-encoding drops EXIF, so apply its orientation now or phone photos end up sideways.
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    except ValueError as err:  # a mode Pillow cannot convert (LAB, La)
        raise SampleError("bad_image", f"{source}: {err}") from None
    img = resize(rgb, opts)
    out = io.BytesIO()
    img.save(out, format=_PIL_FORMAT[fmt], quality=opts.quality)
    return fmt, out.getvalue(), {"image_width": img.width, "image_height": img.height, **facts}
