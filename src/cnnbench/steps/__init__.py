"""Pipeline steps: what the Snakemake rules run, one module each, never imported by the library.

Each runs as ``python -m cnnbench.steps.<step> JOB`` (the convention in ``cnnbench.common.job``):
download, train, train_numpy, export, gradcheck, worked_example, infer, gather, throughput, agreement,
environment, bench_processes, machine, layer_times.
"""

from __future__ import annotations

from cnnbench.common.job import Job


def verified_test_split(job: Job):
    """The architecture of the job's exported weights (their sha256 checked against its
    manifest) and the test split (images, labels) for it: where every step that runs the network
    on test images starts."""
    from cnnbench.data import load_split
    from cnnbench.network.weights import verify_exported

    architecture = verify_exported(job.path("input", "weights"), job.path("input", "manifest"))
    images, labels = load_split(
        job.path("input", "test_images"), job.path("input", "test_labels"), architecture
    )
    return architecture, images, labels
