"""Text towers: open_clip's text transformer with its BPE tokenizer, or a local Hugging Face encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from open_clip.transformer import TextTransformer, text_global_pool
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


# Trimmed batches are cut to a multiple of this many tokens: a few distinct shapes (for compiled towers and GPU
# kernels) at little cost.
TRIM_MULTIPLE = 8


def without_trailing_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """`ids` without the columns, past the batch's longest caption (rounded up to TRIM_MULTIPLE), that hold only
    padding: captions are far shorter than the context on average, and the padding costs as much as words."""
    used = (ids != pad_id).any(dim=0).nonzero()
    length = int(used[-1]) + 1 if len(used) else 1
    return ids[:, :min(ids.shape[1], -(-length // TRIM_MULTIPLE) * TRIM_MULTIPLE)]


class OpenClipTextTower(Tower):
    """open_clip's text transformer, fed only the token columns a batch uses when that cannot change its output:
    a causal mask means no token sees the padding after it, and the features are pooled at the end-of-text token
    (argmax/eos) or the first token. Otherwise (bidirectional, padding-masked or CoCa-style class token, last-token
    pooling) it always gets the whole context."""

    def __init__(self, encoder: TextTransformer, **kwargs):
        super().__init__(encoder, **kwargs)
        self.trims = (encoder.attn_mask is not None and encoder.cls_emb is None and not encoder.use_pad_mask
                      and encoder.pool_type in ("argmax", "eos", "first"))

    def trim_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return without_trailing_padding(inputs, self.encoder.pad_id) if self.trims else inputs

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[1]
        if not self.trims or length == self.encoder.num_pos:
            return self.encoder(inputs)
        # open_clip's forward with the causal mask cut to the batch's length (its own forward always passes the
        # whole context's mask, which fits only whole-context batches).
        encoder = self.encoder
        x, _ = encoder._embeds(inputs)
        x = encoder.ln_final(encoder.transformer(x, attn_mask=encoder.attn_mask[:length, :length]))
        pooled = text_global_pool(x, inputs, pool_type=encoder.pool_type, eos_token_id=getattr(encoder, "eos_id", None))
        if encoder.text_projection is None:
            return pooled
        if isinstance(encoder.text_projection, nn.Linear):
            return encoder.text_projection(pooled)
        return pooled @ encoder.text_projection


@register_tower("open_clip_text")
def open_clip_text(cfg: OpenClipTextTowerConfig, embed_dim: int) -> Tower:
    encoder = _build_text_tower(embed_dim, CLIPTextCfg(**cfg.cfg), quick_gelu=cfg.quick_gelu)
    if isinstance(encoder, TextTransformer):
        return OpenClipTextTower(encoder, group_matcher=_OPEN_CLIP_TEXT_GROUPS,
                                 tokenizer=SimpleTokenizer(context_length=cfg.context_length))
    return Tower(encoder, group_matcher=_OPEN_CLIP_TEXT_GROUPS,  # an HF model through open_clip's text_cfg
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


class HFTextTower(Tower):
    """A Hugging Face encoder, fed only the token columns a batch uses: padding is masked out of attention and
    pooling, so cutting the columns that hold only padding leaves the output unchanged."""

    def trim_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return without_trailing_padding(inputs, self.encoder.pad_token_id)


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
    return HFTextTower(encoder, proj, group_matcher=_HF_GROUPS, tokenizer=tokenizer, weights_root="encoder.model")
