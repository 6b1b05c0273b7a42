# Shared definitions for all rules: paths, parameters derived from the config, thread accounting.

import json
import os
import re
import shlex
from pathlib import Path

# Rules run `python -m cnnbench...`; putting src/ on their path makes that work in any environment
# (the project's venv, a --sdm conda env, a cluster node) without installing the package there.
# (The Snakefile has put it on this process's path already, for the imports below.)
SRC = str(Path(workflow.basedir) / "src")
# (Doubled braces: Snakemake formats the prefix like every shell command.)
shell.prefix(
    "set -euo pipefail; export PYTHONPATH=" + shlex.quote(SRC) + "${{PYTHONPATH:+:$PYTHONPATH}}; "
)

from cnnbench.backends import SLOW  # noqa: E402
from cnnbench.common.runtime import declared_threads  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402

ENV = "../../envs/cnnbench.yaml"
DATASET = config["dataset"]
TRAIN = config["train"]
TRAIN_NUMPY = config["train_numpy"]
INFERENCE = config["inference"]
GRADCHECK = config["gradcheck"]
BENCH = config["bench"]
BACKENDS = INFERENCE["backends"]
MACHINE_CORES = os.cpu_count() or 1


def total_cores():
    """--cores of a local run, or None where each job gets its own allocation: when submitting
    to a cluster executor, and inside the cluster job itself (`workflow.remote_exec`), where
    Snakemake runs again with --cores set to the node's cores, not the job's allocation. Either
    way every job then declares the threads it uses: the threads it was submitted with."""
    if workflow.remote_exec or not workflow.local_exec:
        return None
    try:
        return workflow.cores
    except WorkflowError:
        return None


CORES = total_cores()
# Before any job, dry runs included: a timed job with more busy threads than cores measures
# contention, not the backend (README, "Honest timings").
TIMED_CORES = min(CORES or MACHINE_CORES, MACHINE_CORES)
if workflow.is_main_process and INFERENCE["threads"] > TIMED_CORES:
    limit = (
        f"--cores is {CORES}"
        if CORES and CORES < MACHINE_CORES
        else f"this machine has {MACHINE_CORES} cores"
    )
    logger.warning(
        f"inference.threads is {INFERENCE['threads']} but {limit}: every "
        f"timed job would run {INFERENCE['threads']} busy threads on {TIMED_CORES} core(s) and "
        f"time the contention. Set inference.threads to at most {TIMED_CORES}."
    )
if workflow.is_main_process and not workflow.dryrun and CORES:
    if CORES > MACHINE_CORES:
        logger.warning(
            f"--cores {CORES} exceeds this machine's {MACHINE_CORES} cores: every job declares "
            "proportionally more threads, so no more threads are busy than there are cores "
            "while a timed job runs (timings stay honest)."
        )
    if CORES < TRAIN["threads"]:
        logger.warning(
            f"--cores {CORES} is below train.threads ({TRAIN['threads']}): training still uses "
            f"{TRAIN['threads']} threads (the weights depend on it), sharing {CORES} core(s)."
        )


def threads_for(actual):
    """Threads a rule declares for a job that really uses `actual` threads (see declared_threads)."""
    return declared_threads(actual, CORES, MACHINE_CORES)


def whole_machine(actual):
    """Threads a short timed job declares to run alone: all of --cores (it still uses `actual`).
    On a cluster (no CORES, see total_cores) each job has its own allocation: it declares what
    it uses."""
    return max(CORES or 0, threads_for(actual))


def timed_inference_threads(wildcards):
    """The loop backend's shards share the machine; every other backend runs alone."""
    if wildcards.backend in SLOW:
        return threads_for(INFERENCE["threads"])
    return whole_machine(INFERENCE["threads"])


def data_path(role):
    """A dataset file, as an input marked ancient. A file is what its checksums say, and the
    download step verifies them, so re-fetching the same bytes (say, from another mirror) never
    reruns training or inference; a different file name does."""
    return ancient(f"results/data/{DATASET['files'][role]['file']}")


DATA_FILES = {spec["file"]: spec for spec in DATASET["files"].values()}
TEST_DATA = {"test_images": data_path("test_images"), "test_labels": data_path("test_labels")}
WEIGHTS = "results/model/weights.npz"
WEIGHTS_NUMPY = "results/model/weights_numpy.npz"  # the NumPy trainer's (rule train_numpy)
# Written with the weights by export_weights; every rule reading WEIGHTS also reads this, and its
# step refuses weights whose sha256 is not the one recorded here (cnnbench.network.weights.load_verified).
MANIFEST = "results/model/manifest.json"
MANIFEST_NUMPY = "results/model/manifest_numpy.json"  # likewise for WEIGHTS_NUMPY


def shards_of(backend):
    return INFERENCE["shards"] if backend in SLOW else 1


# The NumPy-trained weights go through every fast backend (workflow/rules/train.smk): the loop
# backend, im2col's exact twin, would take about an hour more.
NUMPY_TRAINED_BACKENDS = [backend for backend in BACKENDS if backend not in SLOW]


def shard_files(extension):
    """Input function: every shard's file of one backend."""
    return lambda wildcards: [
        f"results/inference/shards/{wildcards.backend}/{shard}.{extension}"
        for shard in range(shards_of(wildcards.backend))
    ]


def job(settings=None):
    """The `job` param of every rule: its named inputs and outputs and its settings (a config
    section, or a function of the wildcards) as one shell-quoted JSON word, the convention of
    cnnbench.common.job. Steps read everything from it, so nothing is restated as flags."""

    def make(wildcards, input, output):
        value = settings(wildcards) if callable(settings) else settings
        files = {"input": dict(input.items()), "output": dict(output.items())}
        return shlex.quote(json.dumps({**files, "settings": value or {}}, sort_keys=True))

    return make


def step(name):
    """The shell command of a rule whose step is cnnbench.steps.<name>."""
    return f"python -m cnnbench.steps.{name} {{params.job}} > {{log}} 2>&1"


# Jobs of the benchmarked rules with wildcards, as the run makes them (each from the same values
# its consumers use); every other benchmarked rule runs once.
BENCHMARKED_JOBS = {
    "infer_shard": [
        {"backend": backend, "shard": shard}
        for backend in BACKENDS
        for shard in range(shards_of(backend))
    ],
    "infer_numpy_trained": [{"backend": backend} for backend in NUMPY_TRAINED_BACKENDS],
}


def every_benchmark():
    """Every benchmark file the run writes: each rule's own `benchmark:` path, once per job. A
    benchmarked rule with wildcards must name its jobs in BENCHMARKED_JOBS (else the workflow
    stops here), so no rule's wall time silently misses the report's table and total."""
    files = []
    for declared in workflow.rules:
        if not declared.benchmark:
            continue
        pattern = getattr(rules, declared.name).benchmark
        if declared.wildcard_names and declared.name not in BENCHMARKED_JOBS:
            raise WorkflowError(
                f"benchmarked per {sorted(declared.wildcard_names)}, rule {declared.name} "
                "needs its jobs in BENCHMARKED_JOBS (workflow/rules/common.smk)"
            )
        for wildcards in BENCHMARKED_JOBS.get(declared.name, [{}]):
            files.append(pattern.format(**wildcards))
    return files
