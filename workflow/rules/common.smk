# Shared definitions for all rules: paths, parameters derived from the config, thread accounting,
# and what Snakemake tracks so that an edit reruns exactly the jobs it affects (README, section
# What reruns when): each rule's settings (a recorded param) and the source files it runs (inputs).

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

from cnnbench.backends import SLOW, module_name  # noqa: E402
from cnnbench.common.sources import source_files  # noqa: E402
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
    """A dataset file. Its download reruns only when the file's entry in dataset.files changes
    (or the file is missing), so the jobs reading it rerun exactly then: the download step
    verifies every file against its checksums, so neither the mirror it came from nor the code
    that fetched it can change what it holds (so the download tracks neither). Not ancient(),
    as when the download reruns, Snakemake would skip every other check (changed settings too)
    of the jobs behind an ancient input."""
    return f"results/data/{DATASET['files'][role]['file']}"


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


def infer_settings(backend, shard):
    """The infer step's settings: inference's, less what only other rules read (the backend list,
    throughput_*), with its backend and shard; `shards` is the backend's own (see shards_of)."""
    own = {
        key: value
        for key, value in INFERENCE.items()
        if key != "backends" and not key.startswith("throughput_")
    }
    return own | {"backend": backend, "shard": shard, "shards": shards_of(backend)}


def shard_files(extension):
    """Input function: every shard's file of one backend."""
    return lambda wildcards: [
        f"results/inference/shards/{wildcards.backend}/{shard}.{extension}"
        for shard in range(shards_of(wildcards.backend))
    ]


def step_params(settings=None, untracked=()):
    """A rule's params: `settings` and `job` (unpack them: `params: **step_params(...)`).

    `settings` is the step's settings (a dict, or a function of the wildcards giving one) as
    canonical JSON, less the `untracked` keys ("key" or "section.key"). Being a function of the
    wildcards alone, it is a param Snakemake records with every output (.snakemake/metadata):
    changing any setting in it reruns the job, and its newer outputs rerun everything downstream.
    `job` is what the step receives (cnnbench.common.job): the rule's named inputs and outputs
    (not its `sources`) and the complete settings, as one shell-quoted JSON word. It is built from
    the input and output files, so Snakemake does not record it: `settings` is what is tracked."""
    value = settings if callable(settings) else lambda wildcards: settings

    def recorded(wildcards):
        return json.dumps(without(value(wildcards) or {}, untracked), sort_keys=True)

    def make(wildcards, input, output):
        files = {
            "input": {name: paths for name, paths in input.items() if name != "sources"},
            "output": dict(output.items()),
        }
        return shlex.quote(json.dumps({**files, "settings": value(wildcards) or {}}, sort_keys=True))

    return {"settings": recorded, "job": make}


def without(settings, keys):
    """`settings` less `keys`, each a key or a dotted path to one ("dataset.mirrors")."""
    kept = dict(settings)
    for key in keys:
        head, _, rest = key.partition(".")
        if rest and isinstance(kept.get(head), dict):
            kept[head] = without(kept[head], [rest])
        elif not rest:
            kept.pop(head, None)
    return kept


# Where the dataset is fetched from never changes what a job computes: a file is what its
# checksums say, and the download step verifies them. Untracked, so editing it reruns nothing.
MIRRORS = "mirrors"


def sources(*modules, backends=()):
    """Input: every source file that running `modules` (and `backends`, which the code imports by
    a computed name) reads from src/cnnbench, found in the code by cnnbench.common.sources. An
    edit to one reruns the jobs that run it. Paths are relative to the working directory when the
    sources lie inside it (the usual checkout), so a moved checkout keeps its results."""
    names = [*modules, *(module_name(backend) for backend in backends)]
    return [workdir_relative(path) for path in source_files(*names)]


def workdir_relative(path):
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def step(name):
    """The shell command running cnnbench.steps.<name>; `step_sources` gives its source files."""
    return f"python -m cnnbench.steps.{name} {{params.job}} > {{log}} 2>&1"


def step_sources(name, backends=()):
    """Input: the source files of cnnbench.steps.<name> (see `sources`)."""
    return sources(f"cnnbench.steps.{name}", backends=backends)
