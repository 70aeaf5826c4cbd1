"""Reading tower weights from local files without ever running code from them, with a report of what matched."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from open_clip.model import convert_to_custom_text_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mmcl.errors import UserError

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or from a torch file through `torch.load(weights_only=True)`.

    Training checkpoints nest the weights under `state_dict` or `model` and DDP prefixes them with
    `module.`; both are undone.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as err:
            raise UserError(f"{path}: not a valid safetensors file ({err})") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: refused: the file holds objects other than tensors, and unpickling them could run "
                        f"code ({reason}); convert it to safetensors") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise UserError(f"{path}: holds a {type(data).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in data.items() if isinstance(v, torch.Tensor)}


@dataclass
class LoadReport:
    path: str
    loaded: int
    missing: list[str]
    unexpected: list[str]

    def __str__(self) -> str:
        def names(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        text = f"{self.path}: loaded {self.loaded} tensors"
        if self.missing:
            text += f"; missing (left at init): {names(self.missing)}"
        if self.unexpected:
            text += f"; unexpected (ignored): {names(self.unexpected)}"
        return text


def load_weights(module: nn.Module, path: str, prefix: str = "", strict: bool = True) -> LoadReport:
    """Load the keys under `prefix` of a weights file into `module`; raise on a mismatch when `strict`."""
    # open_clip's CLIP checkpoints keep text weights at the top level; its converter moves them under `text.`.
    state = convert_to_custom_text_state_dict(read_state_dict(path))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise UserError(f"{path}: no keys start with {prefix!r}; set weights.prefix to one of the file's prefixes")
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise UserError(f"{path}: weights do not fit the tower: {err}") from None
    report = LoadReport(str(path), len(state) - len(result.unexpected_keys), result.missing_keys,
                        result.unexpected_keys)
    if strict and (report.missing or report.unexpected):
        raise UserError(f"{report}; set weights.strict: false to load anyway, or weights.prefix to select keys")
    log.log(logging.WARNING if report.missing or report.unexpected else logging.INFO, "%s", report)
    return report
