"""Image towers: open_clip vision towers, and any timm image model by name."""

from __future__ import annotations

import warnings

import timm
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from open_clip.transform import AugmentationCfg, image_transform
from timm.data import resolve_model_data_config
from torch import nn

from mmcl.errors import UserError
from mmcl.models.config import ImageAugmentConfig, OpenClipVisionTowerConfig, TimmImageTowerConfig
from mmcl.models.patch_dropout import no_patches, require_patch_dropout
from mmcl.models.towers.base import Tower, prefixed_matcher, register_tower

# Layer groups of open_clip's own vision transformer and ModifiedResNet, stem first (the head is unmatched).
_OPEN_CLIP_VIT_GROUPS = {
    "stem": r"^encoder\.(?:conv1|class_embedding|positional_embedding|ln_pre)",
    "blocks": [(r"^encoder\.transformer\.resblocks\.(\d+)", None)],
}
_MODIFIED_RESNET_GROUPS = {"stem": r"^encoder\.(?:conv|bn)\d", "blocks": [(r"^encoder\.layer(\d+)", None)]}


def _image_transforms(size: int, mean, std, augment: ImageAugmentConfig) -> dict:
    with warnings.catch_warnings():
        # open_clip applies colour jitter and grey-scale but still lists them as "unused" in a warning.
        warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
        train = image_transform(size, is_train=True, mean=mean, std=std,
                                aug_cfg=AugmentationCfg(**augment.model_dump()))
    return {
        "train_transform": train,
        "eval_transform": image_transform(size, is_train=False, mean=mean, std=std),
        "input_shape": (3, size, size),
    }


@register_tower("open_clip_vision")
def open_clip_vision(cfg: OpenClipVisionTowerConfig, embed_dim: int) -> Tower:
    vision_cfg = CLIPVisionCfg(**{**cfg.cfg, "patch_dropout": cfg.patch_dropout})
    try:
        encoder = _build_vision_tower(embed_dim, vision_cfg, quick_gelu=cfg.quick_gelu)
    except TypeError as err:  # a timm trunk without patch tokens refuses the rate open_clip hands it
        if not cfg.patch_dropout or "patch_drop_rate" not in str(err):
            raise
        raise no_patches(f"timm model {vision_cfg.timm_model_name!r}", cfg.patch_dropout) from None
    require_patch_dropout(encoder, cfg.patch_dropout, type(encoder).__name__)
    if isinstance(encoder, TimmModel):
        groups = prefixed_matcher(encoder.trunk.group_matcher(), r"encoder\.trunk\.")
    elif isinstance(encoder, ModifiedResNet):
        groups = _MODIFIED_RESNET_GROUPS
    else:
        groups = _OPEN_CLIP_VIT_GROUPS
    return Tower(encoder, group_matcher=groups, **_image_transforms(cfg.image_size, cfg.mean, cfg.std, cfg.augment))


def timm_trunk(model_name: str, patch_dropout: float = 0.0, **kwargs) -> nn.Module:
    """A timm model without classifier (pooled features out), randomly initialised: nothing is downloaded.
    `patch_dropout` > 0 is timm's patch_drop_rate, which only vision transformers take."""
    if patch_dropout:
        kwargs["patch_drop_rate"] = patch_dropout  # equal to any kwargs.patch_drop_rate (the config checks)
    try:
        trunk = timm.create_model(model_name.removeprefix("timm/"), pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as err:  # timm's message for an unknown architecture
        raise UserError(f"timm model {model_name!r}: {err}") from None
    except TypeError as err:  # a model without patch tokens has no patch_drop_rate argument
        if not patch_dropout or "patch_drop_rate" not in str(err):
            raise
        raise no_patches(f"timm model {model_name!r}", patch_dropout) from None
    require_patch_dropout(trunk, patch_dropout, f"timm model {model_name!r}")
    return trunk


@register_tower("timm_image")
def timm_image(cfg: TimmImageTowerConfig, embed_dim: int) -> Tower:
    trunk = timm_trunk(cfg.model_name, cfg.patch_dropout, **cfg.kwargs)
    # ViT-style models fix their input size at construction; a silent mismatch would fail only at forward.
    fixed = getattr(getattr(trunk, "patch_embed", None), "img_size", None)
    if fixed is not None and tuple(fixed) != (cfg.image_size, cfg.image_size):
        raise UserError(f"timm model {cfg.model_name!r} takes {tuple(fixed)} images but image_size is "
                        f"{cfg.image_size}; set kwargs.img_size: {cfg.image_size}")
    data_cfg = resolve_model_data_config(trunk)
    return Tower(
        trunk,
        nn.Linear(trunk.num_features, embed_dim, bias=False),
        group_matcher=prefixed_matcher(trunk.group_matcher(), r"encoder\."),
        **_image_transforms(cfg.image_size, cfg.mean or data_cfg["mean"], cfg.std or data_cfg["std"], cfg.augment),
    )
