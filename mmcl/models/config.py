"""Typed model configs: one tower config per modality, plus the shared embedding space.

Every tower kind has its own Section, told apart by `type`; the settings every tower shares (locking,
gradient checkpointing, initial weights) live in `TowerCommon`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from mmcl.config import Section
from mmcl.data.config import AudioFrontEndConfig

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip_cfg(name: str) -> type:
    """open_clip's CLIPVisionCfg or CLIPTextCfg, imported only when a config has an open_clip tower (open_clip
    imports torch: seconds that `--help` and a mistyped key elsewhere should not wait for)."""
    from open_clip import model

    return getattr(model, name)


@functools.cache
def open_clip_cfg_fields(name: str) -> frozenset[str]:
    """The field names of open_clip's CLIPVisionCfg or CLIPTextCfg. Read from open_clip's source where open_clip
    is not imported yet: validating a config's keys (e.g. in the launcher of `mmcl train --num-processes N`) then
    costs milliseconds instead of the seconds of importing open_clip, its models and torchvision."""
    if "open_clip.model" in sys.modules:
        return frozenset(f.name for f in dataclasses.fields(_open_clip_cfg(name)))
    return open_clip_source_fields(name)


def open_clip_source_fields(name: str) -> frozenset[str]:
    """The annotated class attributes (a dataclass's fields) of class `name` in open_clip/model.py's source."""
    source = Path(importlib.util.find_spec("open_clip").origin).with_name("model.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    return frozenset(item.target.id for item in found.body
                     if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))


def _check_keys(cfg: dict[str, Any], name: str, what: str) -> dict[str, Any]:
    known = open_clip_cfg_fields(name)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; known keys: {sorted(known)}")
    return cfg


class WeightsConfig(Section):
    """Initial weights for a tower's encoder from a local file (never downloaded, never unpickled).

    Keys are those of the encoder itself: the open_clip tower, the timm model, the transformers model.
    """

    path: str = Field(description="A .safetensors file, or a .pt/.pth/.bin/.ckpt read with torch.load(weights_only=True).")
    prefix: str | None = Field(
        None,
        description="Take only keys under this prefix (stripped), e.g. 'visual.' of an open_clip checkpoint; "
        "null: the tower's default ('visual.' for open_clip vision, 'text.' for open_clip text, '' otherwise).",
    )
    strict: bool = Field(True, description="Fail when the file leaves encoder weights missing or has unexpected keys.")


class TowerCommon(Section):
    """Settings every tower shares."""

    locked: bool = Field(False, description="Freeze the tower (LiT); see unlocked_layers.")
    unlocked_layers: int = Field(
        0, ge=0,
        description="With locked: keep the last N layer groups trainable. Groups run stem, each block, "
        "then the head (final norm and projection).",
    )
    grad_checkpointing: bool = Field(False, description="Recompute block activations in backward to save memory.")
    weights: WeightsConfig | None = Field(None, description="Initial encoder weights from a local file; null: random init.")
    missing: Literal["drop", "learned"] = Field(
        "drop",
        description="Samples lacking this modality: 'drop' leaves them out of every loss term that uses it; 'learned' "
        "gives them a learned missing-modality embedding so that they stay in multi-modality terms, as Symile-M3 does.",
    )

    @model_validator(mode="after")
    def _unlocked_needs_locked(self):
        if self.unlocked_layers and not self.locked:
            raise ValueError("unlocked_layers is only used with locked: true")
        return self


class PatchTowerCommon(TowerCommon):
    """Settings of towers that may be vision transformers over patch tokens: the image towers and AST."""

    patch_dropout: float = Field(
        0.0, ge=0, lt=1,
        description="Training only: drop this fraction of the patch tokens of every sample (a fresh random subset "
        "each forward; the class token stays) before the transformer blocks, as FLIP does; the encoder runs on the "
        "rest, so a step costs less. Evaluation always sees every patch. Needs a vision transformer: a ModifiedResNet "
        "or a convolutional timm model is an error. See train.unmasked_steps for a last phase without it.",
    )

    def _same_patch_dropout(self, key: str, value: float) -> None:
        """A library's own spelling of the rate is accepted (pasted model JSONs) only when it agrees."""
        if value != self.patch_dropout:
            raise ValueError(f"{key}={value} disagrees with patch_dropout={self.patch_dropout}: set the tower's "
                             f"patch_dropout only ({key} may stay only with the same value)")


class ImageAugmentConfig(Section):
    """Training-time image augmentation (open_clip's AugmentationCfg); evaluation always uses a plain resize and crop."""

    scale: tuple[float, float] = Field((0.9, 1.0), description="Area range of the random resized crop.")
    color_jitter: tuple[float, float, float, float] | None = Field(
        None, description="Colour jitter strengths (brightness, contrast, saturation, hue); null: none.")
    color_jitter_prob: float | None = Field(None, ge=0, le=1, description="Probability of applying the colour jitter.")

    @model_validator(mode="after")
    def _jitter_needs_strengths(self):
        if self.color_jitter_prob and self.color_jitter is None:
            raise ValueError("color_jitter_prob needs color_jitter strengths (brightness, contrast, saturation, hue)")
        return self
    gray_scale_prob: float | None = Field(None, ge=0, le=1, description="Probability of turning an image grey.")


class OpenClipVisionTowerConfig(PatchTowerCommon):
    """An open_clip vision tower (ViT, ModifiedResNet or timm trunk) built from open_clip's `vision_cfg`."""

    type: Literal["open_clip_vision"] = Field(description="Tower kind: an open_clip vision tower.")
    cfg: dict[str, Any] = Field(
        description="open_clip `vision_cfg` fields (CLIPVisionCfg), exactly as in open_clip's model JSON files."
    )
    quick_gelu: bool = Field(False, description="Use QuickGELU activations (OpenAI-trained weights need it).")
    mean: tuple[float, float, float] = Field(OPENAI_MEAN, description="Per-channel normalisation mean.")
    std: tuple[float, float, float] = Field(OPENAI_STD, description="Per-channel normalisation std.")
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig, description="Training augmentation.")

    @field_validator("cfg")
    @classmethod
    def _known_keys(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(cfg, "CLIPVisionCfg", "open_clip vision_cfg")

    @model_validator(mode="after")
    def _one_patch_dropout(self):
        self._same_patch_dropout("cfg.patch_dropout", self.cfg.get("patch_dropout", self.patch_dropout))
        return self

    @property
    def image_size(self) -> int:
        size = self.cfg.get("image_size", _open_clip_cfg("CLIPVisionCfg").image_size)
        return size if isinstance(size, int) else size[0]


class TimmImageTowerConfig(PatchTowerCommon):
    """Any timm image model by name (built with pretrained=False: nothing is downloaded), pooled and projected."""

    type: Literal["timm_image"] = Field(description="Tower kind: a timm image model.")
    model_name: str = Field(description="timm architecture name, e.g. 'resnet18' or 'timm/vit_tiny_patch16_224' "
                            "(a 'timm/' hub prefix is dropped; pretrained tags name the same architecture).")
    kwargs: dict[str, Any] = Field({}, description="Extra timm.create_model arguments, e.g. {depth: 4, drop_path_rate: 0.1}.")
    image_size: int = Field(224, gt=0, description="Square input size in pixels.")
    mean: tuple[float, float, float] | None = Field(None, description="Per-channel normalisation mean; null: the timm model's default.")
    std: tuple[float, float, float] | None = Field(None, description="Per-channel normalisation std; null: the timm model's default.")
    augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig, description="Training augmentation.")

    @model_validator(mode="after")
    def _one_patch_dropout(self):
        self._same_patch_dropout("kwargs.patch_drop_rate", self.kwargs.get("patch_drop_rate", self.patch_dropout))
        return self


