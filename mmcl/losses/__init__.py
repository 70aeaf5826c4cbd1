"""Contrastive objectives behind one contract: ``loss(outputs, batch=None) -> dict[str, Tensor]`` of named terms.

``create_loss(name, **options)`` builds a registered loss, ``list_losses()`` names them all; the trainer's
objective is :class:`mmcl.losses.objective.Objective`, a weighted sum of losses listed in the config. Every loss
honours the per-modality presence masks (:mod:`mmcl.losses.rows`) and gives the same value and gradients in one
process and across N (:mod:`mmcl.losses.distributed`). ``logit_scale`` plays 1/τ everywhere.

=============  ==================  =================================================  ===============================
name           module              options (defaults)                                 terms
=============  ==================  =================================================  ===============================
clip           clip                modalities=[image, text]                           clip/<a>-<b>
pairwise       clip                modalities=None (all in outputs), anchor=None      pairwise/<a>-<b> per pair
siglip         siglip              modalities=[image, text], chunk_size=2048          siglip/<a>-<b>
uniformity     geometry            modalities=[image, text], t=2                      uniformity/<m> per modality
alignment      geometry            modalities=[image, text]                           alignment/<a>-<b>
cua            geometry            modalities, align_weight=1, uniformity_weight=1,   cua/clip, /align, /unif-<m>
                                   t=2
cuaxu          geometry            as cua + cross_uniformity_weight=1                 cuaxu/... and cuaxu/xunif
dcl            dcl                 modalities=[image, text],                          dcl/<a>-<b>
                                   negatives="within_and_cross" | "cross_modal"
dclw           dcl                 as dcl + sigma=0.5                                 dclw/<a>-<b>
symile         symile              modalities=[image, text, audio],                   symile/<m1>-<m2>-...
                                   negative_sampling="n" | "n_squared"
                                   (default: n; n_squared for two modalities)
mv_infonce     multiview           modalities=None (all in outputs)                   mv_infonce/<m1>-<m2>-...
mv_dhel        multiview           modalities=None (all in outputs)                   mv_dhel/<m1>-<m2>-...
cwcl           cwcl                modalities=[frozen, trained] = [image, text]       cwcl/<frozen>-<trained>
=============  ==================  =================================================  ===============================
"""

from mmcl.lazy import lazy_exports

__all__ = ["create_loss", "list_losses", "register_loss"]
__getattr__, __dir__ = lazy_exports(__name__, {name: "registry" for name in __all__})
