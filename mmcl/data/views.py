"""A second, independently augmented view of a training sample's modalities, for in-modal losses (CleanCLIP).

The view of modality m travels as ``batch["<m>_view"]`` (with ``"<m>_view_mask"``, equal to m's mask), the model
encodes it with m's tower into ``outputs["<m>_view"]``, and only losses that ask for views read it: a view is
not a modality of its own (pairwise losses, live geometry and the trained-modalities check pass over it).

Image view: the tower's training transform with torchvision's AutoAugment (ImageNet policy) after its first step
(the crop or resize), as CleanCLIP augments its second image with an AutoAugment policy; the picture is decoded
once for both views. Text view: the chosen caption edited by ``text_augment`` (EDA's random deletion and swap;
EDA's synonym replacement and insertion need a thesaurus and are not done). Audio view: the clip read again
with the training transform (another random window, SpecAugment if configured).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmcl.config import Section
from mmcl.data.text import TextAugmentConfig
from mmcl.errors import UserError

SUFFIX = "_view"


def view_key(modality: str) -> str:
    return f"{modality}{SUFFIX}"


def is_view_key(key: str) -> bool:
    return key.endswith(SUFFIX)


class SecondViewConfig(Section):
    """Which modalities get a second augmented view in training, and how it is augmented."""

    modalities: list[Literal["image", "text", "audio"]] = Field(
        ["image", "text"], description="Modalities given a second view (each must be in data.modalities).")
    image_augment: Literal["autoaugment", "none"] = Field(
        "autoaugment", description="Extra augmentation of the second image view after the training crop: "
                                   "torchvision's AutoAugment (ImageNet policy), as CleanCLIP; none: the training "
                                   "transform alone (another random crop).")
    text_augment: TextAugmentConfig = Field(
        default_factory=lambda: TextAugmentConfig(word_drop=0.1, word_swap=0.1),
        description="Edits of the second caption (default: drop each word with probability 0.1, swap 10% of "
                    "word pairs); at least one edit must be on, or the view would equal the caption.")

    def check(self, data_modalities: list[str]) -> None:
        """ValueErrors, which the config loader reports with the key."""
        absent = [m for m in self.modalities if m not in data_modalities]
        if absent:
            raise ValueError(f"data.second_view.modalities lists {absent}, which data.modalities {data_modalities} "
                            "does not read")
        if "text" in self.modalities and not self.text_augment.enabled:
            raise ValueError("data.second_view.text_augment has every edit off: the text view would equal the "
                            "caption; set word_drop or word_swap")


def image_view_transform(transform, image_augment: str):
    """The training transform with AutoAugment inserted after its first step (the crop to the tower's size, so
    the policy runs on the small picture and draft decoding still sees the crop first)."""
    from torchvision.transforms import AutoAugment, Compose  # here: the config modules stay light to import

    if image_augment == "none":
        return transform
    if not isinstance(transform, Compose) or not transform.transforms:
        raise UserError(f"data.second_view.image_augment: {image_augment} needs the image tower's training "
                        f"transform to be a torchvision Compose, got {type(transform).__name__}; use none")
    first, *rest = transform.transforms
    return Compose([first, AutoAugment(), *rest])
