"""Training components the pretraining recipe composes: accumulation, checkpoints, logging, launching."""
