import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnbench.common.files import atomic_output
from cnnbench.common.runtime import (
    MIXED_POOLS_ENVIRONMENT,
    declared_threads,
    environment_prefix,
    release_blas_threads,
    set_threads,
)

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(
    ("actual", "workflow_cores", "machine_cores", "expected"),
    [
        (1, 2, 2, 1),  # --cores fits the machine: declare what is used
        (2, 2, 2, 2),
        (1, 4, 2, 2),  # --cores 4 on 2 cores: two 1-thread jobs fill the 4 declared cores
        (2, 4, 2, 4),
        (1, 3, 2, 2),  # ceil(1.5)
        (4, 8, 2, 8),  # capped at --cores
        (1, None, 2, 1),  # cluster: no global core limit
    ],
)
def test_declared_threads(actual, workflow_cores, machine_cores, expected):
    assert declared_threads(actual, workflow_cores, machine_cores) == expected


def test_declared_threads_never_oversubscribe():
    # Whatever mix of jobs Snakemake packs into --cores, the real threads fit the machine.
    for machine in (1, 2, 4):
        for cores in range(machine, 4 * machine + 1):
            for actual in range(1, machine + 1):
                declared = declared_threads(actual, cores, machine)
                jobs_that_fit = cores // declared
                assert jobs_that_fit * actual <= machine


def test_atomic_output_moves_into_place_only_on_success(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_output(target) as temporary:
        temporary.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "a,b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_set_threads_applies_to_torch_and_blas():
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        with pytest.raises(ValueError, match="threads must be >= 1"):
            set_threads(0)
    finally:
        set_threads(before)


def dry_run_jobs(dry_run_output: str):
    """Each job of a dry run: its rule and the indented lines Snakemake prints below it."""
    for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n?)*)", dry_run_output, re.MULTILINE):
        yield match.group(1), match.group(2)


def job_field(job_lines: str, field: str) -> str | None:
    found = re.search(rf"^\s+{field}: (.+)$", job_lines, re.MULTILINE)
    return found and found.group(1)


def declared_by_rule(dry_run_output: str) -> dict[str, set[int]]:
    """Threads each rule's jobs declare, read from a dry run (Snakemake omits `threads: 1`)."""
    declared: dict[str, set[int]] = {}
    for rule, lines in dry_run_jobs(dry_run_output):
        declared.setdefault(rule, set()).add(int(job_field(lines, "threads") or 1))
    return declared


