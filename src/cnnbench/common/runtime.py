"""Process-wide settings shared by every step and benchmark: threads, progress bars, load."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def set_threads(threads: int) -> None:
    """Use exactly ``threads`` threads in BLAS, torch and numba (whichever are loaded or loadable).

    Environment variables cover libraries not yet imported; threadpoolctl and the libraries' own
    setters cover those already loaded.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for variable in _THREAD_VARIABLES:
        # numba refuses a changed NUMBA_NUM_THREADS once loaded; numba.set_num_threads covers it.
        if not (variable == "NUMBA_NUM_THREADS" and "numba" in sys.modules):
            os.environ[variable] = str(threads)
    # numba first: its first set_num_threads starts its OpenMP thread pool, which resets torch's
    # thread count to NUMBA_NUM_THREADS once torch has read it (torch 2.13, numba's omp layer);
    # threadpoolctl and torch then set the final counts.
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)


@contextlib.contextmanager
def exit_on_signals(signals=(signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into SystemExit(128 + signal) inside the block, so every
    ``finally`` (``atomic_output``'s removal of its temporary file) runs before the process ends.
    Python's default for SIGTERM is to die on the spot, leaving temporary files behind."""

    def stop(number, frame):
        name = signal.Signals(number).name
        print(f"stopped by {name}: removing temporary files", file=sys.stderr)
        raise SystemExit(128 + number)

    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = {number: signal.signal(number, stop) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def declared_threads(actual: int, workflow_cores: int | None, machine_cores: int) -> int:
    """Threads a Snakemake job must declare so that busy threads never exceed the machine's cores.

    With ``--cores`` above the machine's core count, Snakemake would run more threads than there
    are cores and distort every timing. Scaling each job's declaration by cores/machine keeps the
    sum of declared threads within ``--cores`` exactly when the real threads fit the machine.
    On a cluster (no ``--cores`` limit) and when ``--cores`` fits the machine, jobs declare what
    they use.
    """
    if not workflow_cores or workflow_cores <= machine_cores:
        return actual
    return min(workflow_cores, math.ceil(actual * workflow_cores / machine_cores))


def progress(iterable, **options):
    """A tqdm bar on stderr; in a log file (not a terminal) it redraws every 10 s, not constantly."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, file=sys.stderr, mininterval=0.1 if interactive else 10.0, **options)


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, where the platform has them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
