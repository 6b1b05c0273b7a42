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

import cnnbench.network.architecture  # noqa: E402
from cnnbench.backends import SLOW, module_name  # noqa: E402
from cnnbench.common.sources import source_files  # noqa: E402
from cnnbench.common.runtime import (  # noqa: E402
    MIXED_POOLS_ENVIRONMENT,
    declared_threads,
    environment_prefix,
)
from snakemake.exceptions import WorkflowError  # noqa: E402

ENV = "../../envs/cnnbench.yaml"
MACHINE_CORES = os.cpu_count() or 1

# ---------------------------------------------------------------------------- experiments
# RUNS (the Snakefile): each experiment's whole config; one, named "", without a sweep. Each
# experiment runs the whole pipeline in its own folder; a training and a dataset download are
# shared by every experiment that needs the same one (cnnbench.common.sweep). Without a sweep,
# all three are results/ itself: today's paths.
SWEEP = bool(EXPERIMENTS)
if SWEEP:
    EXP = "results/experiments/{experiment}"
    TRAINED = "results/trainings/{training}"
    DATA = "results/data/{dataset}"
else:
    EXP = TRAINED = "results"
    DATA = "results/data"
# each training's config: the first experiment's that needs it
TRAINING_RUNS = {}
for _name, _key in TRAININGS.items():
    TRAINING_RUNS.setdefault(_key, RUNS[_name])
BACKENDS = list(dict.fromkeys(b for run in RUNS.values() for b in run["inference"]["backends"]))


wildcard_constraints:
    experiment="|".join(map(re.escape, RUNS)) or "-",
    training="|".join(map(re.escape, TRAINING_RUNS)),
    dataset="|".join(map(re.escape, DATASETS)),


def config_of(wildcards):
    """The config a job runs with: its experiment's, or its training's (the config itself
    without a sweep)."""
    if hasattr(wildcards, "experiment"):
        return RUNS[wildcards.experiment]
    if hasattr(wildcards, "training"):
        return TRAINING_RUNS[wildcards.training]
    return next(iter(RUNS.values()))


def section(name):
    """Settings: a config section of the job's experiment or training (a function of wildcards)."""
    return lambda wildcards: config_of(wildcards)[name]


def architecture_of(wildcards):
    return cnnbench.network.architecture.from_config(config_of(wildcards)).to_dict()


def per_experiment(pattern):
    """A file pattern of the experiment scope (EXP), once per experiment."""
    return list(dict.fromkeys(pattern.format(experiment=name) for name in RUNS))


def experiment_of(wildcards):
    """The job's experiment's name ("" without a sweep)."""
    return getattr(wildcards, "experiment", "")


def in_experiment(name, path):
    """Experiment `name`'s file `path` (relative to its folder, EXP)."""
    return f"{EXP.format(experiment=name)}/{path}"


def trained_file(name, path):
    """Experiment `name`'s training's file `path` (relative to its folder, TRAINED)."""
    return f"{TRAINED.format(training=TRAININGS[name])}/{path}"


def trained(path):
    """Input function: the job's experiment's training's file `path`."""
    return lambda wildcards: trained_file(experiment_of(wildcards), path)


def dataset_file(dataset, role):
    folder = DATA.format(dataset=cnnbench.common.sweep.dataset_key(dataset))
    return f"{folder}/{dataset['files'][role]['file']}"


def data_path(role):
    """Input function: one of the job's dataset files. Its download reruns only when the file's
    entry in dataset.files changes (or the file is missing), so the jobs reading it rerun exactly
    then: the download step verifies every file against its checksums, so neither the mirror it
    came from nor the code that fetched it can change what it holds (so the download tracks
    neither). Not ancient(), as when the download reruns, Snakemake would skip every other check
    (changed settings too) of the jobs behind an ancient input."""
    return lambda wildcards: dataset_file(config_of(wildcards)["dataset"], role)


TEST_DATA = {"test_images": data_path("test_images"), "test_labels": data_path("test_labels")}


