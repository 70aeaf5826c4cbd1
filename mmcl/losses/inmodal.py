"""CleanCLIP's in-modal (self-supervised) term: each modality against a second augmented view of itself.

Bansal et al., "CleanCLIP: Mitigating Data Poisoning Attacks in Multimodal Contrastive Learning", ICCV 2023,
Eq. 2. With unit embeddings I_j of an image and Ĩ_j of its augmented view (likewise T_j, T̃_j for its caption),
s = logit_scale (= 1/τ) and N rows::

    L_SS = −1/(2N) [ Σ_j log( exp(s⟨I_j, Ĩ_j⟩) / Σ_k exp(s⟨I_j, Ĩ_k⟩) )
                   + Σ_j log( exp(s⟨T_j, T̃_j⟩) / Σ_k exp(s⟨T_j, T̃_k⟩) ) ]

one direction per modality (a sample's view is its positive among the batch's views), averaged over the
modalities: with M listed modalities the 1/2 is 1/M. CleanCLIP's total is λ1·L_CLIP + λ2·L_SS, which in mmcl is a
`clip` term of weight λ1 beside this `inmodal` term of weight λ2 (the paper uses λ1 = λ2 = 1). The views come from
`data.second_view` (mmcl.data.views). Rows are those having the modality (its mask); across ranks local rows
meet gathered columns, as in every loss here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mmcl.data.views import view_key
from mmcl.losses.registry import LossOptionError, register_loss
from mmcl.losses.rows import check_modalities, info_nce, select


@register_loss("inmodal")
class InModalLoss(nn.Module):
    """L_SS over ``modalities`` (default image and text); returns ``{"inmodal/<modalities>": loss}``."""

    def __init__(self, modalities: Sequence[str] = ("image", "text")):
        super().__init__()
        self.modalities = check_modalities("inmodal", modalities, at_least=1)
        self.views = self.modalities  # the second views it reads (checked against data.second_view)

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        terms = []
        for m in self.modalities:
            view = view_key(m)
            if view not in outputs:
                raise LossOptionError(f"loss 'inmodal' on {m} needs a second view of {m}: set data.second_view "
                                      f"with {m} among its modalities")
            rows = select(outputs, batch, (m, view))
            logits = outputs["logit_scale"] * rows.local[m] @ rows.glob[view].T
            terms.append(info_nce(logits, rows.positives).sum() * rows.share)
        return {f"inmodal/{'-'.join(self.modalities)}": sum(terms) / len(terms)}