MACHINE_CORES = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # A local run with --cores 8: a whole-machine job (throughput) takes all 8; on a machine
        # with fewer cores, every declaration scales up (see declared_threads).
        (
            "default",
            {
                "train": declared_threads(2, 8, MACHINE_CORES),
                "export_weights": declared_threads(1, 8, MACHINE_CORES),
                "throughput": 8,
            },
        ),
        # Inside a cluster job Snakemake runs again with --cores set to the node's cores: each
        # job must declare what it uses, the threads it was submitted with, or srun refuses to
        # start it ("More processors requested than permitted").
        ("remote", {"train": 2, "export_weights": 1, "throughput": 1}),
    ],
)
def test_cluster_job_declares_the_threads_it_was_submitted_with(
    tmp_path, run_snakemake, mode, expected
):
    result = run_snakemake(
        tmp_path,
        {"train": {"threads": 2}},
        "--dry-run",
        "--cores",
        "8",
        "--mode",
        mode,
        "results/throughput.csv",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    declared = declared_by_rule(result.stdout + result.stderr)
    assert {rule: declared[rule] for rule in expected} == {
        rule: {threads} for rule, threads in expected.items()
    }


def test_the_long_single_thread_jobs_start_first_and_the_short_ones_fill_in_last(
    tmp_path, run_snakemake
):
    """Priorities (Snakemake omits `priority: 0`): the NumPy training, then the loop backend's
    shards, before every other job, so the short jobs run while the last shard finishes."""
    result = run_snakemake(tmp_path, {}, "--dry-run", "--cores", "2", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    priorities: dict[str, set[int]] = {}
    for rule, lines in dry_run_jobs(result.stdout + result.stderr):
        if rule == "infer_shard":
            rule += "/" + re.search(r"backend=(\w+)", job_field(lines, "wildcards")).group(1)
        priorities.setdefault(rule, set()).add(int(job_field(lines, "priority") or 0))
    assert priorities.pop("train_numpy") == {2}
    assert priorities.pop("infer_shard/numpy_loops") == {1}
    assert "infer_shard/numba_loops" in priorities and "infer_numpy_trained" in priorities
    assert set().union(*priorities.values()) == {0}, priorities


def with_src(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` with this checkout's src first on PYTHONPATH, for a child interpreter."""
    path = os.pathsep.join(filter(None, [str(SRC), environment.get("PYTHONPATH")]))
    return {**environment, "PYTHONPATH": path}


def test_set_threads_holds_for_torch_once_numba_is_loaded():
    """numba's first set_num_threads starts its OpenMP pool, which reset torch (once torch had read
    its thread count) to NUMBA_NUM_THREADS: `assert 2 == 1` above whenever an earlier test in the
    same pytest worker had imported numba (a fresh clone's test order)."""
    code = (
        "import torch, numba\n"
        "from cnnbench.common.runtime import set_threads\n"
        "torch.get_num_threads()\n"  # as the test above does first
        "set_threads(1)\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = with_src({**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"})
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


def test_release_blas_threads_ends_openblas_workers_and_the_next_call_restarts_them():
    """OpenBLAS's idle workers spin for 2**28 cycles after each call; releasing them ends them
    at once, and the next call starts them again, with the same result bit for bit."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if (
        not any(
            pool["internal_api"] == "openblas" and pool.get("threading_layer") == "pthreads"
            for pool in threadpool_info()
        )
        or not Path("/proc/self/task").is_dir()
    ):
        pytest.skip("needs NumPy on a pthreads OpenBLAS, on Linux")

    def threads() -> set[str]:
        return set(os.listdir("/proc/self/task"))

    a = np.random.default_rng(0).standard_normal((600, 600))
    with threadpool_limits(2, user_api="blas"):
        expected = a @ a  # two threads: OpenBLAS's worker is running
        running = threads()
        release_blas_threads()
        ended = running - threads()
        assert ended, "no OpenBLAS worker ended"
        np.testing.assert_array_equal(a @ a, expected)
        # NumPy's workers start again; another package's OpenBLAS in the process (none in the
        # pinned set) ends too, but starts only when it is used.
        assert 0 < len(threads() - (running - ended)) <= len(ended)
        assert {
            pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"
        } == {2}
    release_blas_threads()  # none running: nothing to do


SPIN_AFTER_A_REGION = """
import glob, os, statistics, time
from cnnbench.common.runtime import set_threads
set_threads(2)
import torch
x = torch.ones(400_000)
def on_cpu():  # ns each thread but this one has run (schedstat's first field)
    return {p: int(open(p).read().split()[0])
            for p in glob.glob("/proc/self/task/*/schedstat") if f"/{os.getpid()}/sched" not in p}
spins = []
torch.relu(x)  # starts the worker
for _ in range(7):
    time.sleep(0.1)  # the worker asleep again
    # read before the region: on a busy machine this thread may wait for a core after it while
    # the worker spins; the worker's share of the region itself is a fraction of a millisecond
    before = on_cpu(); torch.relu(x); time.sleep(0.1); after = on_cpu()
    spins.append(max(after[p] - before[p] for p in after if p in before) / 1e6)
print(statistics.median(spins))
"""


def test_mixed_pools_environment_puts_torchs_idle_openmp_worker_to_sleep_sooner():
    """After a parallel region torch's OpenMP worker spins before it sleeps: milliseconds of CPU
    with libgomp's default, a fraction of it with MIXED_POOLS_ENVIRONMENT (measured 8.2 and 0.8
    ms on the AMD EPYC; 4.1-4.5 and 0.7-0.9 on the Xeon, with 0-2 other busy processes), so it
    no longer spins into the NumPy step that follows in the twin run."""
    if len(os.sched_getaffinity(0)) < 2 or not Path("/proc/self/task").is_dir():
        pytest.skip("needs 2 cores (libgomp spins less where threads outnumber them), on Linux")
    default = {
        name: value for name, value in os.environ.items() if name not in MIXED_POOLS_ENVIRONMENT
    }
    spin_ms = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", SPIN_AFTER_A_REGION],
                capture_output=True,
                text=True,
                env=with_src(environment),
                timeout=120,
                check=True,
            ).stdout
        )
        for mode, environment in (
            ("default", default),
            ("mixed pools", {**default, **MIXED_POOLS_ENVIRONMENT}),
        )
    }
    assert spin_ms["mixed pools"] < spin_ms["default"] / 3, spin_ms


def test_only_the_twin_training_starts_with_the_mixed_pools_environment(tmp_path, run_snakemake):
    """libgomp reads its spin count when torch loads it, so the train_numpy job's command sets
    it; the PyTorch training alone keeps libgomp's default."""
    result = run_snakemake(
        tmp_path, {}, "--dry-run", "--printshellcmds", "--cores", "2", timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    commands = {
        match.group(2): match.group(1)
        for match in re.finditer(
            r"^Shell command: (.*?)python -m cnnbench\.steps\.(\w+) ", result.stdout, re.MULTILINE
        )
    }
    assert commands["train_numpy"] == environment_prefix(MIXED_POOLS_ENVIRONMENT)
    assert environment_prefix(MIXED_POOLS_ENVIRONMENT) == "GOMP_SPINCOUNT=30000 "
    assert commands["train"] == ""


def test_restart_with_adds_the_environment_and_keeps_the_arguments_and_what_was_set():
    code = (
        "import os, sys\n"
        "from cnnbench.common.runtime import restart_with\n"
        "restart_with({'CNNBENCH_A': 'new', 'CNNBENCH_B': 'new'})\n"
        "print(os.environ['CNNBENCH_A'], os.environ['CNNBENCH_B'], *sys.argv[1:])\n"
    )
    environment = {**os.environ, "CNNBENCH_B": "set before"}
    environment.pop("CNNBENCH_A", None)
    result = subprocess.run(
        [sys.executable, "-c", code, "one", "two words"],
        capture_output=True,
        text=True,
        env=with_src(environment),
        timeout=60,
        check=True,
    )
    assert result.stdout.split("\n")[0] == "new set before one two words"


def test_keep_freed_memory_stops_the_page_faults_of_reallocated_arrays():
    """A loop allocating the same large arrays each time (as a training step does) faults their
    pages in again every time, unless the process keeps the memory it frees."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("keep_freed_memory acts on glibc's malloc only")
    code = (
        "import resource, sys, numpy as np\n"
        "from cnnbench.common.runtime import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': keep_freed_memory()\n"
        "def step():\n"
        "    arrays = [np.ones(n) for n in (300_000, 900_000, 1_500_000, 600_000)]\n"
        "    return sum(float(a[-1]) for a in arrays)\n"
        "step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(10): step()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)\n"
    )
    env = with_src(dict(os.environ))
    faults = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", code, mode],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=True,
            ).stdout
        )
        for mode in ("default", "keep")
    }
    # 26 MB of arrays a step: over a thousand faults by default (measured 1 288), none kept
    assert faults["default"] > 500, faults
    assert faults["keep"] < 10, faults
