"""Where this process sits in a ``torchrun`` launch, read from the environment torchrun sets (no
torch import: every stage's runner asks), and the command that starts such a launch."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from fmexp.errors import ConfigError

__all__ = ["World", "world", "launched", "torchrun_command"]


@dataclass(frozen=True)
class World:
    """This process's place in the launch: ``rank`` of ``size``, and its GPU index on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and evaluates."""
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size``: contiguous, equal blocks."""
        if batch_size % self.size:
            raise ConfigError(
                f"train.batch_size: the global batch {batch_size} must split evenly over the {self.size} processes"
                f" of this launch; use a multiple of {self.size}"
            )
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)


def world() -> World:
    """The launch as torchrun's environment states it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one
    process outside torchrun."""
    env = os.environ
    return World(
        rank=int(env.get("RANK", 0)), size=int(env.get("WORLD_SIZE", 1)), local_rank=int(env.get("LOCAL_RANK", 0))
    )


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """``torchrun --standalone --nproc-per-node N -m fmexp ARGS`` on this interpreter: one node, a
    rendezvous on a free local port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "fmexp",
        *args,
    ]
