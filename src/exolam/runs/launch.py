"""Which process of a multi-process launch this is (torchrun, SLURM, Fabric's ddp launcher): every rank
trains, only rank 0 records rows and writes files."""

from __future__ import annotations

import os


def launched_externally() -> bool:
    """Whether torchrun or SLURM started this process as one rank of several."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def launcher_rank() -> int:
    """This process's global rank under torchrun or SLURM (0 when started alone): only rank 0 of such a
    launch records results (every rank trains)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def rank0() -> bool:
    """False in the ranks > 0 of a multi-process launch (torchrun, SLURM, or the processes Fabric's ddp
    launcher starts with LOCAL_RANK set), which write nothing."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))
