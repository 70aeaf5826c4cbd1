"""Training components the pretraining recipe composes: accumulation, checkpoints, data position, FSDP, launching."""