class OpenClipTextTowerConfig(TowerCommon):
    """An open_clip text transformer built from open_clip's `text_cfg`, with its BPE tokenizer."""

    type: Literal["open_clip_text"] = Field(description="Tower kind: an open_clip text transformer.")
    cfg: dict[str, Any] = Field(
        description="open_clip `text_cfg` fields (CLIPTextCfg), exactly as in open_clip's model JSON files."
    )
    quick_gelu: bool = Field(False, description="Use QuickGELU activations (OpenAI-trained weights need it).")

    @field_validator("cfg")
    @classmethod
    def _known_keys(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(cfg, "CLIPTextCfg", "open_clip text_cfg")

    @property
    def context_length(self) -> int:
        return self.cfg.get("context_length", _open_clip_cfg("CLIPTextCfg").context_length)


class HFTextTowerConfig(TowerCommon):
    """A Hugging Face encoder and its tokenizer from a local directory, pooled and projected."""

    type: Literal["hf_text"] = Field(description="Tower kind: a Hugging Face transformers encoder.")
    path: str = Field(description="Local directory holding config.json, the tokenizer files and (if pretrained) weights.")
    pretrained: bool = Field(True, description="Load the directory's weights; false: random init of its architecture.")
    pooling: Literal["mean", "cls"] = Field("mean", description="Mean over non-padding tokens, or the first ([CLS]) token.")
    proj: Literal["linear", "none"] = Field(
        "linear", description="Linear projection to embed_dim, or none (the encoder width must equal embed_dim)."
    )
    context_length: int = Field(77, gt=0, description="Token ids per caption (padded/truncated).")


class AudioNorm(Section):
    """Fixed normalisation of log-mel dB values before the encoder, as AST does with dataset statistics."""

    mean: float = Field(
        -20.0, description="Subtracted from every log-mel value (dB); the default roughly centres the front end's "
        "dB scale for clips between quiet noise and loud tones (-46 to -2 dB means); best set from your data.")
    std: float = Field(20.0, gt=0, description="Divides every centred log-mel value (dB).")


class AstAudioTowerConfig(PatchTowerCommon):
    """AST-style audio tower: a timm ViT over patches of the log-mel spectrogram, one input channel.

    Frames past the last whole patch are dropped by the patch embedding; pick clip_seconds and hop_length to fit.
    """

    type: Literal["ast"] = Field(description="Tower kind: a timm vision transformer over log-mel patches.")
    model_name: str = Field("vit_tiny_patch16_224", description="timm ViT architecture name.")
    kwargs: dict[str, Any] = Field({}, description="Extra timm.create_model arguments, e.g. {depth: 4, patch_size: 16}.")
    front_end: AudioFrontEndConfig = Field(AudioFrontEndConfig(), description="Waveform to log-mel settings.")
    norm: AudioNorm = Field(AudioNorm(), description="Log-mel normalisation before the encoder.")

    @model_validator(mode="after")
    def _one_patch_dropout(self):
        self._same_patch_dropout("kwargs.patch_drop_rate", self.kwargs.get("patch_drop_rate", self.patch_dropout))
        return self


class CnnAudioTowerConfig(TowerCommon):
    """A small PANN-style CNN over the log-mel spectrogram: conv blocks, then mean over frequency, max+mean over time."""

    type: Literal["audio_cnn"] = Field(description="Tower kind: a small convolutional audio encoder.")
    channels: list[int] = Field([32, 64, 128, 256], min_length=1, description="Output channels of each conv block (each halves time and frequency).")
    front_end: AudioFrontEndConfig = Field(AudioFrontEndConfig(), description="Waveform to log-mel settings.")
    norm: AudioNorm = Field(AudioNorm(), description="Log-mel normalisation before the encoder.")


TowerConfig = Annotated[
    Union[
        OpenClipVisionTowerConfig,
        TimmImageTowerConfig,
        OpenClipTextTowerConfig,
        HFTextTowerConfig,
        AstAudioTowerConfig,
        CnnAudioTowerConfig,
    ],
    Field(discriminator="type"),
]


CLIP_LOGIT_SCALE_INIT = math.log(1 / 0.07)  # Radford et al.: τ = 0.07 at the start


class OpenClipSource(Section):
    """A whole open_clip CLIP model as an mmcl model: its architecture by name, its weights from one checkpoint."""

    name: str = Field(description="open_clip model config name, e.g. ViT-B-32 (`open_clip.list_models()`), "
                      "local-dir:DIR (a folder with open_clip_config.json, as `mmcl export --format open_clip` "
                      "writes), or the path of an open_clip model config JSON file.")
    weights: str | None = Field(
        None, description="An open_clip checkpoint: .safetensors, or a torch file read with weights_only=True (a "
        "training checkpoint's state_dict and DDP 'module.' prefixes are undone); both towers, logit_scale and "
        "logit_bias (if any) are loaded strictly. null: random initialisation of the architecture.")
    image_size: int | None = Field(
        None, gt=0, description="Image size to train and evaluate at; the checkpoint's position embeddings are "
        "resized to it (bicubic, as open_clip's resize_pos_embed). null: the architecture's own.")


class ModelConfig(Section):
    """A multimodal model: one tower per modality, each projecting into a shared embed_dim space; or, with
    `open_clip`, an open_clip model whose towers, embed_dim and temperature come from open_clip's config."""

    open_clip: OpenClipSource | None = Field(
        None, description="Build the model from an open_clip architecture (and checkpoint) instead of listing "
        "towers: fills embed_dim, towers (open_clip_vision + open_clip_text) and the logit scale and bias "
        "initialisation from open_clip's config.")
    embed_dim: int = Field(description="Width of the shared, L2-normalised embedding space.", gt=0)
    towers: dict[str, TowerConfig] = Field(
        description="One tower per modality, keyed by modality name (image, text, audio, ...)."
    )
    logit_scale_init: float | None = Field(
        None, description="Initial log of the temperature multiplier; null: the training objective's choice, ln 10 "
        "with a siglip term (Zhai et al.), else CLIP's ln(1/0.07)."
    )
    logit_scale_max: float = Field(100.0, description="Upper clamp of the exponentiated temperature multiplier.", gt=0)
    logit_bias_init: float | None = Field(
        None, description="Initial logit bias, a parameter only sigmoid losses use; null: the training objective's "
        "choice, -10 with a siglip term (Zhai et al.), else no bias parameter."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_open_clip(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("open_clip"):
            return data
        given = sorted(k for k in ("embed_dim", "towers") if k in data)
        if given:
            raise ValueError(f"give either open_clip or {' and '.join(given)}: open_clip sets them from its config")
        from mmcl.interop.open_clip_import import model_fields

        source = data["open_clip"]
        source = source if isinstance(source, OpenClipSource) else OpenClipSource.model_validate(source)
        return {**model_fields(source, data), **data}

    @field_validator("towers")
    @classmethod
    def _at_least_one(cls, towers: dict[str, Any]) -> dict[str, Any]:
        if not towers:
            raise ValueError("a model needs at least one tower")
        return towers
