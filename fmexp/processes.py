"""Worker processes that share the machine's cores instead of fighting over them.

Torch runs one OpenMP thread per core; two processes each doing so on 2 cores have run a step 10x
slower. Each of ``workers`` spawned processes gets ``cores // workers`` threads (at least one).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import torch

__all__ = ["threads_per_worker", "run_in_processes"]


def threads_per_worker(workers: int) -> int:
    """``cores // workers``, at least one, counting the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def run_in_processes(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``fn(*job)`` for every job in ``workers`` spawned processes; the results in job order. An
    exception in a job is raised here once every job has ended."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(threads_per_worker(workers),)) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]
