"""The loss section of a training config: a list of weighted terms."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mmcl.config import Section


class LossTermConfig(Section):
    """One entry of the objective: which loss, its weight in the total, its options."""

    name: str = Field(description="registered loss name, e.g. clip, siglip, cua, symile (see mmcl.losses.list_losses())")
    weight: float = Field(1.0, description="multiplier of this loss in the total objective")
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the loss, e.g. {modalities: [image, text]}"
    )
