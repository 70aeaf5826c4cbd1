"""Every sample of a shard set embedded as a pair: its media (image or audio) and its first caption."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmcl.audit.shards import AuditedShards, split_key
from mmcl.eval.embed import Loading, check_modalities, embed_source


@dataclass
class Pairs:
    """Row i of `media` [N, d] and `text` [N, d] (float32 unit vectors) is sample `keys[i]` = (shard, key); `skipped`
    counts the samples left out, by reason."""

    keys: list[tuple[str, str]]
    media: torch.Tensor
    text: torch.Tensor
    skipped: dict[str, int]


def first_captions(text: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Each item's first caption embedding (captions come grouped by item, in order): the caption `mmcl shards
    poison` replaces, and one row per sample whatever its number of captions."""
    first = torch.ones_like(owner, dtype=torch.bool)
    first[1:] = owner[1:] != owner[:-1]
    return text[first]


def embed_pairs(model, transforms: dict, tokenizer, source: AuditedShards, modality: str, loading: Loading) -> Pairs:
    """Embed `modality` and text of every sample that has both and decodes, in shard order. With
    `loading.world_size` > 1 each process embeds its share of the shards and every process gets them all.
    Non-finite embeddings are refused naming their samples (`embed_source`)."""
    check_modalities(model, [modality, "text"], f"auditing {modality}-text pairs")
    data = embed_source(model, source, [modality, "text"], transforms, tokenizer, loading)
    return Pairs([split_key(key) for key in data.keys], data.features[modality],
                 first_captions(data.features["text"], data.text_owner), data.skipped)
