"""Process-wide settings shared by every step and benchmark: threads, progress bars, load."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import shlex
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


# LLVM's tuning for several AVX-512 CPUs (Intel's Ice Lake, Rocket Lake, Sapphire Rapids; not
# AMD's Zen 4) vectorises 256 bits at a time; this feature string entry lifts that
NO_256_BIT_PREFERENCE = "-prefer-256-bit"


def numba_full_width_vectors() -> None:
    """Let numba vectorise with the CPU's whole vector width: 512 bits where it has AVX-512.

    Under LLVM's 256-bit preference, numba_loops' outer-product block (8 positions by 32 output
    channels: 16 of the 32 AVX-512 registers at full width) needs all 32 registers and spills;
    on a 2-core Xeon that LLVM names rocketlake, numba_loops took 123 us an image at batch 1
    instead of 95. Process-wide: numba builds one target machine per process, when it first
    compiles (or decorates) a function, so call this after ``import numba`` and before that.
    A NUMBA_CPU_FEATURES the user set stays as it is. Numba's disk cache keys machine code by
    the features, so code compiled either way is never mixed up.
    """
    import llvmlite.binding
    import numba

    if numba.config.CPU_FEATURES is not None:
        return
    features = llvmlite.binding.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = f"{features},{NO_256_BIT_PREFERENCE}"


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEPT_MEMORY = 1 << 30  # freed blocks up to this size stay with the process


def keep_freed_memory() -> None:
    """Let this process reuse the memory it frees rather than hand it back to the kernel.

    glibc returns a large freed block to the kernel at once (blocks it got by ``mmap``) or once
    the heap's free top passes a threshold, so a loop that allocates the same large arrays each
    iteration faults every 4 KiB page of them in again, each time. The NumPy training step
    allocates 23-32 MB of fresh arrays: 5 700-8 000 page faults a step (torch's: 2 700-3 500),
    a quarter of its time on this project's virtual machine (150 ms a step with them, 113 ms
    without, at load average 7.5). Both thresholds fixed at 1 GiB: freed memory stays in the
    heap for the next step. Results are unchanged (allocation only). A no-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc (musl, macOS): no mallopt
        return
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    mallopt(M_TRIM_THRESHOLD, KEPT_MEMORY)
    mallopt(M_MMAP_THRESHOLD, KEPT_MEMORY)


def release_blas_threads() -> None:
    """End OpenBLAS's worker threads now; the next BLAS call starts them again (about 0.1 ms).

    After each call, OpenBLAS's pthreads workers (NumPy's BLAS with more than one thread)
    busy-wait for new work for 2**28 CPU cycles (0.1 s at 2.6 GHz) before they sleep. A process
    that alternates NumPy with another thread pool, torch's OpenMP threads in the NumPy trainer's
    twin run, has them spin through the other library's work: one more busy thread than cores,
    and the other pool's barriers wait on threads the scheduler has swapped out. Calling this
    between the two removes that contention and nothing else: the threads and their work
    partitioning are the same, so every result is bit for bit what it was, and NumPy alone or
    torch alone is untouched. (torch's OpenMP workers spin too after each parallel region, but
    only about 3 ms; libgomp offers no call to stop them.)

    Uses OpenBLAS's own ``blas_thread_shutdown_``, the routine it runs before every ``fork``.
    Call it only while no other thread is inside BLAS. A no-op for other BLAS libraries, for
    OpenBLAS built with OpenMP (whose threads are OpenMP's) and for OpenBLAS without the symbol.
    """
    for shutdown in _openblas_thread_shutdowns():
        shutdown()


def blas_threads() -> int:
    """The threads NumPy's OpenBLAS (pthreads) uses now; 1 without one."""
    return max((library.num_threads for library in _openblas_libraries()), default=1)


def set_blas_threads(threads: int) -> None:
    """Only OpenBLAS's thread count (pthreads builds), through its own setter: cheap enough to
    change between the parts of a training step. Lowering it leaves the idle workers spinning
    (``release_blas_threads`` after it ends them; before it, the setter would start them again)."""
    for library in _openblas_libraries():
        library.set_num_threads(threads)


@functools.cache
def _openblas_libraries() -> tuple:
    """threadpoolctl's controller of each loaded pthreads OpenBLAS (looked up once a process)."""
    from threadpoolctl import ThreadpoolController

    return tuple(
        library
        for library in ThreadpoolController().lib_controllers
        if library.internal_api == "openblas"
        and library.info().get("threading_layer") == "pthreads"
    )


@functools.cache
def _openblas_thread_shutdowns() -> tuple:
    """``blas_thread_shutdown_`` of each loaded pthreads OpenBLAS (looked up once a process)."""
    functions = []
    for library in _openblas_libraries():
        function = getattr(ctypes.CDLL(library.filepath), "blas_thread_shutdown_", None)
        if function is not None:
            function.restype, function.argtypes = ctypes.c_int, []
            functions.append(function)
    return tuple(functions)


# The other half of the twin run's contention: after each parallel region, torch's OpenMP
# workers (libgomp) spin GOMP_SPINCOUNT times before they sleep. libgomp's default, 300 000
# spins, is about 10 ms of CPU on this project's Zen 4 machines: after every PyTorch step a
# worker spins through the first third of the NumPy step that follows, on a core OpenBLAS's
# threads need. 30 000 still covers nearly all the gaps between one torch step's own parallel
# regions (its worker sleeps 0.1-0.5 times a step, against none with the default: tens of
# microseconds of a 20-25 ms step) and ends the spin after about 1 ms (0.8 ms measured after
# one region, up to 4 ms after a training step). Threads and work partitioning are unchanged: every
# result is the same bytes. libgomp reads it once, when torch loads it, so it is part of the
# environment a process starts with: the train_numpy rule's command, and bench.training.
MIXED_POOLS_ENVIRONMENT = {"GOMP_SPINCOUNT": "30000"}


def environment_prefix(environment: dict[str, str]) -> str:
    """``environment`` as the words that set it for a shell command: ``"KEY=value "``..."""
    return "".join(f"{name}={shlex.quote(value)} " for name, value in environment.items())


def restart_with(environment: dict[str, str]) -> None:
    """Start this program again (same interpreter, same arguments) with ``environment`` added,
    for settings a library reads only when it loads. Variables already set keep their value;
    returns at once when every one is set."""
    missing = {name: value for name, value in environment.items() if name not in os.environ}
    if missing:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **missing})


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
