"""Evaluation datasets read straight from files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from mmcl.data import image
from mmcl.errors import UserError

log = logging.getLogger("mmcl.eval")


class ClassFolderImages(torch.utils.data.Dataset):
    """Images laid out `ROOT/CLASS/NAME.ext`; class names are the folder names with `_` read as spaces."""

    def __init__(self, root: str | Path, transform: Callable):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: evaluation folder not found")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
        if not class_dirs:
            raise UserError(f"{root}: expected one sub-folder per class (ROOT/CLASS/NAME.jpg), found none")
        self.classnames = [d.name.replace("_", " ") for d in class_dirs]
        self.items = [
            (path, label)
            for label, d in enumerate(class_dirs)
            for path in sorted(d.iterdir())
            if path.suffix.lower().lstrip(".") in image.EXTENSIONS
        ]
        if not self.items:
            raise UserError(f"{root}: no images ({', '.join(image.EXTENSIONS)}) in its class folders")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        """(image tensor, label), or None for an unreadable file: `collate_skipping` drops and counts it."""
        path, label = self.items[index]
        try:
            img = image.decode(path.read_bytes())
        except Exception as err:  # whatever the decoder raised, this one file is unusable
            log.warning("skipped %s: cannot decode image: %s", path, err)
            return None
        return self.transform(img), label


def collate_skipping(items: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the readable items; also return how many were skipped."""
    good = [item for item in items if item is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(items)
    inputs = torch.stack([x for x, _ in good])
    labels = torch.tensor([y for _, y in good], dtype=torch.long)
    return inputs, labels, len(items) - len(good)
