"""The conditions timings were taken under.

Job: output json; settings {"threads": the config's inference.threads}. Records the CPU, core
counts, the thread setting (applied first, so the BLAS entries show what timed jobs get),
Python and library versions, BLAS vendor and kernel (threadpoolctl), numba's target CPU and
features, any OPENBLAS_* tuning variables, load average, platform and a timestamp.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path

from cnnbench.common.files import write_json
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import (
    NO_256_BIT_PREFERENCE,
    load_average,
    numba_full_width_vectors,
    set_threads,
)

PACKAGES = (
    "numpy",
    "torch",
    "numba",
    "llvmlite",
    "onnx",
    "onnxruntime",
    "pandas",
    "threadpoolctl",
    "snakemake",
)


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), else what platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect(threads: int) -> dict:
    """The environment record, after applying ``threads`` to BLAS, torch and numba."""
    # before importing torch and numba, as a timed job does: numba reads NUMBA_NUM_THREADS at
    # import and refuses to compile once it differs from the threads it launched
    set_threads(threads)
    import llvmlite.binding
    import numba
    import psutil
    import torch
    from threadpoolctl import threadpool_info

    numba_full_width_vectors()  # as numba_loops compiles
    features = (
        numba.config.CPU_FEATURES or llvmlite.binding.get_host_cpu_features().flatten()
    ).split(",")
    load = load_average()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "blas": threadpool_info(),
        "blas_environment": {
            k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS")
        },
        "numba_cpu": {  # what numba compiles for (NUMBA_CPU_NAME/FEATURES, where set)
            "name": numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name(),
            "features": sorted(feature[1:] for feature in features if feature.startswith("+")),
            # LLVM's 256-bit preference lifted (numba_full_width_vectors: AVX-512 CPUs)
            "full_width_vectors": NO_256_BIT_PREFERENCE in features,
        },
        "load_average": load,
        "platform": platform.platform(),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def run(job: Job) -> None:
    write_json(collect(job.settings["threads"]), job.path("output", "json"))


if __name__ == "__main__":
    run_job(run)
