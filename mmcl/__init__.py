"""mmcl: CLIP-style multimodal contrastive pretraining (image, text, audio)."""

__version__ = "0.1.0"