# ---------------------------------------------------------------------------- threads
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
INFERENCE_THREADS = max(run["inference"]["threads"] for run in RUNS.values())
TRAIN_THREADS = max(run["train"]["threads"] for run in RUNS.values())
if workflow.is_main_process and INFERENCE_THREADS > TIMED_CORES:
    limit = (
        f"--cores is {CORES}"
        if CORES and CORES < MACHINE_CORES
        else f"this machine has {MACHINE_CORES} cores"
    )
    logger.warning(
        f"inference.threads is {INFERENCE_THREADS} but {limit}: every "
        f"timed job would run {INFERENCE_THREADS} busy threads on {TIMED_CORES} core(s) and "
        f"time the contention. Set inference.threads to at most {TIMED_CORES}."
    )
if workflow.is_main_process and not workflow.dryrun and CORES:
    if CORES > MACHINE_CORES:
        logger.warning(
            f"--cores {CORES} exceeds this machine's {MACHINE_CORES} cores: every job declares "
            "proportionally more threads, so no more threads are busy than there are cores "
            "while a timed job runs (timings stay honest)."
        )
    if CORES < TRAIN_THREADS:
        logger.warning(
            f"--cores {CORES} is below train.threads ({TRAIN_THREADS}): training still uses "
            f"{TRAIN_THREADS} threads (the weights depend on it), sharing {CORES} core(s)."
        )


def threads_for(actual):
    """Threads a rule declares for a job that really uses `actual` threads (see declared_threads)."""
    return declared_threads(actual, CORES, MACHINE_CORES)


def whole_machine(actual):
    """Threads a short timed job declares to run alone: all of --cores (it still uses `actual`).
    On a cluster (no CORES, see total_cores) each job has its own allocation: it declares what
    it uses."""
    return max(CORES or 0, threads_for(actual))


def training_threads(wildcards):
    return threads_for(config_of(wildcards)["train"]["threads"])


def numpy_training_threads(wildcards):
    return threads_for(config_of(wildcards)["train_numpy"]["threads"])


def inference_threads(wildcards):
    return threads_for(config_of(wildcards)["inference"]["threads"])


def timed_alone(wildcards):
    """A short timed job runs alone: all of --cores (see whole_machine)."""
    return whole_machine(config_of(wildcards)["inference"]["threads"])


def timed_inference_threads(wildcards):
    """The loop backend's shards share the machine; every other backend runs alone."""
    if wildcards.backend in SLOW:
        return inference_threads(wildcards)
    return timed_alone(wildcards)


# ---------------------------------------------------------------------------- priorities
# Of the jobs ready when a core frees, Snakemake starts those of highest priority. The long
# single-thread jobs go first, the NumPy training (the longest) before the loop backend's shards;
# the short ones (priority 0) come last, where they fill a core while the last shard finishes.
# The timed jobs take every core, so they start only once both are free: the sooner the shards
# end together, the sooner they run (README, "Quick start": how the jobs packed).
PRIORITY_NUMPY_TRAINING = 2
PRIORITY_LOOP_SHARD = 1


def shard_priority(wildcards):
    return PRIORITY_LOOP_SHARD if wildcards.backend in SLOW else 0


# ---------------------------------------------------------------------------- files
WEIGHTS = "model/weights.npz"  # in the training's folder (TRAINED), like the rest of model/
WEIGHTS_NUMPY = "model/weights_numpy.npz"  # the NumPy trainer's (rule train_numpy)
# Written with the weights by export_weights; every rule reading WEIGHTS also reads this, and its
# step refuses weights whose sha256 is not the one recorded here (cnnbench.network.weights.load_verified).
MANIFEST = "model/manifest.json"
MANIFEST_NUMPY = "model/manifest_numpy.json"  # likewise for WEIGHTS_NUMPY


def backends_of(wildcards):
    return config_of(wildcards)["inference"]["backends"]


def fast_backends_of(wildcards):
    """The backends the NumPy-trained weights run through: all but the slow loop backend."""
    return [backend for backend in backends_of(wildcards) if backend not in SLOW]


def backend_shards(config, backend):
    """The jobs a backend's inference is split into: inference.shards for the slow loop backend."""
    return config["inference"]["shards"] if backend in SLOW else 1


def shards_of(wildcards):
    return backend_shards(config_of(wildcards), wildcards.backend)


