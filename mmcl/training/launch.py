"""`mmcl train --num-processes N`: N local processes through torchrun (gloo on CPU, NCCL on GPUs).

For users without an Accelerate config; `accelerate launch` and `torchrun` run the same module directly.
"""

from __future__ import annotations

import subprocess
import sys


def launch_local(num_processes: int, module: str, args: list[str]) -> int:
    """Run `python -m module args...` in `num_processes` processes on this machine; returns the exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
               "-m", module, *args]
    return subprocess.call(command)
