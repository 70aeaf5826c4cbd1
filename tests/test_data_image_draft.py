"""Large JPEGs decoded at reduced scale (Pillow's draft) for the tower's transform: the same crops, faithfully, where
reduced; bit-identical tensors where not."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from open_clip.transform import AugmentationCfg, image_transform
from PIL import Image, ImageDraw
from torchvision.transforms import Compose, InterpolationMode, RandomResizedCrop, ToTensor
from torchvision.transforms import functional as F

from mmcl.data import image
from mmcl.data.decode import SampleDecoder
from mmcl.data.failures import SampleError
from mmcl.models.config import OPENAI_MEAN, OPENAI_STD, ImageAugmentConfig
from mmcl.models.towers.image import _image_transforms

# Tensors in [0, 1] (no normalisation), so differences read as fractions of the pixel range.
UNIT = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
# The reduced decode of these photos differs from the full one by a mean of 0.0012-0.0017 of the pixel range
# (measured over 20 of them, 224 and 112, train and eval; about 0.4/255): DCT scaling filters a little differently
# from bicubic downsampling. A crop taken at another position differs by 0.02-0.14.
CLOSE = 0.005


def photo(width: int = 1024, height: int = 768) -> Image.Image:
    """Photo-like: smooth colour regions, sharp-edged discs, sensor-like noise."""
    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(field, dtype=float) + rng.normal(0, 6, (height, width, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 150)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def encoded(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    large = photo()
    return {"large jpeg": encoded(large), "small jpeg": encoded(photo(540, 400)),  # 400 < 2 x 273: not reduced
            "png": encoded(large, "PNG"), "webp": encoded(large, "WEBP")}


@pytest.fixture(scope="module")
def large_jpeg(images) -> bytes:
    return images["large jpeg"]


def test_short_side_needed_follows_the_transforms_crop_or_resize():
    assert image.short_side_needed(image_transform(224, is_train=True)) == 273  # 224 * sqrt((4/3) / 0.9)
    wide_crops = image_transform(224, is_train=True, aug_cfg=AugmentationCfg(scale=(0.08, 1.0)))
    assert image.short_side_needed(wide_crops) == 915  # 224 * sqrt((4/3) / 0.08): hardly any JPEG is reduced
    assert image.short_side_needed(image_transform(112, is_train=False)) == 112
    assert image.short_side_needed(Compose([ToTensor()])) is None
    assert image.short_side_needed(lambda img: F.to_tensor(img)) is None


def test_the_image_towers_transforms_are_recognised():
    tower = _image_transforms(224, OPENAI_MEAN, OPENAI_STD, ImageAugmentConfig())
    assert image.short_side_needed(tower["train_transform"]) == 273
    assert image.short_side_needed(tower["eval_transform"]) == 224


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", ["small jpeg", "png", "webp", "draft off", "unrecognised transform"])
def test_images_not_reduced_give_the_full_decodes_exact_tensor(images, case, train):
    transform = image_transform(224, is_train=train)
    limits = image.ImageLimits(jpeg_draft=case != "draft off")
    data = images.get(case, images["large jpeg"])
    used = (lambda img: transform(img)) if case == "unrecognised transform" else transform
    torch.manual_seed(0)
    expected = transform(Image.open(io.BytesIO(data)).convert("RGB"))
    torch.manual_seed(0)
    assert torch.equal(image.load(data, used, limits), expected)


@pytest.mark.parametrize("size,train,reduced", [(224, True, (512, 384)), (112, True, (256, 192)),
                                                (224, False, (512, 384)), (112, False, (256, 192))])
def test_large_jpeg_is_decoded_reduced_into_the_same_crop(large_jpeg, monkeypatch, size, train, reduced):
    transform = image_transform(size, is_train=train, **UNIT)
    decoded, full_decode = [], image.decode

    def spy(*args):  # keeps the image load() hands to the transform
        decoded.append(full_decode(*args))
        return decoded[-1]

    monkeypatch.setattr(image, "decode", spy)
    torch.manual_seed(0)
    got = image.load(large_jpeg, transform, image.ImageLimits())
    assert [d.size for d in decoded] == [reduced]
    full = full_decode(large_jpeg, image.ImageLimits())
    if train:  # the reference: the same random crop, scaled up to the full image, from the full decode
        crop, rest = transform.transforms[0], Compose(transform.transforms[1:])
        k = full.width // reduced[0]
        torch.manual_seed(0)
        i, j, h, w = RandomResizedCrop.get_params(decoded[0], crop.scale, crop.ratio)
        expected = rest(F.resized_crop(full, i * k, j * k, h * k, w * k, [size, size], InterpolationMode.BICUBIC))
    else:
        expected = transform(full)
    assert got.shape == expected.shape == (3, size, size)
    assert (got - expected).abs().mean().item() < CLOSE


def test_large_jpeg_limits_still_apply_from_the_header_and_corrupt_bytes_still_fail_in_decode(large_jpeg):
    transform = image_transform(224, is_train=True)
    with pytest.raises(ValueError, match="max_pixels"):
        image.load(large_jpeg, transform, image.ImageLimits(max_pixels=1024 * 768 - 1))
    decoder = SampleDecoder(["image"], {"image": transform}, None, image.ImageLimits())
    with pytest.raises(SampleError, match="undecodable image"):
        decoder({"__key__": "cut", "jpg": large_jpeg[: len(large_jpeg) // 2]}, None)
