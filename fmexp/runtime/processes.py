"""Worker processes that share the machine's cores instead of fighting over them.

Torch runs one OpenMP thread per core; two processes each doing so on 2 cores have run a step 10x
slower. Each of ``workers`` processes gets ``cores // workers`` threads (at least one).

The processes are forked from a fork server that imported the job's module (and with it torch) once,
so a pool of three pays for one ``import torch``, not three side by side. The server itself is a
fresh single-threaded process: nothing of the caller's state, threads or OpenMP pool is inherited.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

__all__ = ["threads_per_worker", "run_in_processes", "log_to_stderr"]


def log_to_stderr(level: int = logging.INFO) -> None:
    """Progress lines on stderr, each with the time: the command's, and its worker processes'."""
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


def _init_worker(threads: int, log_level: int | None) -> None:
    torch.set_num_threads(threads)
    if log_level is not None:
        log_to_stderr(log_level)


def threads_per_worker(workers: int) -> int:
    """``cores // workers``, at least one, counting the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def run_in_processes(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``fn(*job)`` for every job in ``workers`` processes; the results in job order. An exception in a
    job is raised here once every job has ended."""
    root = logging.getLogger()
    log_level = root.level if root.handlers else None  # workers log as this process does
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([fn.__module__])  # takes effect when this process starts its server
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(threads_per_worker(workers), log_level)
    ) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]
