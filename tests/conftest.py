"""Suite-wide settings."""

import os

import torch

# One compute thread per process: the tests run beside loader workers and subprocesses on small CI machines,
# where several spinning OpenMP threads per process slow everything down many times over. Subprocesses
# (training runs under test) inherit the setting through the environment.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
