"""Embed every usable item of a source with a model, in source order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from mmcl.data.image import ImageLimits
from mmcl.errors import UserError
from mmcl.eval.cache import DecodedCache
from mmcl.eval.datasets import Source
from mmcl.eval.loading import DecodedBatches
from mmcl.eval.metrics import nonfinite_rows
from mmcl.eval.tasks import AudioWindowsConfig


@dataclass
class Loading:
    """How to read and run the data. `cache`, which the caller keeps across calls (e.g. a trainer's periodic
    evaluation), holds decoded batches within its memory budget, so later calls skip decoding."""

    device: torch.device = torch.device("cpu")
    batch_size: int = 64
    num_workers: int = 0
    cache: DecodedCache | None = None
    rank: int = 0  # with world_size > 1, this process embeds its share of the parts and all gather the rest
    world_size: int = 1
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    audio_windows: AudioWindowsConfig | None = None  # every window of long audio items (mode all), else the first


@dataclass
class Embedded:
    """Embeddings in source order: `features[m]` is [N, D] for media, [M, D] for text (all captions), with
    `text_owner[j]` the item caption j belongs to; `labels` is -1 where an item has none or a label list, and
    `label_lists` holds each item's label list (multi-label data) or None."""

    keys: list[str]
    features: dict[str, torch.Tensor]
    labels: torch.Tensor
    text_owner: torch.Tensor | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    label_lists: list[tuple[int, ...] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def check_modalities(model, modalities: list[str], what: str) -> None:
    missing = [m for m in modalities if m not in model.modalities]
    if missing:
        raise UserError(f"{what} needs the model to have {' and '.join(missing)} tower(s); it has "
                        f"{', '.join(model.modalities)}")


FORWARD_ROWS = 32  # rows per forward pass; see `encode`


@torch.no_grad()
def encode(model, modality: str, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[N, D] float32 embeddings on the CPU, FORWARD_ROWS rows per forward pass (the last group may be short).

    A row's embedding can differ in the last bits with the shape of the batch it was computed in (kernels
    block matrix products by shape), which flips exact ties such as two identical captions. Callers pass
    groups whose composition depends only on the data, so the numbers do not depend on batch size or workers.
    """
    return torch.cat([model.encode(modality, inputs[i:i + FORWARD_ROWS].to(device)).float().cpu()
                      for i in range(0, inputs.shape[0], FORWARD_ROWS)])


def refuse_nonfinite(embeddings: torch.Tensor, owners: list[str], what: str, unit: str) -> None:
    """UserError if any row is NaN/inf, counting and naming the distinct `owners` (one per row) of bad rows;
    `unit` names what they are, e.g. "item(s)".

    Checked here, where rows still have names, so the user learns which inputs broke the model; the metrics
    refuse non-finite input again for library callers.
    """
    bad = nonfinite_rows(embeddings).tolist()
    if bad:
        named = list(dict.fromkeys(owners[i] for i in bad))
        raise UserError(f"{what} of {len(named)} {unit} are not finite (NaN/inf), first: "
                        f"{', '.join(repr(n) for n in named[:3])}: the model has diverged or its weights are "
                        "corrupt; refusing to score")


def embed_text(model, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """[len(texts), D] text embeddings."""
    return encode(model, "text", tokenizer(texts), device)


def encode_captions(model, tokens: torch.Tensor, owner: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Captions of a batch, encoded per forward group of their items, so a group's captions share passes."""
    group = owner // FORWARD_ROWS
    return torch.cat([encode(model, "text", tokens[group == g], device) for g in group.unique()])


def encode_windows(model, modality: str, windows: torch.Tensor, owner: torch.Tensor, items: int,
                   device: torch.device) -> torch.Tensor:
    """[items, D]: each item's windows encoded (per forward group of their items, as captions are), averaged and
    re-normalised."""
    group = owner // FORWARD_ROWS
    encoded = torch.cat([encode(model, modality, windows[group == g], device) for g in group.unique()])
    sums = torch.zeros(items, encoded.shape[-1], dtype=encoded.dtype).index_add_(0, owner, encoded)
    return torch.nn.functional.normalize(sums / torch.bincount(owner, minlength=items)[:, None], dim=-1)


@torch.no_grad()
def embed_source(model, source: Source, modalities: list[str], transforms: dict, tokenizer, loading: Loading,
                 need_labels: bool = False) -> Embedded:
    """Embed `modalities` of every item that has all of them (and a label if `need_labels`)."""
    if "text" in modalities and tokenizer is None:
        raise UserError("this evaluation needs text but the model has no tokenizer")
    missing = [m for m in modalities if m != "text" and m not in transforms]
    if missing:
        raise UserError(f"the model has no evaluation transform for {missing}")
    windows = loading.audio_windows if "audio" in modalities else None
    key = (str(source.path), source.split, source.format, tuple(modalities), need_labels,
           None if windows is None else windows.model_dump_json(),
           # a transform that alters the input (a backdoor trigger) names itself: its batches are other batches
           tuple(getattr(transforms.get(m), "cache_tag", None) for m in modalities))

    def decode():
        dataset = DecodedBatches(source, modalities, transforms, tokenizer, loading.batch_size, need_labels,
                                 FORWARD_ROWS, loading.image_limits, loading.rank, loading.world_size, windows)
        return torch.utils.data.DataLoader(dataset, batch_size=None,
                                           num_workers=min(loading.num_workers, len(dataset.parts)))

    batches = loading.cache.batches(key, decode) if loading.cache is not None else decode()
    device = loading.device
    positions, keys, labels, label_lists, owners = [], [], [], [], []
    features: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    skipped: Counter[str] = Counter()
    seen = 0
    for batch in batches:
        skipped.update(batch["skipped"])
        if not batch["key"]:
            continue
        positions.append(batch["position"])
        keys.extend(batch["key"])
        labels.append(batch["label"])
        label_lists.extend(batch["label_list"])
        for m in modalities:
            if m == "text":
                owners.append(batch["text_owner"] + seen)
                features[m].append(encode_captions(model, batch["text"], batch["text_owner"], device))
            elif f"{m}_owner" in batch:  # every window of each item
                features[m].append(encode_windows(model, m, batch[m], batch[f"{m}_owner"], len(batch["key"]),
                                                  device))
            else:
                features[m].append(encode(model, m, batch[m], device))
        seen += len(batch["key"])
    if loading.world_size > 1:
        positions, keys, labels, label_lists, owners, features, skipped = _gathered(
            positions, keys, labels, label_lists, owners, features, skipped, loading.world_size)
    if not keys:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) or "it holds no samples"
        raise UserError(f"{source.path}: no usable samples with {'+'.join(modalities)}"
                        + (" and a label" if need_labels else "") + f" ({reasons})")
    # Workers finish in any order: sort by (part, index) to restore source order.
    position = torch.cat(positions)
    order = torch.from_numpy((position[:, 0] * (position[:, 1].max() + 1) + position[:, 1]).numpy().argsort(kind="stable"))
    rank_of = torch.empty_like(order)
    rank_of[order] = torch.arange(len(order))
    keys = [keys[i] for i in order.tolist()]
    label_lists = [label_lists[i] for i in order.tolist()]
    out = {m: torch.cat(v)[order] for m, v in features.items() if m != "text"}
    text_owner = None
    if "text" in modalities:
        owner = rank_of[torch.cat(owners)]
        text_order = torch.from_numpy(owner.numpy().argsort(kind="stable"))  # stable: captions keep their order
        out["text"] = torch.cat(features["text"])[text_order]
        text_owner = owner[text_order]
    for m, embeddings in out.items():
        refuse_nonfinite(embeddings, keys if m != "text" else [keys[i] for i in text_owner.tolist()],
                         f"{m} embeddings", "item(s)")
    return Embedded(keys, out, torch.cat(labels)[order], text_owner, dict(skipped), label_lists)


def _gathered(positions, keys, labels, label_lists, owners, features, skipped, world_size: int):
    """Every process's share, on every process: parts keep their global positions, so the caller's sort restores
    source order, and caption owners are shifted past the items of the processes before."""
    shares = [None] * world_size
    torch.distributed.all_gather_object(shares, (positions, keys, labels, label_lists, owners, features, skipped))
    positions, keys, labels, label_lists, owners, skipped, offset = [], [], [], [], [], Counter(), 0
    features = {m: [] for m in shares[0][5]}
    for share_positions, share_keys, share_labels, share_lists, share_owners, share_features, share_skipped in shares:
        positions += share_positions
        labels += share_labels
        label_lists += share_lists  # one per item, in the same order as the keys
        owners += [o + offset for o in share_owners]
        for m, chunks in share_features.items():
            features[m] += chunks
        skipped.update(share_skipped)
        keys += share_keys
        offset += len(share_keys)
    return positions, keys, labels, label_lists, owners, features, skipped