def infer_settings(wildcards, shard):
    """The infer step's settings: inference's, less what only other rules read (the backend list,
    throughput_*), with its backend and shard; `shards` is the backend's own (see shards_of)."""
    own = {
        key: value
        for key, value in config_of(wildcards)["inference"].items()
        if key != "backends" and not key.startswith("throughput_")
    }
    return own | {
        "backend": wildcards.backend,
        "shard": shard,
        "shards": shards_of(wildcards),
    }


# The NumPy-trained weights go through every fast backend (workflow/rules/train.smk): the loop
# backend, im2col's exact twin, would take about an hour more.
NUMPY_TRAINED_BACKENDS = [backend for backend in BACKENDS if backend not in SLOW]


def shard_files(extension):
    """Input function: every shard's file of one backend."""
    return lambda wildcards: [
        in_experiment(
            experiment_of(wildcards), f"inference/shards/{wildcards.backend}/{shard}.{extension}"
        )
        for shard in range(shards_of(wildcards))
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


def step(name, environment=None):
    """The shell command running cnnbench.steps.<name>, with `environment` (a dict) set for it;
    `step_sources` gives its source files."""
    prefix = environment_prefix(environment or {})
    return f"{prefix}python -m cnnbench.steps.{name} {{params.job}} > {{log}} 2>&1"


def step_sources(name, backends=()):
    """Input: the source files of cnnbench.steps.<name> (see `sources`)."""
    return sources(f"cnnbench.steps.{name}", backends=backends)


# ---------------------------------------------------------------------------- rule inputs and settings
def download_dataset(wildcards):
    return DATASETS[wildcards.dataset] if SWEEP else next(iter(DATASETS.values()))


def download_settings(wildcards):
    dataset = download_dataset(wildcards)
    files = {spec["file"]: spec for spec in dataset["files"].values()}
    return {"mirrors": dataset["mirrors"], **files[wildcards.filename]}


def training_settings(*sections, dataset_name=False):
    """Settings of a training rule: the named config sections, the architecture, and the
    dataset's name where the step records it."""

    def settings(wildcards):
        config = config_of(wildcards)
        value = {name: config[name] for name in sections}
        value["architecture"] = architecture_of(wildcards)
        if dataset_name:
            value["dataset_name"] = config["dataset"]["name"]
        return value

    return settings


def predictions(extensions=("csv",)):
    """Input function: the experiment's inference/<backend>.<extension> of each of its backends."""
    return lambda wildcards: experiment_predictions(experiment_of(wildcards), extensions)


def experiment_predictions(name, extensions):
    return [
        in_experiment(name, f"inference/{backend}.{extension}")
        for backend in RUNS[name]["inference"]["backends"]
        for extension in extensions
    ]


def bench_settings(wildcards):
    """The bench's settings; backends and threads are the timed inference jobs'."""
    config = config_of(wildcards)
    inference = config["inference"]
    return config["bench"] | {"backends": inference["backends"], "threads": inference["threads"]}


def report_files(name):
    """Every file experiment `name`'s report reads (cnnbench.report.inputs), so a changed one
    reruns it."""
    config = RUNS[name]
    own = lambda path: in_experiment(name, path)  # noqa: E731
    training = lambda path: trained_file(name, path)  # noqa: E731
    return {
        "metrics": training("training/metrics.csv"),
        "manifest": training(MANIFEST),
        "weights": training(WEIGHTS),
        "data": [dataset_file(config["dataset"], role) for role in config["dataset"]["files"]],
        "gradcheck": own("gradcheck.csv"),
        "inference": experiment_predictions(name, ("csv", "json")),
        "throughput": own("throughput.csv"),
        "bench_processes": own("bench_processes.json"),
        "machine": rules.machine_limits.output.json,
        "layers": own("layers.csv"),
        "agreement": own("agreement.csv"),
        "accuracy": own("accuracy.csv"),
        "disagreements": own("disagreements.csv"),
        "environment": own("environment.json"),
        "benchmarks": every_benchmark(name),
        "worked_example": rules.torch_worked_example.output.json,
        "training_numpy_metrics": training("training_numpy/metrics.csv"),
        "training_numpy_steps": training("training_numpy/steps.csv"),
        "training_numpy_summary": training("training_numpy/summary.json"),
    }


def benchmarked_jobs(name):
    """Experiment `name`'s jobs of each benchmarked rule with wildcards of its own (beyond the
    experiment's and its training's), each from the same values its consumers use."""
    run = RUNS[name]
    backends = run["inference"]["backends"]
    return {
        "infer_shard": [
            {"backend": backend, "shard": shard}
            for backend in backends
            for shard in range(backend_shards(run, backend))
        ],
        "infer_numpy_trained": [{"backend": backend} for backend in backends if backend not in SLOW],
    }


def every_benchmark(name):
    """Every benchmark file experiment `name`'s run writes (its training's and the machine's
    included): each rule's own `benchmark:` path, once per job. A benchmarked rule with wildcards
    of its own must name its jobs in benchmarked_jobs (else the workflow stops here), so no rule's
    wall time silently misses the report's table and total."""
    scope = {"experiment": name, "training": TRAININGS[name]}
    jobs = benchmarked_jobs(name)
    files = []
    for declared in workflow.rules:
        if not declared.benchmark:
            continue
        pattern = getattr(rules, declared.name).benchmark
        if set(declared.wildcard_names) - set(scope) and declared.name not in jobs:
            raise WorkflowError(
                f"benchmarked per {sorted(declared.wildcard_names)}, rule {declared.name} "
                "needs its jobs in benchmarked_jobs (workflow/rules/common.smk)"
            )
        for wildcards in jobs.get(declared.name, [{}]):
            files.append(pattern.format(**scope, **wildcards))
    return files


# the report inputs the comparison reads, one file each per experiment (cnnbench.report.compare)
COMPARED = ("metrics", "training_numpy_summary", "throughput", "agreement", "accuracy", "gradcheck")


def compare_inputs(wildcards):
    """Per experiment, in the sweep's order, the files the comparison reads."""
    inputs = {kind: [] for kind in (*COMPARED, "report", "inference")}
    for name in RUNS:
        files = report_files(name)
        for kind in COMPARED:
            inputs[kind].append(files[kind])
        inputs["report"].append(in_experiment(name, "report.html"))
        inputs["inference"] += files["inference"]
    return inputs


def jobs_from_scratch():
    """How many jobs the whole run has (rule all included) when nothing is done yet."""
    # per dataset its 4 files; the worked example and the machine's limits once; per training
    # the PyTorch and NumPy trainings and the export; rule all (and compare, in a sweep)
    jobs = 4 * len(DATASETS) + 2 + 3 * len(TRAINING_RUNS) + (2 if SWEEP else 1)
    for run in RUNS.values():
        backends = run["inference"]["backends"]
        shards = sum(backend_shards(run, backend) for backend in backends)
        fast = [b for b in backends if b not in SLOW]
        # per backend: shards, a gather, a NumPy-trained run (fast ones); and gradcheck,
        # throughput, agreement, environment, bench, layer times, NumPy-trained agreement, report
        jobs += shards + len(backends) + len(fast) + 8
    return jobs


# Cost is said before it is spent: every run, dry runs (-n) included, first says what the whole
# run holds (before the executor starts, Snakemake cannot tell a dry run from a real one).
if workflow.is_main_process:
    _images = cnnbench.common.sweep.images_per_backend(RUNS, SLOW)
    logger.info(
        f"cnnbench: {len(RUNS)} experiment{'s' if len(RUNS) > 1 else ''}"
        + (f" ({', '.join(RUNS)})" if SWEEP else "")
        + f", {len(DATASETS)} dataset download{'s' if len(DATASETS) > 1 else ''}"
        + f", {len(TRAINING_RUNS)} training{'s' if len(TRAINING_RUNS) > 1 else ''}"
        + f", {jobs_from_scratch()} jobs from scratch (Snakemake's count is of those still to "
        + "run); test images per backend, the PyTorch-trained and (all but numpy_loops) the "
        + "NumPy-trained weights: "
        + ", ".join(
            f"{backend} {'?' if count is None else f'{count:,}'}" for backend, count in _images.items()
        )
        + "."
    )
