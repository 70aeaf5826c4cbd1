"""Text towers: open_clip's text transformer with its BPE tokenizer, or a local Hugging Face encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from torch import nn

from mmcl.errors import UserError
from mmcl.models.config import HFTextTowerConfig, OpenClipTextTowerConfig
from mmcl.models.towers.base import Tower, register_tower

_OPEN_CLIP_TEXT_GROUPS = {
    "stem": r"^encoder\.(?:token_embedding|positional_embedding|cls_emb)",
    "blocks": [(r"^encoder\.transformer\.resblocks\.(\d+)", None)],
}
# Hugging Face encoders name their blocks `...layer.N` (BERT, RoBERTa, DistilBERT) or `layers.N` (ModernBERT).
_HF_GROUPS = {
    "stem": r"^encoder\.model\.(?:.*\.)?embeddings?\.",
    "blocks": [(r"^encoder\.model\.(?:.*\.)?(?:layer|layers)\.(\d+)\.", None)],
}


@register_tower("open_clip_text")
def open_clip_text(cfg: OpenClipTextTowerConfig, embed_dim: int) -> Tower:
    encoder = _build_text_tower(embed_dim, CLIPTextCfg(**cfg.cfg), quick_gelu=cfg.quick_gelu)
    return Tower(encoder, group_matcher=_OPEN_CLIP_TEXT_GROUPS,
                 tokenizer=SimpleTokenizer(context_length=cfg.context_length))


class HFTextEncoder(nn.Module):
    """A transformers encoder pooled to one vector per caption.

    The batch carries token ids only, so the attention mask is rebuilt here from the tokenizer's pad id.
    """

    def __init__(self, model: nn.Module, pad_token_id: int, pooling: str):
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id
        self.pooling = pooling

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_token_id).long()
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            # Non-reentrant checkpointing still back-propagates when the embeddings are locked.
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_disable()


@register_tower("hf_text")
def hf_text(cfg: HFTextTowerConfig, embed_dim: int) -> Tower:
    from transformers import AutoConfig, AutoModel

    if not (Path(cfg.path) / "config.json").is_file():
        raise UserError(f"{cfg.path}: not a Hugging Face model directory (no config.json)")
    try:
        tokenizer = HFTokenizer(cfg.path, context_length=cfg.context_length, local_files_only=True)
        if cfg.pretrained:
            model = AutoModel.from_pretrained(cfg.path, local_files_only=True)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(cfg.path, local_files_only=True))
    except (OSError, ValueError) as err:  # transformers' errors for missing or unreadable files
        raise UserError(f"{cfg.path}: cannot load the Hugging Face encoder: {err}") from None
    if getattr(model, "pooler", None) is not None:
        # Pooling reads last_hidden_state; an unused pooler head would only hold never-trained parameters.
        model.pooler = None
    if tokenizer.tokenizer.pad_token_id is None:
        raise UserError(f"{cfg.path}: the tokenizer has no pad token, which the tower needs to mask padding")
    encoder = HFTextEncoder(model, tokenizer.tokenizer.pad_token_id, cfg.pooling)
    if cfg.proj == "none" and encoder.width != embed_dim:
        raise UserError(f"{cfg.path}: proj none needs embed_dim equal to the encoder width {encoder.width}, "
                        f"not {embed_dim}")
    if cfg.context_length > model.config.max_position_embeddings:
        raise UserError(f"{cfg.path}: context_length {cfg.context_length} exceeds the encoder's "
                        f"max_position_embeddings {model.config.max_position_embeddings}")
    proj = nn.Linear(encoder.width, embed_dim, bias=False) if cfg.proj == "linear" else None
    return Tower(encoder, proj, group_matcher=_HF_GROUPS, tokenizer=tokenizer, weights_root="encoder.model")
