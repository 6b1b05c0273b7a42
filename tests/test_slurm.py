"""The workflow on a real Slurm cluster: `--executor slurm` with the project's profile.

A one-node cluster on this host (tests/slurm_cluster.py) runs a small two-experiment sweep;
Slurm's own job-completion log must show every non-local job of both experiments, each with the
CPUs it declared, and the results must equal a local run of the same config bit for bit (weights,
every prediction column).
Needs root (munged runs as user munge) and Debian's slurmctld, slurmd, slurm-client and munge,
installed here when missing; skipped, with the reason, where that is impossible.
"""

from __future__ import annotations

import csv
import hashlib
import re
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from slurm_cluster import read_jobcomp, start_cluster, unavailable_reason

from cnnbench.backends import SLOW

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["torch", "numpy_im2col", "numba_loops", "numpy_loops"]
SHARDS = 2
SMALL = {
    "train": {"epochs": 1, "limit": 2000, "threads": 2},
    # Two threads each (not the default 1): the declared threads reach Slurm's allocation.
    "train_numpy": {"check_steps": 5, "threads": 2},
    "bench": {"processes": 2, "rounds": 1, "images": 4, "batch_size": 8, "loop_images": 1},
    "gradcheck": {"batch_size": 1, "samples": 3},
    "inference": {
        "backends": BACKENDS,
        "limit": 20,
        "shards": SHARDS,
        "warmup": 2,
        # Throughput runs all 10 000 test images through the fast backends: large batches only.
        "throughput_batch_sizes": [1000],
        "throughput_loop_images": 2,
        "throughput_repeats": 1,
    },
}
# Two experiments, each its own training: every job below runs twice, as its own Slurm job.
EXPERIMENTS = {"seed": {}, "lr": {"train": {"lr": 0.002}}}
# Rules that must run as Slurm jobs; the rest are localrules and run on the submitting host.
SLURM_JOBS = Counter(
    {
        rule: count * len(EXPERIMENTS)
        for rule, count in {
            "train": 1,
            "train_numpy": 1,
            "export_weights": 1,
            "gradcheck": 1,
            "infer_shard": len(BACKENDS) - 1 + SHARDS,
            "infer_numpy_trained": len(set(BACKENDS) - SLOW),
            "throughput": 1,
            "bench_processes": 1,
            "layer_times": 1,
            "record_environment": 1,
        }.items()
    }
    # the machine's limits: once for the whole run
    | {"machine_limits": 1}
)
# The CPUs each rule declares for SMALL; every other rule: inference.threads, 1.
CPUS = {rule: SMALL[rule]["threads"] for rule in ("train", "train_numpy")}

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


@pytest.fixture
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SLURM_CONF", raising=False)  # the test's cluster, not another
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def runs(cluster, tmp_path_factory, mnist_mirror, run_snakemake):
    """The same config run locally and through Slurm, at the same time (the Slurm run mostly
    waits): (local workdir, Slurm workdir, the Slurm run's Snakemake output)."""
    overlay = {**SMALL, "dataset": {"mirrors": [mnist_mirror]}, "experiments": EXPERIMENTS}
    local, remote = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("remote")
    # Locally only what is compared: the prediction tables (and so the weights they need).
    targets = [
        f"results/experiments/{name}/inference/{backend}.csv"
        for name in EXPERIMENTS
        for backend in BACKENDS
    ]
    slurm_args = [
        "--executor",
        "slurm",
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
        # The profile as is, but polled sooner: a test, not a long run. Still within
        # MinJobAge / 3 (Slurm's 300 s), so the profile's squeue status checks are used.
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        local_run = pool.submit(
            run_snakemake, local, overlay, "--cores", "2", *targets, timeout=600
        )
        slurm_run = pool.submit(run_snakemake, remote, overlay, *slurm_args, timeout=600)
        local_result, slurm_result = local_run.result(), slurm_run.result()
    print(f"local and Slurm runs: {time.monotonic() - started:.0f} s")
    assert local_result.returncode == 0, local_result.stderr[-5000:]
    assert slurm_result.returncode == 0, slurm_result.stderr[-8000:] + "\n" + cluster.logs()
    return local, remote, slurm_result.stderr


def slurm_log_rules(workdir: Path) -> dict[str, str]:
    """Slurm job id -> rule, from the job logs Slurm wrote (the plugin files them by rule)."""
    rules = {}
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        rule = next(part for part in log.relative_to(workdir).parts if part.startswith("rule_"))
        rules[log.stem] = rule.removeprefix("rule_")
    return rules


def check_slurm_records(cluster, remote: Path, stderr: str) -> None:
    """Every non-local job is in Slurm's job-completion log, completed, with its declared CPUs."""
    run_id = re.search(r"SLURM run ID: (\S+)", stderr).group(1)
    records = read_jobcomp(cluster.jobcomp_log)
    assert records, "Slurm's job-completion log is empty"
    rules = slurm_log_rules(remote)
    host = socket.gethostname().split(".")[0]
    for record in records:
        job = record["JobId"]
        assert (record["Name"], record["JobState"], record["ExitCode"], record["NodeList"]) == (
            run_id,
            "COMPLETED",
            "0:0",
            host,
        ), record
        rule = rules[job]
        # The job's log, written by Slurm, shows the rule Snakemake ran inside the job.
        log = next((remote / ".snakemake/slurm_logs").rglob(f"{job}.log")).read_text()
        assert re.search(rf"^rule {rule}:$", log, re.MULTILINE), log[-2000:]
        # The CPUs Slurm allotted are the threads the rule declares (not the node's cores).
        assert int(record["ProcCnt"]) == CPUS.get(rule, 1), (rule, record)
    assert Counter(rules[record["JobId"]] for record in records) == SLURM_JOBS
    # Local rules stayed on the submitting host.
    assert len(re.findall(r"^localrule report:$", stderr, re.MULTILINE)) == len(EXPERIMENTS)
    assert re.search(r"^localrule compare:$", stderr, re.MULTILINE)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def check_equal_results(local: Path, remote: Path) -> None:
    """The comparison and the reports exist; weights and every prediction column equal the local
    run's."""
    assert "2 experiments compared" in (remote / "results/report.html").read_text()
    trainings = sorted((local / "results/trainings").glob("*/model/weights.npz"))
    assert len(trainings) == len(EXPERIMENTS)
    for weights in trainings:
        path = weights.relative_to(local)
        assert (
            hashlib.sha256((remote / path).read_bytes()).hexdigest()
            == hashlib.sha256(weights.read_bytes()).hexdigest()
        ), path
    for name, backend in ((name, backend) for name in EXPERIMENTS for backend in BACKENDS):
        assert (remote / f"results/experiments/{name}/report.html").stat().st_size > 0
        table = f"results/experiments/{name}/inference/{backend}.csv"
        expected, got = read_rows(local / table), read_rows(remote / table)
        assert len(got) == 20 and {"pred", "logit_0", "logit_9"} <= set(got[0])
        columns = [column for column in got[0] if column != "latency_s"]
        assert [[row[c] for c in columns] for row in got] == [
            [row[c] for c in columns] for row in expected
        ], backend


def test_workflow_on_slurm_equals_a_local_run(cluster, runs):
    # One test, so the cluster and both runs exist once per session whatever the scheduling
    # (pytest-xdist 3.8.0's loadgroup does not group under pytest 9.2).
    local, remote, stderr = runs
    check_slurm_records(cluster, remote, stderr)
    check_equal_results(local, remote)
