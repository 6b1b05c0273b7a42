"""The side-by-side bench (``python -m cnnbench.bench``) repeated in fresh processes: how much each
backend's median moves from one process to the next.

Runs ``cnnbench.bench`` with ``--processes`` (every backend in one process, interleaved rounds, the
same images and weights; then again in a fresh process, ``processes`` times) and writes its
``--json`` summary: {"processes", "clock", "threads", "batch_size", "per_process": [{"latency":
{backend: s}, "batch": {backend: s per image}, "batches", "load_average", "floor_s", "clock"}]}.
Nothing is measured here: the bench's own code measures.

Job: input weights, manifest (the weights must have its sha256), test_images, test_labels; output
json; settings: the config's ``bench``
section (processes, rounds, images, batch_size, loop_images) with ``backends`` and ``threads``
from ``inference``.
"""

from __future__ import annotations

from cnnbench.bench.__main__ import main as bench
from cnnbench.common.job import Job, run_job
from cnnbench.network.weights import verify_exported


def arguments(job: Job) -> list[str]:
    """The bench's command line for this job."""
    settings = job.settings
    return [
        "--weights",
        str(job.path("input", "weights")),
        "--manifest",
        str(job.path("input", "manifest")),
        "--test-images",
        str(job.path("input", "test_images")),
        "--test-labels",
        str(job.path("input", "test_labels")),
        "--backends",
        *settings["backends"],
        "--processes",
        str(settings["processes"]),
        "--rounds",
        str(settings["rounds"]),
        "--images",
        str(settings["images"]),
        "--batch-size",
        str(settings["batch_size"]),
        "--loop-images",
        str(settings["loop_images"]),
        "--threads",
        str(settings["threads"]),
        "--no-stages",
        "--json",
        str(job.path("output", "json")),
    ]


def run(job: Job) -> None:
    # here, once, so a wrong file is one line (UserError), not a failed child process
    verify_exported(job.path("input", "weights"), job.path("input", "manifest"))
    bench(arguments(job))


if __name__ == "__main__":
    run_job(run)
